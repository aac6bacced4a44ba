package test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/miekg/dns"

	"github.com/dockmaster/dockmaster/internal/testenv"
)

// Containers dockmaster starts get its DNS as their resolver and the
// stack's search domains, so "java-service-1.shop" resolves inside the
// stack to the healthy containers.
func TestServiceNamesResolveInsideTheStack(t *testing.T) {
	h := testenv.StartHost(t, "dnsstack")
	removeOwned(t, h)
	web := testenv.HTTPServerImage(t, h.Client, "1.0.0")
	base := testenv.BusyboxImage(t, h.Client)
	resolver := net.JoinHostPort(h.Gateway, "53")
	srv := testenv.StartServer(t, fmt.Sprintf(`discovery:
  dns_listen: %q
environments:
  - name: prod
    hosts:
      - {name: dnsstack, endpoint: %q, address: %q}
`, resolver, h.Endpoint, h.IP))
	admin := srv.Admin()
	compose := fmt.Sprintf("services:\n  java-service-1:\n    image: %s\n  client:\n    image: %s\n    command: [sleep, \"3600\"]\n", web, base)
	rancher := "services:\n  java-service-1:\n    scale: 2\n    health_check:\n      port: 8080\n      request_line: GET /healthz HTTP/1.0\n      interval: 500\n      healthy_threshold: 1\n      response_timeout: 1000\n"
	if st := admin.Do("POST", "/api/v1/environments/prod/stacks/shop/up", map[string]any{"compose": compose, "rancher": rancher}, nil); st != http.StatusOK {
		t.Fatalf("up: status %d", st)
	}
	ctx := context.Background()
	byService := func(svc string) []container.Summary {
		cs, err := h.Client.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(
			filters.Arg("label", "io.dockmaster.stack=shop"), filters.Arg("label", "io.dockmaster.service="+svc))})
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	var want []string
	for _, c := range byService("java-service-1") {
		for _, n := range c.NetworkSettings.Networks {
			want = append(want, n.IPAddress)
		}
	}
	if len(want) != 2 {
		t.Fatalf("java-service-1 addresses %v, want 2", want)
	}
	// dockmaster's DNS knows the service once discovery saw it healthy.
	waitFor(t, "dockmaster's DNS to answer for the service", 20*time.Second, func() bool {
		m := new(dns.Msg)
		m.SetQuestion("java-service-1.shop.prod.dockmaster.", dns.TypeA)
		r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, resolver)
		return err == nil && len(r.Answer) == len(want)
	})
	clients := byService("client")
	if len(clients) != 1 {
		t.Fatalf("%d client containers", len(clients))
	}
	info, err := h.Client.ContainerInspect(ctx, clients[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.HostConfig.DNS) == 0 || info.HostConfig.DNS[0] != h.Gateway || len(info.HostConfig.DNSSearch) == 0 || info.HostConfig.DNSSearch[0] != "shop.prod.dockmaster" {
		t.Fatalf("client resolver %v search %v; want %s first and shop.prod.dockmaster", info.HostConfig.DNS, info.HostConfig.DNSSearch, h.Gateway)
	}
	// The zone's full name, through Docker's resolver to dockmaster's.
	out := execIn(t, h, clients[0].ID, "/bin/busybox", "nslookup", "java-service-1.shop.prod.dockmaster")
	for _, ip := range want {
		if !strings.Contains(out, ip) {
			t.Fatalf("nslookup inside the stack:\n%s\nwant %v", out, want)
		}
	}
	// What apps write: the short names, completed by the search domains.
	for _, name := range []string{"java-service-1.shop", "java-service-1"} {
		out := execIn(t, h, clients[0].ID, "/bin/busybox", "wget", "-q", "-O", "-", "http://"+name+":8080/healthz")
		if strings.TrimSpace(out) != "1.0.0" {
			t.Fatalf("GET http://%s:8080/healthz inside the stack: %q, want 1.0.0", name, out)
		}
	}
}

// execIn runs cmd in a container and returns its output.
func execIn(t *testing.T, h *testenv.Host, id string, cmd ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ex, err := h.Client.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	att, err := h.Client.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer att.Close()
	var out bytes.Buffer
	stdcopy.StdCopy(&out, &out, att.Reader)
	if ins, err := h.Client.ContainerExecInspect(ctx, ex.ID); err != nil || ins.ExitCode != 0 {
		t.Logf("%v: exit %d (%v)", cmd, ins.ExitCode, err)
	}
	return out.String()
}
