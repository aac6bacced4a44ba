package discovery

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/internal/discovery/traefiktest"
)

// fakeEnv is an Endpointer whose services a test edits.
type fakeEnv struct {
	mu   sync.Mutex
	svcs map[string][]deployer.ServiceEndpoints // by stack
}

func (f *fakeEnv) Stacks(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for s := range f.svcs {
		out = append(out, s)
	}
	sort.Strings(out)
	return out, nil
}

func (f *fakeEnv) Endpoints(_ context.Context, stack string) ([]deployer.ServiceEndpoints, []string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, _ := json.Marshal(f.svcs[stack]) // a copy: the test may edit its own
	var out []deployer.ServiceEndpoints
	_ = json.Unmarshal(b, &out)
	return out, nil, nil
}

func (f *fakeEnv) setHealthy(stack, svc, container string, healthy bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.svcs[stack] {
		if f.svcs[stack][i].Service != svc {
			continue
		}
		for j := range f.svcs[stack][i].Endpoints {
			e := &f.svcs[stack][i].Endpoints[j]
			if e.Container == container {
				e.Healthy = healthy
			}
		}
	}
}

// shop: web at scale 2 on h1 (not published), 1 on h2 (published), one
// unhealthy on h2; db published on h2; lb with an http and a tcp rule.
func shop() *fakeEnv {
	pub := func(hp, cp uint16) []deployer.PortSpec {
		return []deployer.PortSpec{{HostIP: "0.0.0.0", HostPort: hp, ContainerPort: cp, Protocol: "tcp"}}
	}
	return &fakeEnv{svcs: map[string][]deployer.ServiceEndpoints{"shop": {
		{Stack: "shop", Service: "lb", LB: &deployer.LBConfig{PortRules: []deployer.LBPortRule{
			{SourcePort: 80, TargetPort: 8080, Service: "web", Protocol: "http", Hostname: "shop.example.com", Path: "/", Priority: 1},
			{SourcePort: 5432, TargetPort: 5432, Service: "db", Protocol: "tcp"},
			{SourcePort: 81, TargetPort: 8080, Service: "ghost", Protocol: "http"},
		}, StickinessPolicy: map[string]any{"cookie": "SHOP"}},
			Endpoints: []deployer.Endpoint{{Host: "h1", Address: "192.0.2.1", Container: "shop-lb-1", IP: "10.1.0.2", Healthy: true,
				Ports: pub(80, 80)}}},
		{Stack: "shop", Service: "web", Endpoints: []deployer.Endpoint{
			{Host: "h1", Address: "192.0.2.1", Container: "shop-web-1", IP: "10.1.0.3", Healthy: true},
			{Host: "h1", Address: "192.0.2.1", Container: "shop-web-2", IP: "10.1.0.4", Healthy: true},
			{Host: "h2", Address: "192.0.2.2", Container: "shop-web-3", IP: "10.2.0.3", Healthy: true, Ports: pub(32768, 8080)},
			{Host: "h2", Address: "192.0.2.2", Container: "shop-web-4", IP: "10.2.0.4", Healthy: false, Reason: "unhealthy: refused", Ports: pub(32769, 8080)},
		}},
		{Stack: "shop", Service: "db", Endpoints: []deployer.Endpoint{
			{Host: "h2", Address: "192.0.2.2", Container: "shop-db-1", IP: "10.2.0.9", Healthy: true, Ports: pub(5432, 5432)},
		}},
	}}}
}

func newDiscovery(t *testing.T, env *fakeEnv) *Discovery {
	t.Helper()
	d := New(Options{
		Environments: func(context.Context) ([]string, error) { return []string{"prod"}, nil },
		Deployer:     func(context.Context, string) (Endpointer, error) { return env, nil },
		Interval:     10 * time.Millisecond,
	})
	d.Refresh(context.Background())
	return d
}

func TestLBConfigFromTheBalancersHost(t *testing.T) {
	env := shop()
	d := newDiscovery(t, env)
	c, _, err := d.LBConfig("prod", "shop", "lb", "h1")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Rules) != 3 || c.Version == "" {
		t.Fatalf("config = %+v", c)
	}
	// Same host: container IPs; other host: published port; unhealthy out.
	if want := []string{"10.1.0.3:8080", "10.1.0.4:8080", "192.0.2.2:32768"}; !reflect.DeepEqual(c.Rules[0].Backends, want) {
		t.Errorf("web backends = %v, want %v", c.Rules[0].Backends, want)
	}
	if c.Rules[0].StickyCookie != "SHOP" || c.Rules[0].Hostname != "shop.example.com" {
		t.Errorf("rule = %+v", c.Rules[0])
	}
	if want := []string{"192.0.2.2:5432"}; !reflect.DeepEqual(c.Rules[1].Backends, want) || c.Rules[1].Protocol != "tcp" {
		t.Errorf("db rule = %+v", c.Rules[1])
	}
	if len(c.Rules[2].Backends) != 0 {
		t.Errorf("unknown target has backends %v", c.Rules[2].Backends)
	}
	if _, _, err := d.LBConfig("prod", "shop", "web", "h1"); err == nil {
		t.Error("web is not a load balancer, got no error")
	}
	if _, _, err := d.LBConfig("prod", "shop", "nope", "h1"); err == nil {
		t.Error("unknown service, got no error")
	}

	// A long poll returns as soon as the backends change.
	got := make(chan []string, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		nc, err := d.WaitLBConfig(ctx, "prod", "shop", "lb", "h1", c.Version)
		if err != nil {
			t.Error(err)
		}
		got <- nc.Rules[0].Backends
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case b := <-got:
		t.Fatalf("poll returned before any change: %v", b)
	default:
	}
	env.setHealthy("shop", "web", "shop-web-2", false)
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	select {
	case b := <-got:
		if want := []string{"10.1.0.3:8080", "192.0.2.2:32768"}; !reflect.DeepEqual(b, want) {
			t.Errorf("after web-2 went unhealthy: %v, want %v", b, want)
		}
		t.Logf("change reached the poll in %v", time.Since(start))
	case <-time.After(3 * time.Second):
		t.Fatal("poll did not return after a change")
	}
	// A poll that times out returns what the caller had.
	c2, _, _ := d.LBConfig("prod", "shop", "lb", "h1")
	short, cancel2 := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel2()
	same, err := d.WaitLBConfig(short, "prod", "shop", "lb", "h1", c2.Version)
	if err != nil || same.Version != c2.Version {
		t.Errorf("timed-out poll: %v %v", same.Version, err)
	}
}

func query(t *testing.T, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	return r
}

func answers(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		switch v := rr.(type) {
		case *dns.A:
			out = append(out, v.A.String())
		case *dns.SRV:
			out = append(out, v.Target+":"+itoa(v.Port))
		}
		if rr.Header().Ttl != 5 {
			out = append(out, "bad-ttl")
		}
	}
	sort.Strings(out)
	return out
}

func itoa(p uint16) string { b, _ := json.Marshal(p); return string(b) }

func TestDNSAnswersHealthyContainersOnly(t *testing.T) {
	env := shop()
	d := newDiscovery(t, env)
	srv, err := d.ListenDNS("127.0.0.1:0", DNSOptions{Suffix: "dockmaster."})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	addr := srv.Addr().String()

	// Unpublished containers by IP, published ones by host address,
	// the unhealthy shop-web-4 (192.0.2.2 too, but via web-3) not counted.
	want := []string{"10.1.0.3", "10.1.0.4", "192.0.2.2"}
	for _, name := range []string{"web.shop.prod.dockmaster", "WEB.shop.prod", "web.shop.prod.dockmaster."} {
		r := query(t, addr, name, dns.TypeA)
		if r.Rcode != dns.RcodeSuccess || !r.Authoritative || !reflect.DeepEqual(answers(r), want) {
			t.Errorf("A %s: rcode %d aa %v %v, want %v", name, r.Rcode, r.Authoritative, answers(r), want)
		}
	}
	env.setHealthy("shop", "web", "shop-web-3", false)
	d.Refresh(context.Background())
	if got := answers(query(t, addr, "web.shop.prod.dockmaster", dns.TypeA)); !reflect.DeepEqual(got, []string{"10.1.0.3", "10.1.0.4"}) {
		t.Errorf("after web-3 unhealthy: %v", got)
	}

	r := query(t, addr, "db.shop.prod.dockmaster", dns.TypeSRV)
	if got := answers(r); !reflect.DeepEqual(got, []string{"shop-db-1.shop.prod.dockmaster.:5432"}) || len(r.Extra) != 1 {
		t.Errorf("SRV db: %v extra %v", got, r.Extra)
	}
	if got := answers(query(t, addr, "shop-web-1.shop.prod.dockmaster", dns.TypeA)); !reflect.DeepEqual(got, []string{"10.1.0.3"}) {
		t.Errorf("container name: %v", got)
	}
	if r := query(t, addr, "shop-web-4.shop.prod.dockmaster", dns.TypeA); len(r.Answer) != 0 || r.Rcode != dns.RcodeSuccess {
		t.Errorf("unhealthy container: %v rcode %d", r.Answer, r.Rcode)
	}
	if r := query(t, addr, "nope.shop.prod.dockmaster", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Errorf("unknown name in zone: rcode %d, want NXDOMAIN", r.Rcode)
	}
	if r := query(t, addr, "example.com", dns.TypeA); r.Rcode != dns.RcodeRefused {
		t.Errorf("outside the zone: rcode %d, want REFUSED", r.Rcode)
	}
	// TCP too.
	m := new(dns.Msg)
	m.SetQuestion("web.shop.prod.dockmaster.", dns.TypeA)
	if r, _, err := (&dns.Client{Net: "tcp"}).Exchange(m, addr); err != nil || len(r.Answer) != 2 {
		t.Errorf("over tcp: %v %v", r, err)
	}
}

func TestTraefikConfigValidatesAgainstSchema(t *testing.T) {
	d := newDiscovery(t, shop())
	got, err := json.Marshal(d.Traefik("prod"))
	if err != nil {
		t.Fatal(err)
	}
	validate(t, got)
	var c Traefik
	_ = json.Unmarshal(got, &c)
	if c.HTTP == nil || len(c.HTTP.Routers) != 1 || c.TCP == nil || len(c.TCP.Services) != 1 {
		t.Fatalf("traefik config: %s", got)
	}
	for name, r := range c.HTTP.Routers {
		if r.Rule != "Host(`shop.example.com`) && PathPrefix(`/`)" || r.Service != name || r.Priority != 1 {
			t.Errorf("router %s = %+v", name, r)
		}
		var urls []string
		for _, s := range c.HTTP.Services[name].LoadBalancer.Servers {
			urls = append(urls, s.URL)
		}
		// From outside: published ports, or container IPs for the others.
		if want := []string{"http://10.1.0.3:8080", "http://10.1.0.4:8080", "http://192.0.2.2:32768"}; !reflect.DeepEqual(urls, want) {
			t.Errorf("servers = %v, want %v", urls, want)
		}
	}
	// The schema check can fail: an empty servers list is refused.
	bad := bytes.Replace(got, []byte(`"servers":[{"address":"192.0.2.2:5432"}]`), []byte(`"servers":[]`), 1)
	if bytes.Equal(bad, got) {
		t.Fatal("test setup: tcp servers not found in the JSON")
	}
	if err := traefiktest.Validate(bad); err == nil {
		t.Error("schema accepted a service without servers")
	}
	// Empty environment: still valid.
	validate(t, []byte(`{}`))
}

func validate(t *testing.T, b []byte) {
	t.Helper()
	if err := traefiktest.Validate(b); err != nil {
		t.Errorf("traefik JSON does not validate: %v\n%s", err, b)
	}
}
