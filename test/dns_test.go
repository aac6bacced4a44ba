package test

import (
	"context"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/miekg/dns"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/internal/discovery"
	"github.com/dockmaster/dockmaster/internal/testenv"
)

// TestDNSServiceDiscovery: dockmaster's DNS answers a service with its
// healthy containers only, and a container whose health check starts
// failing drops out within about its check interval.
func TestDNSServiceDiscovery(t *testing.T) {
	e := startLBEnv(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	spec := e.spec(t, "v1")
	spec.Services = []deployer.ServiceSpec{*spec.Service("java-service-1")} // no LB here
	if err := e.d.Up(ctx, spec, deployer.DeployOptions{Version: "v1"}); err != nil {
		t.Fatal(err)
	}
	srv, err := e.disc.ListenDNS("127.0.0.1:0", discovery.DNSOptions{Suffix: "dockmaster"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())

	lookup := func(name string) []string {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, srv.Addr().String())
		if err != nil {
			t.Fatalf("A %s: %v", name, err)
		}
		var ips []string
		for _, rr := range r.Answer {
			if a, ok := rr.(*dns.A); ok {
				ips = append(ips, a.A.String())
				if a.Hdr.Ttl > 5 {
					t.Errorf("TTL %d, want <= 5", a.Hdr.Ttl)
				}
			}
		}
		sort.Strings(ips)
		return ips
	}

	// The containers' IPs on the stack network, from Docker itself.
	network := deployer.NetworkName("prod", "shop")
	ipOf := map[string]string{}
	for _, name := range []string{"shop-java-service-1-1", "shop-java-service-1-2"} {
		in, err := e.h.Client.ContainerInspect(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		ipOf[name] = in.NetworkSettings.Networks[network].IPAddress
	}
	want := []string{ipOf["shop-java-service-1-1"], ipOf["shop-java-service-1-2"]}
	sort.Strings(want)
	const name = "java-service-1.shop.prod.dockmaster"
	deadline := time.Now().Add(10 * time.Second)
	for got := lookup(name); strings.Join(got, ",") != strings.Join(want, ","); got = lookup(name) {
		if time.Now().After(deadline) {
			t.Fatalf("A %s = %v, want %v", name, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := lookup("shop-java-service-1-2.shop.prod"); len(got) != 1 || got[0] != ipOf["shop-java-service-1-2"] {
		t.Errorf("container name without suffix: %v", got)
	}

	// Break container 1's health check (/healthz answers 404 from now on).
	ex, err := e.h.Client.ContainerExecCreate(ctx, "shop-java-service-1-1", container.ExecOptions{Cmd: []string{"rm", "/www/healthz"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.h.Client.ContainerExecStart(ctx, ex.ID, container.ExecStartOptions{}); err != nil {
		t.Fatal(err)
	}
	broken := time.Now()
	interval := spec.Services[0].HealthCheck.Interval
	for got := lookup(name); len(got) != 1; got = lookup(name) {
		if time.Since(broken) > 10*time.Second {
			t.Fatalf("unhealthy container still answered after 10s: %v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(broken)
	t.Logf("unhealthy container left DNS %v after its check broke (health check interval %v)", took.Round(time.Millisecond), interval)
	if got := lookup(name); got[0] != ipOf["shop-java-service-1-2"] {
		t.Errorf("left in DNS: %v, want the healthy %s", got, ipOf["shop-java-service-1-2"])
	}
	// Slack for this loaded 2-core machine: one refresh and one probe.
	if took > interval+time.Second {
		t.Errorf("took %v to drop out, want about the check interval %v", took, interval)
	}
	if net.ParseIP(want[0]) == nil {
		t.Fatalf("container IP %q", want[0])
	}
}

// TestServeRunsDiscovery: `dockmaster serve` with discovery.dns_listen
// answers DNS for its zone (and refuses other names), and serves the
// Traefik endpoint behind a login.
func TestServeRunsDiscovery(t *testing.T) {
	port := testenv.FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := testenv.StartServer(t, "discovery:\n  dns_listen: "+addr+"\n  dns_suffix: dm.example\n")
	q := func(name string) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		var r *dns.Msg
		var err error
		for range 20 { // the server may still be starting its DNS listener
			if r, _, err = (&dns.Client{Timeout: time.Second}).Exchange(m, addr); err == nil {
				return r
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("A %s: %v\n%s", name, err, s.Log())
		return nil
	}
	if r := q("web.shop.prod.dm.example"); r.Rcode != dns.RcodeNameError || !r.Authoritative {
		t.Errorf("unknown name in the zone: rcode %d aa %v, want authoritative NXDOMAIN", r.Rcode, r.Authoritative)
	}
	if r := q("example.com"); r.Rcode != dns.RcodeRefused {
		t.Errorf("outside the zone: rcode %d, want REFUSED", r.Rcode)
	}
	var tr map[string]any
	if code := s.Admin().Do(http.MethodGet, "/api/v1/environments/prod/traefik", nil, &tr); code != http.StatusOK {
		t.Errorf("traefik endpoint as admin: %d", code)
	}
	if resp, err := http.Get(s.URL + "/api/v1/environments/prod/traefik"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("traefik endpoint anonymous: %v %v, want 401", resp, err)
	} else {
		resp.Body.Close()
	}
}
