package scheduler

import (
	"fmt"
	"math/rand"
	"reflect"
	"testing"
)

var portPool = []uint16{80, 443, 8080, 9000}

func randomSnapshot(r *rand.Rand) *Snapshot {
	s := &Snapshot{}
	n := 3 + r.Intn(23)
	for i := 0; i < n; i++ {
		h := Host{
			Name:   fmt.Sprintf("h%02d", i),
			Labels: map[string]string{"env": pick(r, "prod", "dev"), "zone": pick(r, "a", "b", "c")},
		}
		if r.Intn(3) == 0 {
			h.Labels["disk"] = "ssd"
		}
		switch r.Intn(20) {
		case 0, 1:
			h.State = HostDraining
		case 2:
			h.State = HostUnreachable
		}
		if r.Intn(10) > 0 {
			h.NanoCPUs = int64(1+r.Intn(8)) * 1e9
			h.MemoryBytes = int64(1+r.Intn(16)) * gib
		}
		// Foreign containers: distinct ports, at most a quarter of capacity each.
		for j, p := range r.Perm(len(portPool))[:r.Intn(4)] {
			c := Container{Name: fmt.Sprintf("foreign-%d-%d", i, j), Labels: map[string]string{"app": pick(r, "foo", "bar")},
				Ports: []Port{{HostIP: pick(r, "", "10.0.0.1"), HostPort: portPool[p], Protocol: pick(r, "tcp", "udp")}}}
			if h.NanoCPUs > 0 {
				c.Resources = Resources{NanoCPUs: r.Int63n(h.NanoCPUs / 4), MemoryReservation: r.Int63n(h.MemoryBytes / 4)}
			}
			h.Containers = append(h.Containers, c)
		}
		s.Hosts = append(s.Hosts, h)
	}
	return s
}

func pick(r *rand.Rand, xs ...string) string { return xs[r.Intn(len(xs))] }

func randomRequest(r *rand.Rand, i int) (Request, int) {
	req := Request{Stack: "s", Service: fmt.Sprintf("svc%d", i), Labels: map[string]string{}, Seed: fmt.Sprint(r.Int())}
	const p = LabelAffinityPrefix
	if r.Intn(10) < 4 {
		req.Ports = []Port{{HostIP: pick(r, "", "10.0.0.1", "10.0.0.2"), HostPort: portPool[r.Intn(len(portPool))], Protocol: pick(r, "tcp", "udp")}}
	}
	if r.Intn(10) < 3 {
		req.Labels[p+"host_label"] = "env=prod"
	}
	if r.Intn(10) < 2 {
		req.Labels[p+"host_label_ne"] = "zone=c"
	}
	if r.Intn(10) < 3 {
		req.Labels[p+"container_label_ne"] = antiSelf
	} else if r.Intn(10) < 3 {
		req.Labels[p+"container_label_soft_ne"] = antiSelf
	}
	if r.Intn(10) < 2 {
		req.Labels[p+"container_label_soft"] = "app=foo"
	}
	if r.Intn(10) < 2 {
		req.Labels[p+"host_label_soft"] = "disk=ssd"
	}
	if r.Intn(2) == 0 {
		req.Resources = Resources{NanoCPUs: int64(1+r.Intn(8)) * 25e7, MemoryLimit: int64(1+r.Intn(8)) * 256 * mb}
	}
	if r.Intn(5) == 0 {
		req.Strategy = Binpack
	}
	if r.Intn(10) == 0 {
		req.Global = true
	}
	return req, 1 + r.Intn(6)
}

// naivePlace is the oracle for the bucket walk: the same chain and
// scores, but every host evaluated for every replica.
func naivePlace(x *Index, pr *prepared, n int) []Placement {
	c := x.newCall(pr)
	next := x.maxIndex[pr.key]
	var out []Placement
	for i := 0; i < n; i++ {
		var best *hostIdx
		var bs score
		for _, h := range x.hosts {
			if !c.evaluate(h, false) {
				continue
			}
			if s := c.score(h); best == nil || s.less(bs) {
				best, bs = h, s
			}
		}
		if best == nil {
			break
		}
		next++
		c.placed[best.rank] = append(c.placed[best.rank], next)
		out = append(out, Placement{Stack: pr.req.Stack, Service: pr.req.Service, Host: best.name, Index: next})
	}
	return out
}

func TestPropertiesRandomInventories(t *testing.T) {
	for seed := int64(1); seed <= 300; seed++ {
		r := rand.New(rand.NewSource(seed))
		s := randomSnapshot(r)
		x := mustIndex(t, s)
		reqs := map[string]Request{}
		for i := 0; i < 12; i++ {
			req, n := randomRequest(r, i)
			reqs[req.Service] = req
			p, err := x.Place(req, n)
			if err != nil {
				if _, ok := err.(*NoFitError); !ok {
					t.Fatalf("seed %d: %v", seed, err)
				}
			}
			if !req.Global {
				if want := naivePlace(x, mustPrepare(t, req), n); !reflect.DeepEqual(p.Placements, want) {
					t.Fatalf("seed %d %s: fast plan\n%v\nnaive plan\n%v", seed, req.Service, p.Placements, want)
				}
				if (err == nil) != (len(p.Placements) == n) {
					t.Fatalf("seed %d: err %v with %d of %d placed", seed, err, len(p.Placements), n)
				}
			}
			if err := x.Apply(req, p); err != nil {
				t.Fatal(err)
			}
			if req.Global {
				checkGlobal(t, seed, x, req, p)
			}
		}
		if err := checkInvariants(x.Snapshot(), reqs); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
}

func checkGlobal(t *testing.T, seed int64, x *Index, req Request, p Plan) {
	t.Helper()
	d, err := x.Global(req)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Place) != 0 || len(d.Extra) != 0 {
		t.Fatalf("seed %d: global not converged after one pass: %s", seed, fmtGlobal(d))
	}
	for _, h := range x.Snapshot().Hosts {
		n := 0
		for _, c := range h.Containers {
			if c.Service == req.Service {
				n++
			}
		}
		if n > 1 || (n == 0 && len(p.Verdicts[h.Name]) == 0) {
			t.Fatalf("seed %d: global %s has %d on %s (verdicts %v)", seed, req.Service, n, h.Name, p.Verdicts[h.Name])
		}
	}
}

// checkInvariants re-derives the hard rules from the final inventory,
// independently of the filters.
func checkInvariants(s *Snapshot, reqs map[string]Request) error {
	for _, h := range s.Hosts {
		var cpu, mem int64
		perService := map[string]int{}
		for i, a := range h.Containers {
			c, m := a.Resources.Reserve()
			cpu, mem = cpu+c, mem+m
			perService[a.Service]++
			for _, b := range h.Containers[i+1:] {
				for _, pa := range a.Ports {
					for _, pb := range b.Ports {
						wild := func(ip string) bool { return ip == "" || ip == "0.0.0.0" || ip == "::" }
						sameProto := pa.proto() == pb.proto()
						if pa.HostPort != 0 && pa.HostPort == pb.HostPort && sameProto && (wild(pa.HostIP) || wild(pb.HostIP) || pa.HostIP == pb.HostIP) {
							return fmt.Errorf("%s and %s both publish %d/%s on %s", a.Name, b.Name, pa.HostPort, pa.proto(), h.Name)
						}
					}
				}
			}
			if a.Stack == "" {
				continue
			}
			req := reqs[a.Service]
			if h.State != "" {
				return fmt.Errorf("%s placed on %s host %s", a.Name, h.State, h.Name)
			}
			if req.Labels[LabelAffinityPrefix+"host_label"] == "env=prod" && h.Labels["env"] != "prod" {
				return fmt.Errorf("%s on %s without env=prod", a.Name, h.Name)
			}
			if req.Labels[LabelAffinityPrefix+"host_label_ne"] == "zone=c" && h.Labels["zone"] == "c" {
				return fmt.Errorf("%s on %s with zone=c", a.Name, h.Name)
			}
		}
		if (h.NanoCPUs > 0 && cpu > h.NanoCPUs) || (h.MemoryBytes > 0 && mem > h.MemoryBytes) {
			return fmt.Errorf("%s over capacity: cpu %d/%d mem %d/%d", h.Name, cpu, h.NanoCPUs, mem, h.MemoryBytes)
		}
		for svc, n := range perService {
			if reqs[svc].Labels[LabelAffinityPrefix+"container_label_ne"] == antiSelf && n > 1 {
				return fmt.Errorf("%d replicas of anti-affine %s on %s", n, svc, h.Name)
			}
		}
	}
	return nil
}

// The checks above must be able to fail: break each rule on purpose.
func TestInvariantCheckerCatches(t *testing.T) {
	reqs := map[string]Request{"app": {Labels: aff("container_label_ne", antiSelf)}}
	bad := []*Snapshot{
		{Hosts: []Host{{Name: "h", Containers: []Container{{Name: "a", Ports: []Port{{HostPort: 1}}}, {Name: "b", Ports: []Port{{HostIP: "1.2.3.4", HostPort: 1}}}}}}},
		{Hosts: []Host{{Name: "h", MemoryBytes: 10, Containers: []Container{{Name: "a", Resources: Resources{MemoryLimit: 11}}}}}},
		{Hosts: []Host{{Name: "h", Containers: []Container{{Name: "a", Stack: "web", Service: "app"}, {Name: "b", Stack: "web", Service: "app"}}}}},
		{Hosts: []Host{{Name: "h", State: HostDraining, Containers: []Container{{Name: "a", Stack: "web", Service: "other"}}}}},
	}
	for i, s := range bad {
		if err := checkInvariants(s, reqs); err == nil {
			t.Errorf("case %d: violation not caught", i)
		}
	}
	if err := checkInvariants(hostsN(2, 1, 1), reqs); err != nil {
		t.Errorf("clean inventory: %v", err)
	}
}
