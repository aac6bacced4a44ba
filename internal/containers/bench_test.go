package containers

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/system"

	"github.com/dockmaster/dockmaster/internal/store"
)

// fakeHost answers like a Docker host with n containers; hang makes every
// call block until its ctx ends (a dead or black-holed host). Methods
// the listing does not use panic through the nil embedded interface.
type fakeHost struct {
	Docker
	name string
	list []container.Summary
	hang bool
}

func newFakeHost(name string, n int, hang bool) *fakeHost {
	f := &fakeHost{name: name, hang: hang}
	for i := range n {
		f.list = append(f.list, container.Summary{ID: fmt.Sprintf("%s-%064d", name, i), Names: []string{fmt.Sprintf("/%s-app-%d", name, i)},
			Image: "web:1", Command: "httpd -f", State: "running", Status: "Up 1 hour", Created: 1700000000,
			Ports:  []container.Port{{PrivatePort: 8080, PublicPort: uint16(20000 + i), Type: "tcp", IP: "0.0.0.0"}},
			Labels: map[string]string{"io.dockmaster.env": "prod", "io.dockmaster.stack": "app", "io.dockmaster.service": "web"}})
	}
	return f
}

func (f *fakeHost) Info(ctx context.Context) (system.Info, error) {
	if f.hang {
		<-ctx.Done()
		return system.Info{}, ctx.Err()
	}
	return system.Info{NCPU: 4, MemTotal: 8 << 30}, nil
}

func (f *fakeHost) Events(ctx context.Context, _ events.ListOptions) (<-chan events.Message, <-chan error) {
	errs := make(chan error, 1)
	go func() { <-ctx.Done(); errs <- ctx.Err() }()
	return make(chan events.Message), errs
}

func (f *fakeHost) ContainerList(ctx context.Context, _ container.ListOptions) ([]container.Summary, error) {
	if f.hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return f.list, nil
}

func (f *fakeHost) Close() error { return nil }

// BenchmarkList1000Containers10Hosts lists 9 hosts x 100 containers while
// the tenth host never answers. It prints ms/op of a listing from the
// event-fed cache and, once, the first (cold) listing's time, which is
// bounded by ColdWait however long the dead host hangs.
func BenchmarkList1000Containers10Hosts(b *testing.B) {
	var hosts hostList
	fakes := map[string]*fakeHost{}
	for i := range 10 {
		name := fmt.Sprintf("h%d", i)
		hosts = append(hosts, store.Host{Environment: "prod", Name: name, Endpoint: "tcp://" + name + ":2376"})
		fakes[name] = newFakeHost(name, 100, i == 9)
	}
	s := New(Options{Hosts: hosts, StatsInterval: -1, ColdWait: 200 * time.Millisecond, Timeout: time.Hour,
		Dial: func(h store.Host) (Docker, error) { return fakes[h.Name], nil }})
	defer s.Close()
	ctx := context.Background()
	start := time.Now()
	if err := s.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	l := s.List(ctx, "prod", Filter{})
	cold := time.Since(start)
	if len(l.Containers) != 900 || len(l.Hosts) != 10 || l.Hosts[9].State == "active" {
		b.Fatalf("listing: %d containers, hosts %+v", len(l.Containers), l.Hosts)
	}
	b.ResetTimer()
	for b.Loop() {
		l = s.List(ctx, "prod", Filter{})
		if len(l.Containers) != 900 {
			b.Fatalf("%d containers", len(l.Containers))
		}
	}
	b.StopTimer()
	perOp := float64(b.Elapsed().Microseconds()) / 1000 / float64(b.N)
	b.ReportMetric(perOp, "ms/list")
	b.ReportMetric(float64(cold.Milliseconds()), "cold-ms")
	b.Logf("listing 900 containers of 9 live hosts + 1 dead: %.3f ms per listing (goal < 300 ms); first listing %v (ColdWait 200ms)", perOp, cold.Round(time.Millisecond))
}
