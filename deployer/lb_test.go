package deployer

import (
	"reflect"
	"testing"
)

func TestRunSpecMakesLBContainersRunDockmasterLB(t *testing.T) {
	x := Discovery{
		LBImage:     "dockmaster:1",
		LBConfigURL: func(env, stack, svc string) string { return "http://dm:8080/lb/" + env + "/" + stack + "/" + svc },
		LBToken:     func(env, stack, svc string) string { return "tok-" + svc },
		DNS:         []string{"10.0.0.53"},
		DNSSuffix:   "dockmaster.",
	}
	lb := ServiceSpec{Name: "lb", Image: "rancher/lb-service-haproxy:v0.7.9", Environment: map[string]string{"A": "1"},
		Ports: []PortSpec{{HostPort: 80, ContainerPort: 80, Protocol: "tcp"}},
		LB: &LBConfig{PortRules: []LBPortRule{
			{SourcePort: 80, TargetPort: 8080, Service: "web", Protocol: "http"},
			{SourcePort: 5432, TargetPort: 5432, Service: "db", Protocol: "tcp"},
		}}}
	before := ConfigHash(lb)
	run := x.runSpec("prod", "shop", "h1", lb)
	if ConfigHash(lb) != before || len(lb.Ports) != 1 || lb.Environment[EnvLBHost] != "" {
		t.Fatalf("runSpec changed its argument: %+v", lb)
	}
	if run.Image != "dockmaster:1" || !reflect.DeepEqual(run.Command, []string{"lb"}) || run.Entrypoint != nil {
		t.Errorf("image/command = %s %v %v", run.Image, run.Command, run.Entrypoint)
	}
	wantEnv := map[string]string{"A": "1", EnvLBConfigURL: "http://dm:8080/lb/prod/shop/lb", EnvLBToken: "tok-lb", EnvLBHost: "h1"}
	if !reflect.DeepEqual(run.Environment, wantEnv) {
		t.Errorf("environment = %v, want %v", run.Environment, wantEnv)
	}
	wantPorts := []PortSpec{{HostPort: 80, ContainerPort: 80, Protocol: "tcp"}, {HostPort: 5432, ContainerPort: 5432, Protocol: "tcp"}}
	if !reflect.DeepEqual(run.Ports, wantPorts) {
		t.Errorf("ports = %+v, want %+v", run.Ports, wantPorts)
	}
	if !reflect.DeepEqual(run.DNS, []string{"10.0.0.53"}) || !reflect.DeepEqual(run.DNSSearch, []string{"shop.prod.dockmaster", "prod.dockmaster"}) {
		t.Errorf("dns = %v search %v", run.DNS, run.DNSSearch)
	}

	web := ServiceSpec{Name: "web", Image: "web:1", DNS: []string{"1.1.1.1"}}
	if got := x.runSpec("prod", "shop", "h1", web); got.Image != "web:1" || !reflect.DeepEqual(got.DNS, []string{"10.0.0.53", "1.1.1.1"}) {
		t.Errorf("plain service: %+v", got)
	}
	if got := (Discovery{}).runSpec("prod", "shop", "h1", lb); !reflect.DeepEqual(got, lb) {
		t.Errorf("zero Discovery changed the spec: %+v", got)
	}
	host := ServiceSpec{Name: "agent", NetworkMode: "host"}
	if got := x.runSpec("prod", "shop", "h1", host); got.DNS != nil {
		t.Errorf("host network got resolver %v", got.DNS)
	}
}

func TestEndpointPort(t *testing.T) {
	e := Endpoint{Host: "h1", Address: "192.0.2.1", IP: "10.1.0.5",
		Ports: []PortSpec{{HostIP: "0.0.0.0", HostPort: 32768, ContainerPort: 8080, Protocol: "tcp"}}}
	for _, c := range []struct {
		from string
		port uint16
		want string
	}{
		{"h1", 8080, "10.1.0.5:8080"},   // same host: the stack network
		{"h2", 8080, "192.0.2.1:32768"}, // other host: published port
		{"h2", 9000, "10.1.0.5:9000"},   // unpublished: routed bridge
		{"", 8080, "192.0.2.1:32768"},   // DNS / Traefik: no host
	} {
		if got, ok := e.Port(c.from, c.port); !ok || got != c.want {
			t.Errorf("Port(%q, %d) = %q %v, want %q", c.from, c.port, got, ok, c.want)
		}
	}
	if _, ok := (Endpoint{Host: "h1"}).Port("h2", 80); ok {
		t.Error("endpoint without IP or published port has an address")
	}
}

func TestLBStatusListsHealthyBackends(t *testing.T) {
	st := StackStatus{Stack: "shop", Services: []ServiceStatus{
		{Name: "lb"},
		{Name: "web", Containers: []ContainerStatus{
			{Name: "shop-web-1", Host: "h1", Health: "healthy"},
			{Name: "shop-web-2", Host: "h2", Health: "unhealthy: tcp connect: refused"},
			{Name: "shop-web-3", Host: "h2", Health: "stopped"},
		}},
	}}
	recs := []ServiceRecord{
		{Service: "lb", Spec: ServiceSpec{Name: "lb", LB: &LBConfig{PortRules: []LBPortRule{
			{SourcePort: 80, TargetPort: 8080, Service: "web"}, {SourcePort: 81, Service: "other/web"}}}}},
		{Service: "web", Spec: ServiceSpec{Name: "web"}},
	}
	lbStatus(&st, recs)
	got := st.Services[0].LB
	if got == nil || len(got.Rules) != 2 || !reflect.DeepEqual(got.Rules[0].Backends, []string{"shop-web-1@h1"}) || got.Rules[1].Backends != nil {
		t.Fatalf("LB status = %+v", got)
	}
	if st.Services[1].LB != nil {
		t.Errorf("non-LB service has LB status")
	}
}
