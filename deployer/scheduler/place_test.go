package scheduler

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestPlaceSpread(t *testing.T) {
	p := mustPlace(t, hostsN(3, 0, 0), Request{Stack: "web", Service: "app"}, 4)
	want := lines("start web-app-1 on h01", "start web-app-2 on h02", "start web-app-3 on h03", "start web-app-4 on h01")
	if got := p.String(); got != want {
		t.Errorf("got\n%swant\n%s", got, want)
	}
}

func TestPlaceSpreadCountsExisting(t *testing.T) {
	s := hostsN(3, 0, 0)
	s.Hosts[0].Containers = []Container{{Name: "web-app-7", Stack: "web", Service: "app", Index: 7}}
	s.Hosts[1].Containers = []Container{{Name: "other-1"}, {Name: "other-2"}}
	// h03 is emptiest; h02 has no replica but two others; h01 has a replica.
	p := mustPlace(t, s, Request{Stack: "web", Service: "app"}, 3)
	want := lines("start web-app-8 on h03", "start web-app-9 on h02", "start web-app-10 on h01")
	if got := p.String(); got != want {
		t.Errorf("got\n%swant\n%s", got, want)
	}
}

func TestPlaceBinpack(t *testing.T) {
	s := hostsN(3, 2e9, 0)
	s.Hosts[2].Containers = []Container{{Name: "other-1"}}
	p := mustPlace(t, s, Request{Stack: "web", Service: "app", Strategy: Binpack, Resources: Resources{NanoCPUs: 1e9}}, 3)
	// h03 is fullest: it takes two (then its CPU is gone), then h01.
	want := lines("start web-app-1 on h03", "start web-app-2 on h03", "start web-app-3 on h01")
	if got := p.String(); got != want {
		t.Errorf("got\n%swant\n%s", got, want)
	}
}

func TestPlaceSeedIsDeterministicAndRotates(t *testing.T) {
	s := hostsN(10, 0, 0)
	first := map[string]bool{}
	for _, seed := range []string{"d-1", "d-2", "d-3", "d-4", "d-5", "d-6", "d-7", "d-8"} {
		req := Request{Stack: "web", Service: "app", Seed: seed}
		a, b := mustPlace(t, s, req, 3), mustPlace(t, s, req, 3)
		if a.String() != b.String() {
			t.Fatalf("seed %s: two plans differ:\n%s\n%s", seed, a, b)
		}
		first[a.Placements[0].Host] = true
	}
	if len(first) < 3 {
		t.Errorf("8 seeds started on only %d distinct hosts: %v", len(first), first)
	}
}

func TestPlacePortsNeverShareAHost(t *testing.T) {
	req := Request{Stack: "web", Service: "app", Ports: []Port{{HostPort: 8080}}}
	p, err := Place(hostsN(2, 0, 0), req, 3)
	var nf *NoFitError
	if !errors.As(err, &nf) {
		t.Fatalf("err = %v, want *NoFitError", err)
	}
	const want = "no host fits web/app (placed 2 of 3): h01: port 8080/tcp in use by web-app-1; h02: port 8080/tcp in use by web-app-2"
	if err.Error() != want {
		t.Errorf("got  %s\nwant %s", err, want)
	}
	if got := p.String(); got != lines("start web-app-1 on h01", "start web-app-2 on h02") {
		t.Errorf("partial plan:\n%s", got)
	}
}

func TestPlaceNoFitNamesEveryHost(t *testing.T) {
	req := Request{Stack: "web", Service: "app", Labels: aff("host_label", "env=prod"), Ports: []Port{{HostPort: 8080}}}
	_, err := Place(fixedHosts(), req, 1)
	var nf *NoFitError
	if !errors.As(err, &nf) {
		t.Fatalf("err = %v, want *NoFitError", err)
	}
	want := "no host fits web/app: h1: port 8080/tcp in use by java-service-1-1; h2: label env=prod missing; " +
		"h3: service labels match none of require_any team=payments,tier=front; h4: host draining; h5: host unreachable; " +
		`h6: host label io.rancher.scheduler.require_any="bogus": "bogus": want key=value`
	if err.Error() != want {
		t.Errorf("got  %s\nwant %s", err, want)
	}
	if len(nf.Hosts) != 6 || nf.Hosts[0].Rule != RulePort || nf.Hosts[1].Rule != RuleHostLabel {
		t.Errorf("hosts = %+v", nf.Hosts)
	}
}

func TestPlaceChain(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		n    int
		want string
	}{
		{"require_any matched, prod only", Request{Labels: map[string]string{
			LabelAffinityPrefix + "host_label": "env=prod", "tier": "front"}}, 2,
			lines("start web-app-1 on h3", "start web-app-2 on h1")},
		{"affinity to a container", Request{Labels: aff("container_label", "role=db")}, 1,
			lines("start web-app-1 on h2")},
		// Without soft rules spread picks h1 (1 container) over h2 (2).
		{"no soft rule", Request{}, 1, lines("start web-app-1 on h1")},
		{"soft rule preferred", Request{Labels: aff("host_label_soft", "zone=b")}, 1,
			lines("start web-app-1 on h2")},
		{"soft rule dropped when nothing has it", Request{Labels: aff("host_label_soft", "zone=z")}, 1,
			lines("start web-app-1 on h1")},
		{"hard anti-affinity with itself", Request{
			Labels: aff("container_label_ne", "io.rancher.stack_service.name=$${stack_name}/$${service_name}")}, 2,
			lines("start web-app-1 on h1", "start web-app-2 on h2")},
		{"resources", Request{Resources: Resources{NanoCPUs: 2e9}}, 1, lines("start web-app-1 on h2")},
		{"native rules", Request{Scheduling: &Scheduling{NativeAffinity: NativeAffinity{HostLabelNe: []string{"zone=a"}}}}, 1,
			lines("start web-app-1 on h2")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Stack, tt.req.Service = "web", "app"
			p := mustPlace(t, fixedHosts(), tt.req, tt.n)
			if got := p.String(); got != tt.want {
				t.Errorf("got\n%swant\n%sverdicts:\n%s", got, tt.want, p.Explain())
			}
		})
	}
}

func TestPlaceVerdictsRecorded(t *testing.T) {
	p, err := Place(fixedHosts(), Request{Stack: "web", Service: "app", Labels: aff("host_label", "zone=b"), Ports: []Port{{HostPort: 5432}}}, 1)
	if err == nil {
		t.Fatalf("placed %s", p)
	}
	want := "h1: label zone=b missing\nh2: port 5432/tcp in use by web-db-1\nh3: service labels match none of require_any team=payments,tier=front\n" +
		"h4: host draining\nh5: host unreachable\nh6: label zone=b missing\n"
	if got := p.Explain(); got != want {
		t.Errorf("got\n%swant\n%s", got, want)
	}
}

func TestPlaceDoesNotMutateSnapshot(t *testing.T) {
	s := fixedHosts()
	x := mustIndex(t, s)
	req := Request{Stack: "web", Service: "app", Ports: []Port{{HostPort: 9}}, Labels: map[string]string{"tier": "front"}}
	p, err := x.Place(req, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Apply(req, p); err != nil {
		t.Fatal(err)
	}
	if _, err := Evacuate(s, "h1", nil); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s, fixedHosts()) {
		t.Error("the snapshot changed")
	}
}

func TestApplyThenPlaceSeesIt(t *testing.T) {
	x := mustIndex(t, hostsN(1, 0, 0))
	req := Request{Stack: "web", Service: "app", Ports: []Port{{HostPort: 8080}}}
	p, err := x.Place(req, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Place(req, 1); err != nil {
		t.Fatalf("Place must not book anything: %v", err)
	}
	if err := x.Apply(req, p); err != nil {
		t.Fatal(err)
	}
	other := Request{Stack: "api", Service: "svc", Ports: []Port{{HostPort: 8080}}}
	if _, err := x.Place(other, 1); err == nil || err.Error() != "no host fits api/svc: h01: port 8080/tcp in use by web-app-1" {
		t.Errorf("err = %v", err)
	}
	p2, _ := x.Place(Request{Stack: "web", Service: "app"}, 1)
	if p2.Placements[0].Index != 2 {
		t.Errorf("next index = %d, want 2", p2.Placements[0].Index)
	}
	if err := x.Apply(other, p); err == nil {
		t.Error("Apply accepted a plan of another service")
	}
}

func TestPlaceBadInput(t *testing.T) {
	tests := []struct {
		s    *Snapshot
		req  Request
		n    int
		is   error
		want string
	}{
		{hostsN(1, 0, 0), Request{Stack: "web", Service: "app", Strategy: "random"}, 1, ErrBadRequest, `unknown strategy "random"`},
		{hostsN(1, 0, 0), Request{Stack: "web", Service: "app", Labels: aff("host_label", "x")}, 1, ErrBadRule,
			`web/app: bad scheduling rule: label io.rancher.scheduler.affinity:host_label="x"`},
		{hostsN(1, 0, 0), Request{Stack: "web"}, 1, ErrBadRequest, "stack and service must be set"},
		{hostsN(1, 0, 0), Request{Stack: "web", Service: "app"}, -1, ErrBadRequest, "negative count -1"},
		{hostsN(1, 0, 0), Request{Stack: "web", Service: "app", Ports: []Port{{HostPort: 1, Protocol: "sctp"}}}, 1, ErrBadRequest, `unknown protocol "sctp"`},
		{&Snapshot{Hosts: []Host{{Name: "a"}, {Name: "a"}}}, Request{Stack: "web", Service: "app"}, 1, ErrBadSnapshot, "host a listed twice"},
		{&Snapshot{Hosts: []Host{{Name: ""}}}, Request{Stack: "web", Service: "app"}, 1, ErrBadSnapshot, "host #0 has no name"},
	}
	for _, tt := range tests {
		_, err := Place(tt.s, tt.req, tt.n)
		if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: err = %v, want %v containing %q", tt.req, err, tt.is, tt.want)
		}
	}
	_, err := Place(&Snapshot{}, Request{Stack: "web", Service: "app"}, 1)
	if err == nil || err.Error() != "no host fits web/app: no hosts" {
		t.Errorf("empty snapshot: %v", err)
	}
}

func TestGlobal(t *testing.T) {
	svc := func(name string, idx int) Container {
		return Container{Name: name, Stack: "mon", Service: "agent", Index: idx, Ports: []Port{{HostPort: 9100}}}
	}
	s := &Snapshot{Hosts: []Host{
		{Name: "a", Labels: map[string]string{"env": "prod"}, Containers: []Container{svc("mon-agent-1", 1)}},
		{Name: "b", Labels: map[string]string{"env": "prod"}},
		{Name: "c", Labels: map[string]string{"env": "dev"}, Containers: []Container{svc("mon-agent-2", 2)}},
		{Name: "d", Labels: map[string]string{"env": "prod"}, Containers: []Container{svc("mon-agent-4", 4), svc("mon-agent-3", 3)}},
		{Name: "e", Labels: map[string]string{"env": "prod"}, State: HostDraining},
		{Name: "f", Labels: map[string]string{"env": "prod"}, Containers: []Container{{Name: "node-exporter", Ports: []Port{{HostPort: 9100}}}}},
	}}
	req := Request{Stack: "mon", Service: "agent", Ports: []Port{{HostPort: 9100}},
		Labels: map[string]string{LabelGlobal: "true", LabelAffinityPrefix + "host_label": "env=prod"}}
	d, err := Global(s, req)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmtGlobal(d), "place mon-agent-5 on b; extra mon-agent-2 on c; extra mon-agent-4 on d"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := d.Verdicts["f"]; len(got) != 1 || got[0].Reason != "port 9100/tcp in use by node-exporter" {
		t.Errorf("f verdicts = %+v", got)
	}
	// Place on a global request is the Place half, whatever n says.
	p := mustPlace(t, s, req, 99)
	if got := p.String(); got != lines("start mon-agent-5 on b") {
		t.Errorf("Place:\n%s", got)
	}
	// A host joins; a host leaves (and with it its container).
	s.Hosts = append(s.Hosts[1:], Host{Name: "g", Labels: map[string]string{"env": "prod"}})
	d, _ = Global(s, req)
	if got, want := fmtGlobal(d), "place mon-agent-5 on b; place mon-agent-6 on g; extra mon-agent-2 on c; extra mon-agent-4 on d"; got != want {
		t.Errorf("after join/leave got %s", got)
	}
}

func fmtGlobal(d GlobalDiff) string {
	var parts []string
	for _, p := range d.Place {
		parts = append(parts, "place "+p.Name()+" on "+p.Host)
	}
	for _, e := range d.Extra {
		parts = append(parts, "extra "+e.Name+" on "+e.Host)
	}
	return strings.Join(parts, "; ")
}

func TestStoppedContainersKeepOnlyTheirIndex(t *testing.T) {
	s := hostsN(2, 1e9, 0)
	s.Hosts[0].Containers = []Container{{Name: "web-app-5", Stack: "web", Service: "app", Index: 5, Stopped: true,
		Ports: []Port{{HostPort: 8080}}, Resources: Resources{NanoCPUs: 1e9}, Labels: map[string]string{"role": "x"}}}
	s.Hosts[1].Containers = []Container{{Name: "busy"}}
	req := Request{Stack: "web", Service: "app", Ports: []Port{{HostPort: 8080}}, Resources: Resources{NanoCPUs: 1e9},
		Labels: aff("container_label_ne", "role=x")}
	// h01 looks empty to spread, port and cpu; the next index is 6.
	if got := mustPlace(t, s, req, 1).String(); got != lines("start web-app-6 on h01") {
		t.Errorf("got\n%s", got)
	}
	s.Hosts[0].State = HostDraining
	if p, err := Evacuate(s, "h01", nil); err != nil || p.String() != "no changes\n" {
		t.Errorf("a stopped container was moved: %v\n%s", err, p)
	}
}
