// Package discovery keeps the view of which containers of each service are
// healthy, refreshed a few times a second from the environments' Docker
// hosts, and serves it three ways: DNS (dns.go), the load balancer configs
// that `dockmaster lb` instances long-poll (lbconfig.go), and Traefik's HTTP
// provider format (traefik.go).
package discovery

import (
	"context"
	"log/slog"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/dockmaster/dockmaster/deployer"
)

// Endpointer is what discovery needs of an environment's deployer.
type Endpointer interface {
	Stacks(ctx context.Context) ([]string, error)
	Endpoints(ctx context.Context, stack string) ([]deployer.ServiceEndpoints, []string, error)
}

// Options configure a Discovery.
type Options struct {
	// Environments lists the environment names to watch.
	Environments func(ctx context.Context) ([]string, error)
	// Deployer gives an environment's deployer (fleet.Deployer).
	Deployer func(ctx context.Context, env string) (Endpointer, error)
	// Interval between refreshes (default 250ms): how long a health change
	// or a container start/stop takes to reach DNS and the LBs, plus one
	// probe.
	Interval time.Duration
	Log      *slog.Logger
}

// Service is one service of the view: its endpoints (healthy or not) and,
// for a load balancer, its lb_config.
type Service struct {
	Env, Stack, Name string
	LB               *deployer.LBConfig
	Endpoints        []deployer.Endpoint
}

// Healthy returns the healthy endpoints.
func (s Service) Healthy() []deployer.Endpoint {
	var out []deployer.Endpoint
	for _, e := range s.Endpoints {
		if e.Healthy {
			out = append(out, e)
		}
	}
	return out
}

// Discovery holds the view. Safe for concurrent use.
type Discovery struct {
	o       Options
	mu      sync.Mutex
	envs    map[string][]Service // sorted by stack, name
	version uint64
	changed chan struct{} // closed and replaced on every change
}

// New returns an empty Discovery; Run fills it.
func New(o Options) *Discovery {
	if o.Interval <= 0 {
		o.Interval = 250 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Discovery{o: o, envs: map[string][]Service{}, changed: make(chan struct{})}
}

// Run refreshes the view every Interval until ctx ends.
func (d *Discovery) Run(ctx context.Context) {
	t := time.NewTicker(d.o.Interval)
	defer t.Stop()
	for {
		d.Refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Refresh reads every environment once. An environment that cannot be
// read keeps its last view (its error is logged); a host that does not
// answer drops its containers (deployer.Endpoints).
func (d *Discovery) Refresh(ctx context.Context) {
	envs, err := d.o.Environments(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.o.Log.Warn("discovery: list environments", "err", err)
		}
		return
	}
	var wg sync.WaitGroup
	for _, env := range envs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			svcs, err := d.read(ctx, env)
			if err != nil {
				if ctx.Err() == nil {
					d.o.Log.Warn("discovery: refresh", "env", env, "err", err)
				}
				return
			}
			d.set(env, svcs)
		}()
	}
	wg.Wait()
	d.mu.Lock()
	for env := range d.envs {
		if !contains(envs, env) {
			delete(d.envs, env)
			d.bump()
		}
	}
	d.mu.Unlock()
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func (d *Discovery) read(ctx context.Context, env string) ([]Service, error) {
	dep, err := d.o.Deployer(ctx, env)
	if err != nil {
		return nil, err
	}
	stacks, err := dep.Stacks(ctx)
	if err != nil {
		return nil, err
	}
	var out []Service
	for _, st := range stacks {
		ses, _, err := dep.Endpoints(ctx, st)
		if err != nil {
			return nil, err
		}
		for _, se := range ses {
			eps := se.Endpoints
			sort.Slice(eps, func(i, j int) bool { return eps[i].Container < eps[j].Container })
			out = append(out, Service{Env: env, Stack: st, Name: se.Service, LB: se.LB, Endpoints: eps})
		}
	}
	return out, nil
}

// set replaces env's view, bumping the version when it differs.
func (d *Discovery) set(env string, svcs []Service) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if reflect.DeepEqual(d.envs[env], svcs) {
		return
	}
	d.envs[env] = svcs
	d.bump()
}

// bump must be called with mu held.
func (d *Discovery) bump() {
	d.version++
	close(d.changed)
	d.changed = make(chan struct{})
}

// Services returns env's view (nil when unknown) and the view's version.
func (d *Discovery) Services(env string) ([]Service, uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.envs[env], d.version
}

// Envs lists the environments in the view.
func (d *Discovery) Envs() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, 0, len(d.envs))
	for e := range d.envs {
		out = append(out, e)
	}
	sort.Strings(out)
	return out
}

// Wait blocks until the version is past after, or ctx ends (ctx's error).
func (d *Discovery) Wait(ctx context.Context, after uint64) (uint64, error) {
	for {
		d.mu.Lock()
		v, ch := d.version, d.changed
		d.mu.Unlock()
		if v > after {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-ch:
		}
	}
}
