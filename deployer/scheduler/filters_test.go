package scheduler

import (
	"testing"
)

// Each filter alone on fixedHosts.
func TestFiltersAlone(t *testing.T) {
	tests := []struct {
		name string
		rule Rule
		req  Request
		want string
	}{
		{"state", RuleState, Request{},
			"h1 ok; h2 ok; h3 ok; h4 host draining; h5 host unreachable; h6 ok"},
		{"host_label", RuleHostLabel, Request{Labels: aff("host_label", "env=prod")},
			"h1 ok; h2 label env=prod missing; h3 ok; h4 ok; h5 ok; h6 ok"},
		{"host_label all pairs", RuleHostLabel, Request{Labels: aff("host_label", "env=prod,zone=b")},
			"h1 label zone=b missing; h2 label env=prod missing; h3 ok; h4 label zone=b missing; h5 label zone=b missing; h6 label zone=b missing"},
		{"host_label_ne", RuleHostLabelNe, Request{Labels: aff("host_label_ne", "zone=b")},
			"h1 ok; h2 label zone=b present; h3 label zone=b present; h4 ok; h5 ok; h6 ok"},
		{"require_any unmatched", RuleRequireAny, Request{},
			"h1 ok; h2 ok; h3 service labels match none of require_any team=payments,tier=front; h4 ok; h5 ok; " +
				`h6 host label io.rancher.scheduler.require_any="bogus": "bogus": want key=value`},
		{"require_any matched", RuleRequireAny, Request{Labels: map[string]string{"tier": "front"}},
			`h1 ok; h2 ok; h3 ok; h4 ok; h5 ok; h6 host label io.rancher.scheduler.require_any="bogus": "bogus": want key=value`},
		{"require_any matches implicit labels", RuleRequireAny, Request{Stack: "payments", Service: "api",
			Labels: map[string]string{}}, // io.rancher.stack.name=payments is not team=payments
			"h1 ok; h2 ok; h3 service labels match none of require_any team=payments,tier=front; h4 ok; h5 ok; " +
				`h6 host label io.rancher.scheduler.require_any="bogus": "bogus": want key=value`},
		{"container", RuleContainer, Request{Labels: aff("container", "web-db-1")},
			"h1 no container named web-db-1; h2 ok; h3 no container named web-db-1; h4 no container named web-db-1; h5 no container named web-db-1; h6 no container named web-db-1"},
		{"container_ne", RuleContainerNe, Request{Labels: aff("container_ne", "java-service-1-1")},
			"h1 container java-service-1-1 present; h2 ok; h3 ok; h4 ok; h5 ok; h6 ok"},
		{"container_label", RuleContainerLabel, Request{Labels: aff("container_label", "role=db")},
			"h1 no container with label role=db; h2 ok; h3 no container with label role=db; h4 no container with label role=db; h5 no container with label role=db; h6 no container with label role=db"},
		{"container_label_ne on implicit label", RuleContainerLabelNe,
			Request{Labels: aff("container_label_ne", "io.rancher.stack_service.name=java/service-1")},
			"h1 container java-service-1-1 has label io.rancher.stack_service.name=java/service-1; h2 ok; h3 ok; h4 ok; h5 ok; h6 ok"},
		{"port wildcard vs wildcard", RulePort, Request{Ports: []Port{{HostPort: 8080}}},
			"h1 port 8080/tcp in use by java-service-1-1; h2 ok; h3 ok; h4 ok; h5 ok; h6 ok"},
		{"port other protocol", RulePort, Request{Ports: []Port{{HostPort: 8080, Protocol: "udp"}}},
			"h1 ok; h2 ok; h3 ok; h4 ok; h5 ok; h6 ok"},
		{"port specific ip vs wildcard", RulePort, Request{Ports: []Port{{HostIP: "127.0.0.1", HostPort: 80}}},
			"h1 ok; h2 port 127.0.0.1:80/tcp in use by nginx; h3 ok; h4 ok; h5 ok; h6 ok"},
		{"port other specific ip", RulePort, Request{Ports: []Port{{HostIP: "10.0.0.3", HostPort: 5432}}},
			"h1 ok; h2 ok; h3 ok; h4 ok; h5 ok; h6 ok"},
		{"port wildcard vs specific ip", RulePort, Request{Ports: []Port{{HostPort: 5432}}},
			"h1 ok; h2 port 5432/tcp in use by web-db-1; h3 ok; h4 ok; h5 ok; h6 ok"},
		{"port unpublished", RulePort, Request{Ports: []Port{{HostPort: 0}}},
			"h1 ok; h2 ok; h3 ok; h4 ok; h5 ok; h6 ok"},
		{"cpu nano", RuleCPU, Request{Resources: Resources{NanoCPUs: 15e8}},
			"h1 cpu 1.50 requested, 1.00 free; h2 ok; h3 cpu 1.50 requested, 1.00 free; h4 ok; h5 ok; h6 ok"},
		{"cpu shares", RuleCPU, Request{Resources: Resources{CPUShares: 2048}},
			"h1 cpu 2.00 requested, 1.00 free; h2 ok; h3 cpu 2.00 requested, 1.00 free; h4 ok; h5 ok; h6 ok"},
		{"memory reservation wins over limit", RuleMemory, Request{Resources: Resources{MemoryReservation: 600 * mb, MemoryLimit: 2 * gib}},
			"h1 memory 600MiB requested, 512MiB free; h2 ok; h3 memory 600MiB requested, 512MiB free; h4 ok; h5 ok; h6 ok"},
		{"memory exactly fits", RuleMemory, Request{Resources: Resources{MemoryLimit: 512 * mb}},
			"h1 ok; h2 ok; h3 ok; h4 ok; h5 ok; h6 ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := mustIndex(t, fixedHosts())
			c := x.newCall(mustPrepare(t, tt.req))
			var check func(*hostIdx) (string, bool)
			for _, f := range c.chain {
				if f.rule == tt.rule {
					check = f.check
				}
			}
			if check == nil {
				t.Fatalf("no filter %s in the chain", tt.rule)
			}
			if got := verdictLine(x, check); got != tt.want {
				t.Errorf("\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// Replicas placed earlier in the same call count like running containers.
func TestFiltersSeePlacedReplicas(t *testing.T) {
	x := mustIndex(t, hostsN(2, 2e9, gib))
	req := Request{
		Labels: aff("container_label_ne", "io.rancher.stack_service.name=$${stack_name}/$${service_name}"),
		Ports:  []Port{{HostPort: 9000}}, Resources: Resources{NanoCPUs: 15e8, MemoryLimit: 600 * mb},
	}
	c := x.newCall(mustPrepare(t, req))
	c.placed[0] = []int{1}
	for rule, want := range map[Rule]string{
		RuleContainerLabelNe: "h01 container web-app-1 has label io.rancher.stack_service.name=web/app; h02 ok",
		RulePort:             "h01 port 9000/tcp in use by web-app-1; h02 ok",
		RuleCPU:              "h01 cpu 1.50 requested, 0.50 free; h02 ok",
		RuleMemory:           "h01 memory 600MiB requested, 424MiB free; h02 ok",
	} {
		for _, f := range c.chain {
			if f.rule == rule {
				if got := verdictLine(x, f.check); got != want {
					t.Errorf("%s:\n got %s\nwant %s", rule, got, want)
				}
			}
		}
	}
}

// Each scorer alone.
func TestScorers(t *testing.T) {
	s := &Snapshot{Hosts: []Host{
		{Name: "a", Containers: []Container{{Name: "web-app-1", Stack: "web", Service: "app"}, {Name: "web-app-2", Stack: "web", Service: "app"}}},
		{Name: "b", Labels: map[string]string{"disk": "ssd"}, Containers: []Container{{Name: "x1"}, {Name: "x2"}, {Name: "x3"}, {Name: "x4"}, {Name: "x5"}}},
		{Name: "c", Containers: []Container{{Name: "y1"}}},
		{Name: "d", Labels: map[string]string{"disk": "ssd"}, Containers: []Container{{Name: "web-app-3", Stack: "web", Service: "app"}}},
	}}
	x := mustIndex(t, s)
	order := func(req Request) string {
		c := x.newCall(mustPrepare(t, req))
		var out []string
		hs := append([]*hostIdx(nil), x.hosts...)
		for len(hs) > 0 {
			bi := 0
			for i := range hs {
				if c.score(hs[i]).less(c.score(hs[bi])) {
					bi = i
				}
			}
			out = append(out, hs[bi].name)
			hs = append(hs[:bi], hs[bi+1:]...)
		}
		return joinNames(out)
	}
	if got := order(Request{}); got != "c b d a" {
		t.Errorf("spread: %s", got)
	}
	if got := order(Request{Strategy: Binpack}); got != "b a c d" {
		t.Errorf("binpack: %s", got)
	}
	if got := order(Request{Labels: aff("host_label_soft", "disk=ssd")}); got != "b d c a" {
		t.Errorf("soft host_label then spread: %s", got)
	}
	if got := order(Request{Labels: aff("container_label_soft_ne", "io.rancher.stack_service.name=web/app")}); got != "c b d a" {
		t.Errorf("soft anti-affinity: %s", got)
	}
	if got := order(Request{Labels: aff("container_soft", "x1")}); got != "b c d a" {
		t.Errorf("soft container: %s", got)
	}
	c := x.newCall(mustPrepare(t, Request{Labels: map[string]string{
		LabelAffinityPrefix + "host_label_soft":    "disk=ssd",
		LabelAffinityPrefix + "container_soft_ne":  "x1",
		LabelAffinityPrefix + "host_label_soft_ne": "disk=ssd",
	}}))
	for name, want := range map[string]int{"a": 1, "b": 2, "c": 1, "d": 1} {
		if got := c.softViolations(x.byName[name]); got != want {
			t.Errorf("soft violations on %s = %d, want %d", name, got, want)
		}
	}
}

func joinNames(ns []string) string {
	out := ""
	for i, n := range ns {
		if i > 0 {
			out += " "
		}
		out += n
	}
	return out
}
