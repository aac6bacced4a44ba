package scheduler

import (
	"errors"
	"strings"
	"testing"
)

const antiSelf = "io.rancher.stack_service.name=$${stack_name}/$${service_name}"

func app(idx int, name string) Container {
	return Container{ID: "id-" + name, Name: name, Stack: "web", Service: "app", Index: idx,
		Labels: aff("container_label_ne", antiSelf), Ports: []Port{{HostPort: 8080}}}
}

func TestEvacuateDrain(t *testing.T) {
	s := hostsN(4, 0, 0)
	s.Hosts[0].State = HostDraining
	s.Hosts[0].Containers = []Container{
		app(2, "web-app-2"), app(1, "web-app-1"),
		{Name: "foreign"},
		{Name: "mon-agent-1", Stack: "mon", Service: "agent", Index: 1, Labels: map[string]string{LabelGlobal: "true"}},
	}
	s.Hosts[1].Containers = []Container{app(3, "web-app-3")}
	// The request comes from the containers' own labels (no reqs given).
	p, err := Evacuate(s, "h01", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := lines(
		"start web-app-4 on h03 (replaces web-app-1 on h01)", "stop web-app-1 on h01",
		"start web-app-5 on h04 (replaces web-app-2 on h01)", "stop web-app-2 on h01")
	if got := p.String(); got != want {
		t.Errorf("got\n%swant\n%s", got, want)
	}
}

func TestEvacuateUnreachableAndNoFit(t *testing.T) {
	s := hostsN(3, 0, 0)
	s.Hosts[0].State = HostUnreachable
	s.Hosts[0].Containers = []Container{app(1, "web-app-1"), app(2, "web-app-2"),
		{Name: "api-svc-1", Stack: "api", Service: "svc", Index: 1}}
	s.Hosts[1].Containers = []Container{app(3, "web-app-3")}
	reqs := []Request{{Stack: "web", Service: "app", Labels: aff("container_label_ne", antiSelf), Ports: []Port{{HostPort: 8080}}}}
	p, err := Evacuate(s, "h01", reqs)
	var nf *NoFitError
	if !errors.As(err, &nf) {
		t.Fatalf("err = %v", err)
	}
	const wantErr = "no host fits web/app (placed 1 of 2): h01: host being evacuated; " +
		"h02: container web-app-3 has label io.rancher.stack_service.name=web/app; h03: container web-app-4 has label io.rancher.stack_service.name=web/app"
	if err.Error() != wantErr {
		t.Errorf("got  %s\nwant %s", err, wantErr)
	}
	// Unreachable: no stop step; the api container fits anywhere; web-app-2
	// fits nowhere and stays.
	want := lines("start api-svc-2 on h03 (replaces api-svc-1 on h01)", "start web-app-4 on h03 (replaces web-app-1 on h01)")
	if got := p.String(); got != want {
		t.Errorf("got\n%swant\n%s", got, want)
	}
	if _, err := Evacuate(s, "nope", nil); !errors.Is(err, ErrUnknownHost) {
		t.Errorf("unknown host: %v", err)
	}
}

func TestRebalance(t *testing.T) {
	s := hostsN(3, 0, 0)
	s.Hosts[0].Containers = []Container{app(1, "web-app-1"), app(2, "web-app-2"), app(3, "web-app-3")}
	s.Hosts[1].Containers = []Container{app(4, "web-app-4")}
	for i := range s.Hosts[0].Containers {
		s.Hosts[0].Containers[i].Labels = nil // no anti-affinity for this one
		s.Hosts[0].Containers[i].Ports = nil
	}
	s.Hosts[1].Containers[0].Labels, s.Hosts[1].Containers[0].Ports = nil, nil
	p, err := Rebalance(s, "h03", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := lines("start web-app-5 on h03 (replaces web-app-3 on h01)", "stop web-app-3 on h01")
	if got := p.String(); got != want {
		t.Errorf("got\n%swant\n%s", got, want)
	}
	// Binpack services stay packed.
	p, _ = Rebalance(s, "h03", []Request{{Stack: "web", Service: "app", Strategy: Binpack}})
	if got := p.String(); got != "no changes\n" {
		t.Errorf("binpack:\n%s", got)
	}
	// The returning host must pass the rules.
	s.Hosts[2].Containers = []Container{{Name: "squatter", Ports: []Port{{HostPort: 8080}}}}
	p, _ = Rebalance(s, "h03", []Request{{Stack: "web", Service: "app", Ports: []Port{{HostPort: 8080}}}})
	if got := p.String(); got != "no changes\n" || !strings.Contains(p.Explain(), "h03: port 8080/tcp in use by squatter") {
		t.Errorf("port:\n%s%s", got, p.Explain())
	}
	s.Hosts[2].State = HostDraining
	if _, err := Rebalance(s, "h03", nil); !errors.Is(err, ErrBadRequest) {
		t.Errorf("draining target: %v", err)
	}
}
