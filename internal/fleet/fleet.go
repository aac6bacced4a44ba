// Package fleet builds one deployer per environment from the registered
// hosts, and rebuilds it when the environment's hosts change. Everything
// that acts on an environment's containers (deploys, status, pages,
// container actions) gets its Deployer here, so there is one client per
// host and one view of the hosts.
package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/docker/docker/api/types/registry"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/internal/store"
)

// Source is what the fleet reads of the store.
type Source interface {
	Hosts(ctx context.Context, env string) ([]store.Host, error)
	Environment(ctx context.Context, name string) (store.Environment, error)
	deployer.Store
}

// Options configure a Fleet.
type Options struct {
	Store Source
	// Auth gives registry credentials for image pulls.
	Auth func(image string) (registry.AuthConfig, bool)
	// Placer overrides the deployer's placement (default: the scheduler).
	Placer deployer.Placer
	// EngineFor makes a host's engine; default deployer.NewDockerEngine.
	EngineFor func(h store.Host) (deployer.Engine, error)
}

// Fleet hands out per-environment deployers. Safe for concurrent use.
type Fleet struct {
	o  Options
	mu sync.Mutex
	m  map[string]*entry
}

type entry struct {
	key string // hash of the host list it was built from
	d   *deployer.Deployer
	eng []deployer.Engine
}

// New returns an empty fleet.
func New(o Options) *Fleet {
	if o.EngineFor == nil {
		o.EngineFor = func(h store.Host) (deployer.Engine, error) {
			return deployer.NewDockerEngine(deployer.HostConfig{Name: h.Name, Endpoint: h.Endpoint})
		}
	}
	return &Fleet{o: o, m: map[string]*entry{}}
}

// Deployer returns env's deployer, built from its current hosts.
func (f *Fleet) Deployer(ctx context.Context, env string) (*deployer.Deployer, error) {
	if _, err := f.o.Store.Environment(ctx, env); err != nil {
		return nil, err
	}
	hosts, err := f.o.Store.Hosts(ctx, env)
	if err != nil {
		return nil, err
	}
	key := hostsKey(hosts)
	f.mu.Lock()
	defer f.mu.Unlock()
	if e, ok := f.m[env]; ok && e.key == key {
		return e.d, nil
	}
	e := &entry{key: key}
	var dh []deployer.Host
	for _, h := range hosts {
		eng, err := f.o.EngineFor(h)
		if err != nil {
			closeAll(e.eng)
			return nil, fmt.Errorf("environment %s: %w", env, err)
		}
		e.eng = append(e.eng, eng)
		dh = append(dh, deployer.Host{Name: h.Name, Labels: h.Labels, Address: h.Address, Engine: eng})
	}
	d, err := deployer.New(deployer.Options{Env: env, Hosts: dh, Store: f.o.Store, Placer: f.o.Placer, Auth: f.o.Auth})
	if err != nil {
		closeAll(e.eng)
		return nil, err
	}
	e.d = d
	if old, ok := f.m[env]; ok {
		closeAll(old.eng) // Close drops idle connections only: operations in flight finish
	}
	f.m[env] = e
	return d, nil
}

func hostsKey(hosts []store.Host) string {
	b, _ := json.Marshal(hosts)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func closeAll(es []deployer.Engine) {
	for _, e := range es {
		e.Close()
	}
}

// Close releases every client.
func (f *Fleet) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.m {
		closeAll(e.eng)
	}
	f.m = map[string]*entry{}
}
