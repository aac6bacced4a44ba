// Package inventory keeps one Docker client per registered host and knows,
// from a periodic ping, which hosts answer. A missing or dead Docker engine
// makes a host "unreachable"; it never stops the service.
package inventory

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/docker/docker/client"

	"github.com/dockmaster/dockmaster/internal/store"
)

// HostSource lists registered hosts ("" = all environments).
type HostSource interface {
	Hosts(ctx context.Context, env string) ([]store.Host, error)
}

// HostStatus is what people and the scheduler see of a host.
type HostStatus struct {
	Environment string            `json:"environment"`
	Name        string            `json:"name"`
	Endpoint    string            `json:"endpoint"`
	Address     string            `json:"address"`
	Labels      map[string]string `json:"labels"`
	// State is active, draining or unreachable.
	State         string    `json:"state"`
	LastSeen      time.Time `json:"last_seen,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
	ServerVersion string    `json:"server_version,omitempty"`
	NCPU          int       `json:"ncpu,omitempty"`
	MemTotal      int64     `json:"mem_total,omitempty"`
}

type entry struct {
	host   store.Host
	cli    *client.Client
	status HostStatus
}

// TLSFor gives a host's client TLS configuration (nil: plain).
type TLSFor func(ctx context.Context, h store.Host) (*tls.Config, error)

// Monitor pings every host at an interval. Safe for concurrent use.
type Monitor struct {
	src      HostSource
	log      *slog.Logger
	interval time.Duration
	timeout  time.Duration
	tlsFor   TLSFor

	mu    sync.RWMutex
	hosts map[string]*entry // key: env/name
}

// New returns a monitor; call Run to start pinging. tlsFor may be nil
// (every host plain).
func New(src HostSource, log *slog.Logger, interval time.Duration, tlsFor TLSFor) *Monitor {
	return &Monitor{src: src, log: log, interval: interval, timeout: 3 * time.Second, tlsFor: tlsFor, hosts: map[string]*entry{}}
}

// Run refreshes until ctx is done, then closes the clients.
func (m *Monitor) Run(ctx context.Context) {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		m.Refresh(ctx)
		select {
		case <-ctx.Done():
			m.close()
			return
		case <-t.C:
		}
	}
}

// Refresh reloads the host list and pings every host in parallel.
func (m *Monitor) Refresh(ctx context.Context) {
	hosts, err := m.src.Hosts(ctx, "")
	if err != nil {
		m.log.Warn("inventory: list hosts", "err", err)
		return
	}
	var wg sync.WaitGroup
	for _, h := range hosts {
		e := m.entryFor(h)
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.ping(ctx, e)
		}()
	}
	wg.Wait()
}

func (m *Monitor) entryFor(h store.Host) *entry {
	key := h.Environment + "/" + h.Name
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.hosts[key]
	if ok && e.host.Endpoint == h.Endpoint {
		e.host = h
		return e
	}
	if ok && e.cli != nil {
		e.cli.Close()
	}
	e = &entry{host: h, status: HostStatus{State: "unreachable"}}
	e.cli, e.status.LastError = m.dial(h)
	m.hosts[key] = e
	return e
}

// dial makes a client with the host's TLS material; the error, if any, is
// kept as the host's last error.
func (m *Monitor) dial(h store.Host) (*client.Client, string) {
	opts := []client.Opt{client.WithHost(h.Endpoint), client.WithAPIVersionNegotiation()}
	if m.tlsFor != nil {
		ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
		cfg, err := m.tlsFor(ctx, h)
		cancel()
		if err != nil {
			return nil, err.Error()
		}
		if cfg != nil {
			opts = append(opts, client.WithHTTPClient(&http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}), client.WithScheme("https"))
		}
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, err.Error()
	}
	return cli, ""
}

func (m *Monitor) ping(ctx context.Context, e *entry) {
	st := HostStatus{State: "unreachable"}
	if e.cli != nil {
		pctx, cancel := context.WithTimeout(ctx, m.timeout)
		info, err := e.cli.Info(pctx)
		cancel()
		if err != nil {
			st.LastError = err.Error()
		} else {
			st.State = "active"
			st.LastSeen = time.Now()
			st.ServerVersion, st.NCPU, st.MemTotal = info.ServerVersion, info.NCPU, info.MemTotal
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	prev := e.status
	if st.State == "unreachable" {
		st.LastSeen = prev.LastSeen // keep the last known data
		if prev.State != "unreachable" && !prev.LastSeen.IsZero() {
			m.log.Warn("host unreachable", "env", e.host.Environment, "host", e.host.Name, "err", st.LastError)
		}
	} else if e.host.State == "draining" {
		st.State = "draining"
	}
	e.status = st
}

// Status lists the hosts of env ("" = all), sorted by environment and name.
func (m *Monitor) Status(env string) []HostStatus {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []HostStatus
	for _, e := range m.hosts {
		if env != "" && e.host.Environment != env {
			continue
		}
		s := e.status
		s.Environment, s.Name, s.Endpoint, s.Address, s.Labels = e.host.Environment, e.host.Name, e.host.Endpoint, e.host.Address, e.host.Labels
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Environment != out[j].Environment {
			return out[i].Environment < out[j].Environment
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Client returns the Docker client of a host.
func (m *Monitor) Client(env, host string) (*client.Client, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.hosts[env+"/"+host]
	if !ok || e.cli == nil {
		return nil, fmt.Errorf("host %s/%s: not registered or no client", env, host)
	}
	return e.cli, nil
}

func (m *Monitor) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.hosts {
		if e.cli != nil {
			e.cli.Close()
		}
	}
}
