package scheduler

import (
	"fmt"
	"strings"
	"testing"
)

const (
	gib = int64(1) << 30
	mb  = int64(1) << 20
)

// fixedHosts is the host list every filter and scorer test runs on.
//
//	h1 env=prod zone=a   2 cpu 1GiB   java-service-1-1 (app=java, 8080/tcp)
//	h2 env=staging zone=b 4 cpu 4GiB  web-db-1 (role=db, 10.0.0.2:5432/tcp), foreign nginx (80/tcp, 1 cpu 1GiB)
//	h3 env=prod zone=b   1 cpu 512MiB require_any team=payments,tier=front
//	h4 env=prod draining
//	h5 env=prod unreachable
//	h6 env=prod          require_any "bogus" (malformed)
func fixedHosts() *Snapshot {
	return &Snapshot{Hosts: []Host{
		{Name: "h1", Labels: map[string]string{"env": "prod", "zone": "a"}, NanoCPUs: 2e9, MemoryBytes: gib,
			Containers: []Container{{ID: "c1", Name: "java-service-1-1", Stack: "java", Service: "service-1", Index: 1,
				Labels: map[string]string{"app": "java"}, Ports: []Port{{HostPort: 8080}},
				Resources: Resources{NanoCPUs: 1e9, MemoryReservation: 512 * mb}}}},
		{Name: "h2", Labels: map[string]string{"env": "staging", "zone": "b"}, NanoCPUs: 4e9, MemoryBytes: 4 * gib,
			Containers: []Container{
				{ID: "c2", Name: "web-db-1", Stack: "web", Service: "db", Index: 1,
					Labels: map[string]string{"role": "db"}, Ports: []Port{{HostIP: "10.0.0.2", HostPort: 5432, Protocol: "tcp"}}},
				{ID: "c3", Name: "nginx", Ports: []Port{{HostIP: "0.0.0.0", HostPort: 80}},
					Resources: Resources{NanoCPUs: 1e9, MemoryLimit: gib}},
			}},
		{Name: "h3", Labels: map[string]string{"env": "prod", "zone": "b", LabelRequireAny: "team=payments,tier=front"},
			NanoCPUs: 1e9, MemoryBytes: 512 * mb},
		{Name: "h4", Labels: map[string]string{"env": "prod"}, State: HostDraining},
		{Name: "h5", Labels: map[string]string{"env": "prod"}, State: HostUnreachable},
		{Name: "h6", Labels: map[string]string{"env": "prod", LabelRequireAny: "bogus"}},
	}}
}

func mustIndex(t testing.TB, s *Snapshot) *Index {
	t.Helper()
	x, err := NewIndex(s)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func mustPrepare(t testing.TB, req Request) *prepared {
	t.Helper()
	if req.Stack == "" {
		req.Stack, req.Service = "web", "app"
	}
	pr, err := prepare(req)
	if err != nil {
		t.Fatal(err)
	}
	return pr
}

// verdictLine runs check on every host and renders "h1 ok; h2 <reason>...".
func verdictLine(x *Index, check func(h *hostIdx) (string, bool)) string {
	var parts []string
	for _, h := range x.hosts {
		reason, ok := check(h)
		if ok {
			parts = append(parts, h.name+" ok")
		} else {
			parts = append(parts, h.name+" "+reason)
		}
	}
	return strings.Join(parts, "; ")
}

// aff builds labels for one affinity rule.
func aff(kind, value string) map[string]string {
	return map[string]string{LabelAffinityPrefix + kind: value}
}

// mustPlace places and fails the test on error.
func mustPlace(t testing.TB, s *Snapshot, req Request, n int) Plan {
	t.Helper()
	p, err := Place(s, req, n)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func lines(s ...string) string { return strings.Join(s, "\n") + "\n" }

// hostsN makes n empty active hosts h01..hNN with the given capacity.
func hostsN(n int, cpu, mem int64) *Snapshot {
	s := &Snapshot{}
	for i := 1; i <= n; i++ {
		s.Hosts = append(s.Hosts, Host{Name: fmt.Sprintf("h%02d", i), NanoCPUs: cpu, MemoryBytes: mem})
	}
	return s
}
