package scheduler

// Speed and spread figures on a simulated inventory. Run:
//
//	go test -run '^$' -bench . -benchtime 1x ./deployer/scheduler/
//
// BenchmarkPlace/hosts=1000 places 10,000 containers on 1,000 hosts
// (goal: well under 1s on one core) and reports placements/s and
// spread-max/min (largest over smallest per-host count of spread-service
// containers). BenchmarkPlaceGrowth reports the time ratio from 100
// hosts/1,000 containers to 1,000/10,000 (10 would be exactly linear).

import (
	"fmt"
	"math/rand"
	"testing"
	"time"
)

type simService struct {
	req Request
	n   int
}

// simInventory builds hosts (5 zones, some ssd, 16 cores/64GiB, a few
// draining) and services averaging 10 replicas each with a mix of rules:
// host ports, zone affinity, self anti-affinity, soft rules, resources and
// some binpack.
func simInventory(hosts, services int, seed int64) (*Snapshot, []simService) {
	r := rand.New(rand.NewSource(seed))
	s := &Snapshot{Hosts: make([]Host, hosts)}
	for i := range s.Hosts {
		h := Host{Name: fmt.Sprintf("host-%04d", i), NanoCPUs: 16e9, MemoryBytes: 64 * gib,
			Labels: map[string]string{"zone": fmt.Sprintf("z%d", i%5), "env": "prod"}}
		if i%3 == 0 {
			h.Labels["disk"] = "ssd"
		}
		if i%97 == 0 {
			h.State = HostDraining
		}
		s.Hosts[i] = h
	}
	svcs := make([]simService, services)
	const p = LabelAffinityPrefix
	for i := range svcs {
		req := Request{Stack: fmt.Sprintf("stack%d", i/10), Service: fmt.Sprintf("svc%d", i), Labels: map[string]string{"app": fmt.Sprint(i)},
			Seed:      fmt.Sprintf("deploy-%d", i),
			Resources: Resources{NanoCPUs: int64(1+r.Intn(4)) * 25e7, MemoryReservation: int64(1+r.Intn(4)) * 256 * mb}}
		if r.Intn(10) < 3 {
			req.Ports = []Port{{HostPort: uint16(20000 + r.Intn(200))}}
		}
		if r.Intn(10) < 3 {
			req.Labels[p+"host_label"] = fmt.Sprintf("zone=z%d", r.Intn(5))
		}
		if r.Intn(10) < 3 {
			req.Labels[p+"container_label_ne"] = antiSelf
		}
		if r.Intn(10) < 1 {
			req.Labels[p+"host_label_soft"] = "disk=ssd"
		}
		if r.Intn(10) < 1 {
			req.Strategy = Binpack
		}
		svcs[i] = simService{req: req, n: 5 + r.Intn(11)} // 5..15, mean 10
	}
	return s, svcs
}

// runSim places every service in turn, booking each plan.
func runSim(tb testing.TB, s *Snapshot, svcs []simService) (*Index, int) {
	x, err := NewIndex(s)
	if err != nil {
		tb.Fatal(err)
	}
	placed := 0
	for _, sv := range svcs {
		p, err := x.Place(sv.req, sv.n)
		if err != nil {
			tb.Fatalf("%s: %v", sv.req.Service, err)
		}
		if err := x.Apply(sv.req, p); err != nil {
			tb.Fatal(err)
		}
		placed += len(p.Placements)
	}
	return x, placed
}

// spreadRatio is max/min, over active hosts, of containers of spread
// services. Hosts holding binpack containers are left out: spread rightly
// avoids them (it ranks by total count), so they would read as 0.
func spreadRatio(x *Index, svcs []simService) float64 {
	spread := map[string]bool{}
	for _, sv := range svcs {
		spread[sv.req.Service] = sv.req.Strategy != Binpack
	}
	lo, hi := -1, 0
hosts:
	for _, h := range x.Snapshot().Hosts {
		if h.State != "" {
			continue
		}
		n := 0
		for _, c := range h.Containers {
			if !spread[c.Service] {
				continue hosts
			}
			n++
		}
		if lo < 0 || n < lo {
			lo = n
		}
		hi = max(hi, n)
	}
	if lo <= 0 {
		return float64(hi) // no host may sit empty; report hi so it shows
	}
	return float64(hi) / float64(lo)
}

func BenchmarkPlace(b *testing.B) {
	for _, size := range []int{100, 1000} {
		b.Run(fmt.Sprintf("hosts=%d", size), func(b *testing.B) {
			s, svcs := simInventory(size, size, 1)
			var x *Index
			placed := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				x, placed = runSim(b, s, svcs)
			}
			b.StopTimer()
			perRun := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(float64(placed)/perRun, "placements/s")
			b.ReportMetric(spreadRatio(x, svcs), "spread-max/min")
			b.ReportMetric(float64(placed), "containers")
		})
	}
}

func BenchmarkPlaceGrowth(b *testing.B) {
	small, smallSvcs := simInventory(100, 100, 1)
	big, bigSvcs := simInventory(1000, 1000, 1)
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		const reps = 10 // the small run is short: average it
		for j := 0; j < reps; j++ {
			runSim(b, small, smallSvcs)
		}
		ts := time.Since(t0) / reps
		t0 = time.Now()
		runSim(b, big, bigSvcs)
		tb := time.Since(t0)
		b.ReportMetric(float64(tb)/float64(ts), "growth(x10-size)")
		b.ReportMetric(tb.Seconds(), "s/10k-containers")
	}
}
