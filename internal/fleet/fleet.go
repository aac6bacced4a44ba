// Package fleet builds one deployer per environment from the registered
// hosts, and rebuilds it when the environment's hosts change. Everything
// that acts on an environment's containers (deploys, status, pages,
// container actions) gets its Deployer here, so there is one client per
// host and one view of the hosts.
package fleet

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/registry"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/internal/seal"
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
	// TLS gives a host's client TLS material (zero: none); default none.
	// The material joins the rebuild key, so a host registered again with
	// new certificates gets a new client. See SealedTLS.
	TLS func(ctx context.Context, h store.Host) (seal.TLSMaterial, error)
	// EngineFor makes a host's engine from its TLS configuration (nil:
	// none); default DockerEngine.
	EngineFor func(h store.Host, tlsCfg *tls.Config) (deployer.Engine, error)
	// Discovery is given to every deployer: the LB runtime of lb_config
	// services and the containers' resolver (zero: containers as written).
	Discovery deployer.Discovery
	// Swarm tunes the Swarm targets (Env, Manager, Store and Auth are set
	// per environment).
	Swarm deployer.SwarmOptions
	// RescheduleAfter is how long a host may stay unreachable before the
	// reconciler replaces its containers elsewhere (zero: the deployer's default).
	RescheduleAfter time.Duration
}

// ErrSwarm is returned by Deployer for a Swarm environment: host
// operations (drain, rebalance, discovery) do not apply; use Target.
var ErrSwarm = errors.New("environment is a Docker Swarm cluster: host operations do not apply")

// DockerEngine is the default EngineFor: a Docker API client.
func DockerEngine(h store.Host, tlsCfg *tls.Config) (deployer.Engine, error) {
	return deployer.NewDockerEngine(deployer.HostConfig{Name: h.Name, Endpoint: h.Endpoint, TLS: tlsCfg})
}

// SealedTLS is Options.TLS for material sealed at registration
// (store.DB.HostTLS), opened with s for its host (seal.HostOwner).
func SealedTLS(src interface {
	HostTLS(ctx context.Context, env, endpoint string) ([]byte, error)
}, s *seal.Sealer) func(context.Context, store.Host) (seal.TLSMaterial, error) {
	return func(ctx context.Context, h store.Host) (seal.TLSMaterial, error) {
		b, err := src.HostTLS(ctx, h.Environment, h.Endpoint)
		if err != nil {
			return seal.TLSMaterial{}, err
		}
		m, err := s.OpenTLS(b, seal.HostOwner(h.Environment, h.Endpoint))
		if err != nil {
			return m, fmt.Errorf("host %s TLS material: %w", h.Name, err)
		}
		return m, nil
	}
}

// Fleet hands out per-environment deployers. Safe for concurrent use.
type Fleet struct {
	o  Options
	mu sync.Mutex
	m  map[string]*entry
	sw map[string]*deployer.Swarm // by env + "\x00" + manager endpoint
}

type entry struct {
	key string // hash of the host list it was built from
	d   *deployer.Deployer
	eng []deployer.Engine
}

// New returns an empty fleet.
func New(o Options) *Fleet {
	if o.EngineFor == nil {
		o.EngineFor = DockerEngine
	}
	return &Fleet{o: o, m: map[string]*entry{}, sw: map[string]*deployer.Swarm{}}
}

// Target returns what deploys env: its Swarm target when the environment
// has a Swarm manager, else its Deployer.
func (f *Fleet) Target(ctx context.Context, env string) (deployer.Target, error) {
	e, err := f.o.Store.Environment(ctx, env)
	if err != nil {
		return nil, err
	}
	if e.SwarmManager == "" {
		return f.Deployer(ctx, env)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	key := env + "\x00" + e.SwarmManager
	if s, ok := f.sw[key]; ok {
		return s, nil
	}
	o := f.o.Swarm
	o.Env, o.Manager, o.Store, o.Auth = env, e.SwarmManager, f.o.Store, f.o.Auth
	s, err := deployer.NewSwarm(o)
	if err != nil {
		return nil, err
	}
	for k, old := range f.sw { // the manager changed: drop the old client
		if strings.HasPrefix(k, env+"\x00") {
			old.Close()
			delete(f.sw, k)
		}
	}
	f.sw[key] = s
	return s, nil
}

// Deployer returns env's deployer, built from its current hosts.
func (f *Fleet) Deployer(ctx context.Context, env string) (*deployer.Deployer, error) {
	if e, err := f.o.Store.Environment(ctx, env); err != nil {
		return nil, err
	} else if e.SwarmManager != "" {
		return nil, fmt.Errorf("environment %s: %w", env, ErrSwarm)
	}
	hosts, err := f.o.Store.Hosts(ctx, env)
	if err != nil {
		return nil, err
	}
	material := make([]seal.TLSMaterial, len(hosts))
	if f.o.TLS != nil {
		for i, h := range hosts {
			if material[i], err = f.o.TLS(ctx, h); err != nil {
				return nil, fmt.Errorf("environment %s: %w", env, err)
			}
		}
	}
	key := hostsKey(hosts, material)
	f.mu.Lock()
	defer f.mu.Unlock()
	if e, ok := f.m[env]; ok && e.key == key {
		return e.d, nil
	}
	e := &entry{key: key}
	var dh []deployer.Host
	for i, h := range hosts {
		var tlsCfg *tls.Config
		if !material[i].IsZero() {
			if tlsCfg, err = material[i].Config(""); err != nil {
				closeAll(e.eng)
				return nil, fmt.Errorf("environment %s: host %s: %w", env, h.Name, err)
			}
		}
		eng, err := f.o.EngineFor(h, tlsCfg)
		if err != nil {
			closeAll(e.eng)
			return nil, fmt.Errorf("environment %s: %w", env, err)
		}
		e.eng = append(e.eng, eng)
		// State: a draining host takes no new containers (scheduler).
		dh = append(dh, deployer.Host{Name: h.Name, Labels: h.Labels, Address: h.Address, Engine: eng, State: h.State})
	}
	d, err := deployer.New(deployer.Options{Env: env, Hosts: dh, Store: f.o.Store, Placer: f.o.Placer, Auth: f.o.Auth,
		Discovery: f.o.Discovery, RescheduleAfter: f.o.RescheduleAfter})
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

func hostsKey(hosts []store.Host, material []seal.TLSMaterial) string {
	b, _ := json.Marshal([]any{hosts, material})
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
	for _, s := range f.sw {
		s.Close()
	}
	f.sw = map[string]*deployer.Swarm{}
}
