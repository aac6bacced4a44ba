package containers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/dockmaster/dockmaster/internal/store"
)

// HostSource lists registered hosts ("" = every environment).
type HostSource interface {
	Hosts(ctx context.Context, env string) ([]store.Host, error)
}

// Options configure a Service. Zero durations take the defaults shown.
type Options struct {
	Hosts HostSource
	// Dial makes a host's Docker client (default DialDocker). The service
	// closes what it dials.
	Dial func(store.Host) (Docker, error)
	// Reconcile runs one reconciler pass of env's deployer; called after an
	// action that changed what a managed service runs. Nil: not called.
	Reconcile func(ctx context.Context, env string) error
	Log       *slog.Logger
	// HostRefresh is how often Run reloads the host list (15s).
	HostRefresh time.Duration
	// Resync is how often each host is listed in full, to heal a missed
	// event (60s).
	Resync time.Duration
	// Timeout bounds one Docker call to a host (5s).
	Timeout time.Duration
	// ColdWait is how long a listing waits for a host that has not
	// answered once yet (1s). A host that is merely slow later is never
	// waited for: its cached data is served.
	ColdWait time.Duration
	// StatsInterval is the resource sampling period (10s); negative
	// disables sampling.
	StatsInterval time.Duration
	// StatsWindow is how much history is kept (1h); the ring size is
	// StatsWindow/StatsInterval, at most 3600 samples.
	StatsWindow time.Duration
	// StatsParallel bounds concurrent stats calls per host (8).
	StatsParallel int
}

// Service is the cross-host container view. Safe for concurrent use.
// Call Run (or Sync then use it, and Close at the end).
type Service struct {
	o Options

	mu    sync.RWMutex
	hosts map[string]*hostWatch // key env/name
	wg    sync.WaitGroup
	base  context.Context
	stop  context.CancelFunc
}

// New returns a service watching no host yet; Sync or Run starts watchers.
func New(o Options) *Service {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.HostRefresh, 15*time.Second)
	def(&o.Resync, 60*time.Second)
	def(&o.Timeout, 5*time.Second)
	def(&o.ColdWait, time.Second)
	def(&o.StatsInterval, 10*time.Second)
	def(&o.StatsWindow, time.Hour)
	if o.StatsParallel <= 0 {
		o.StatsParallel = 8
	}
	if o.Dial == nil {
		o.Dial = DialDocker
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	base, stop := context.WithCancel(context.Background())
	return &Service{o: o, hosts: map[string]*hostWatch{}, base: base, stop: stop}
}

// Run syncs the host list every HostRefresh until ctx is done, then stops
// every watcher and closes the clients.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.o.HostRefresh)
	defer t.Stop()
	defer s.Close()
	for {
		if err := s.Sync(ctx); err != nil && ctx.Err() == nil {
			s.o.Log.Warn("containers: list hosts", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Close stops every watcher and closes the clients. Idempotent.
func (s *Service) Close() {
	s.stop()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, w := range s.hosts {
		w.close()
		delete(s.hosts, k)
	}
}

// Sync reloads the registered hosts: new ones get a watcher, removed ones
// (or ones whose endpoint changed) lose theirs.
func (s *Service) Sync(ctx context.Context) error {
	hosts, err := s.o.Hosts.Hosts(ctx, "")
	if err != nil {
		return fmt.Errorf("containers: hosts: %w", err)
	}
	want := map[string]store.Host{}
	for _, h := range hosts {
		want[h.Environment+"/"+h.Name] = h
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.base.Err() != nil {
		return s.base.Err()
	}
	for k, w := range s.hosts {
		if h, ok := want[k]; !ok || h.Endpoint != w.host.Endpoint || w.cli == nil {
			w.cancel()
			go func() { <-w.done; w.close() }()
			delete(s.hosts, k)
		} else {
			w.setHost(h)
		}
	}
	for k, h := range want {
		if _, ok := s.hosts[k]; ok {
			continue
		}
		w := newHostWatch(h, s.o.StatsWindow, s.o.StatsInterval)
		w.coldUntil = time.Now().Add(s.o.ColdWait)
		cli, err := s.o.Dial(h)
		if err != nil {
			// Shown as unreachable; the next Sync dials again.
			w.fail(fmt.Errorf("dial %s: %w", h.Endpoint, err))
			close(w.synced)
			close(w.done)
			w.cancel = func() {}
			s.hosts[k] = w
			continue
		}
		w.cli = cli
		s.hosts[k] = w
		ctx, cancel := context.WithCancel(s.base)
		w.cancel = cancel
		s.wg.Add(1)
		go func() { defer s.wg.Done(); defer close(w.done); s.watch(ctx, w) }()
		if s.o.StatsInterval > 0 {
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.sampleLoop(ctx, w) }()
		}
	}
	return nil
}

func (w *hostWatch) close() {
	if w.cli != nil {
		w.cli.Close()
	}
}

// hostWatch is one host's cache and the state of its event stream.
type hostWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
	synced chan struct{} // closed after the first list attempt
	// coldUntil ends the wait for the first answer: after it, listings
	// serve whatever the host has (nothing, "connecting") at once.
	coldUntil time.Time
	cli       Docker

	mu       sync.RWMutex
	host     store.Host
	byID     map[string]Container
	sorted   []Container // copy-on-write snapshot of byID, nil when stale
	state    string
	lastSeen time.Time
	lastErr  string
	ncpu     int
	memTotal int64

	stats *hostStats
}

func newHostWatch(h store.Host, window, interval time.Duration) *hostWatch {
	return &hostWatch{host: h, byID: map[string]Container{}, state: "connecting", synced: make(chan struct{}),
		done: make(chan struct{}), stats: newHostStats(window, interval)}
}

func (w *hostWatch) setHost(h store.Host) {
	w.mu.Lock()
	w.host = h
	w.mu.Unlock()
}

func (w *hostWatch) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.state, w.lastErr = "unreachable", err.Error()
}

// snapshot returns the containers sorted by name; callers must not modify it.
func (w *hostWatch) snapshot() []Container {
	w.mu.RLock()
	s := w.sorted
	w.mu.RUnlock()
	if s != nil {
		return s
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sorted == nil {
		s := make([]Container, 0, len(w.byID))
		for _, c := range w.byID {
			s = append(s, c)
		}
		sort.Slice(s, func(i, j int) bool { return s[i].Name < s[j].Name })
		w.sorted = s
	}
	return w.sorted
}

func (w *hostWatch) info() HostInfo {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return HostInfo{Env: w.host.Environment, Name: w.host.Name, State: w.state, LastSeen: w.lastSeen,
		LastError: w.lastErr, Containers: len(w.byID), NCPU: w.ncpu, MemTotal: w.memTotal}
}

// watch follows the host's events until ctx is done, reconnecting with a
// capped backoff; every failure marks the host unreachable but keeps its
// last known containers.
func (s *Service) watch(ctx context.Context, w *hostWatch) {
	backoff := 250 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		start := time.Now()
		err := s.follow(ctx, w, func() {
			if first {
				first = false
				close(w.synced)
			}
		})
		if ctx.Err() != nil {
			return
		}
		w.fail(err)
		if first {
			first = false
			close(w.synced)
		}
		if time.Since(start) > time.Minute {
			backoff = 250 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// relevant are the container event actions that change what the listing
// shows; exec_*, attach, resize, top and the like do not.
func relevant(a events.Action) bool {
	switch a {
	case events.ActionCreate, events.ActionStart, events.ActionRestart, events.ActionStop, events.ActionDie,
		events.ActionKill, events.ActionPause, events.ActionUnPause, events.ActionRename, events.ActionUpdate,
		events.ActionOOM, events.ActionDestroy:
		return true
	}
	return strings.HasPrefix(string(a), "health_status")
}

// follow subscribes to events first and lists second, so that no change
// falls between the two; it returns when the stream or a list fails.
func (s *Service) follow(ctx context.Context, w *hostWatch, listed func()) error {
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs, errs := w.cli.Events(ectx, events.ListOptions{Filters: filters.NewArgs(filters.Arg("type", string(events.ContainerEventType)))})
	if err := s.relist(ctx, w); err != nil {
		return err
	}
	listed()
	t := time.NewTicker(s.o.Resync)
	defer t.Stop()
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				return errors.New("event stream closed")
			}
			if m.Type != events.ContainerEventType || !relevant(m.Action) {
				continue
			}
			if err := s.refreshOne(ctx, w, m.Actor.ID, m.Action == events.ActionDestroy); err != nil {
				return err
			}
		case err := <-errs:
			if err == nil {
				err = errors.New("event stream ended")
			}
			return fmt.Errorf("events: %w", err)
		case <-t.C:
			if err := s.relist(ctx, w); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// relist replaces the host's cache with a full listing.
func (s *Service) relist(ctx context.Context, w *hostWatch) error {
	cctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	info, err := w.cli.Info(cctx)
	if err != nil {
		return fmt.Errorf("info: %w", err)
	}
	list, err := w.cli.ContainerList(cctx, container.ListOptions{All: true})
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.byID = make(map[string]Container, len(list))
	for _, sm := range list {
		w.byID[sm.ID] = fromSummary(w.host.Environment, w.host.Name, sm)
	}
	w.sorted = nil
	w.state, w.lastErr, w.lastSeen = "active", "", time.Now()
	w.ncpu, w.memTotal = info.NCPU, info.MemTotal
	return nil
}

// refreshOne updates one container after an event (or an action).
func (s *Service) refreshOne(ctx context.Context, w *hostWatch, id string, gone bool) error {
	var list []container.Summary
	if !gone {
		cctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
		defer cancel()
		var err error
		list, err = w.cli.ContainerList(cctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("id", id))})
		if err != nil {
			return fmt.Errorf("list container %s: %w", id, err)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.byID, id)
	for _, sm := range list {
		if sm.ID == id {
			w.byID[id] = fromSummary(w.host.Environment, w.host.Name, sm)
		}
	}
	w.sorted = nil
	w.state, w.lastErr, w.lastSeen = "active", "", time.Now()
	return nil
}

// watches returns env's host watchers sorted by name ("" = all).
func (s *Service) watches(env string) []*hostWatch {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*hostWatch
	for _, w := range s.hosts {
		if env == "" || w.host.Environment == env {
			out = append(out, w)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].host.Environment != out[j].host.Environment {
			return out[i].host.Environment < out[j].host.Environment
		}
		return out[i].host.Name < out[j].host.Name
	})
	return out
}

func (s *Service) watch1(env, host string) (*hostWatch, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	w, ok := s.hosts[env+"/"+host]
	if !ok {
		return nil, fmt.Errorf("host %s/%s: %w", env, host, ErrUnknownHost)
	}
	return w, nil
}

// List returns env's containers from the cache. A host that has not
// answered once yet is waited for only within ColdWait of its
// registration; later listings never wait for any host.
func (s *Service) List(ctx context.Context, env string, f Filter) Listing {
	ws := s.watches(env)
	for _, w := range ws {
		select {
		case <-w.synced:
			continue
		default:
		}
		d := time.Until(w.coldUntil)
		if d <= 0 {
			continue
		}
		t := time.NewTimer(d)
		select {
		case <-w.synced:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	out := Listing{Containers: []Container{}, Hosts: make([]HostInfo, 0, len(ws))}
	for _, w := range ws {
		if f.Host != "" && w.host.Name != f.Host {
			continue
		}
		out.Hosts = append(out.Hosts, w.info())
		for _, c := range w.snapshot() {
			if f.match(c) {
				out.Containers = append(out.Containers, c)
			}
		}
	}
	return out
}

// Resolve finds one container of env by exact id, exact name or id
// prefix, optionally on one host. A miss in the cache relists the hosts
// once (the container may be seconds old).
func (s *Service) Resolve(ctx context.Context, env, host, ref string) (Container, error) {
	if ref == "" {
		return Container{}, fmt.Errorf("container reference: empty: %w", ErrNotFound)
	}
	c, err := s.resolve(ctx, env, host, ref)
	if errors.Is(err, ErrNotFound) {
		for _, w := range s.watches(env) {
			if (host == "" || w.host.Name == host) && w.cli != nil {
				if rerr := s.relist(ctx, w); rerr != nil {
					w.fail(rerr)
				}
			}
		}
		c, err = s.resolve(ctx, env, host, ref)
	}
	return c, err
}

func (s *Service) resolve(ctx context.Context, env, host, ref string) (Container, error) {
	l := s.List(ctx, env, Filter{Host: host})
	var exact, prefix []Container
	for _, c := range l.Containers {
		switch {
		case c.ID == ref || c.Name == ref || c.Ref() == ref:
			exact = append(exact, c)
		case len(ref) >= 4 && strings.HasPrefix(c.ID, ref):
			prefix = append(prefix, c)
		}
	}
	m := exact
	if len(m) == 0 {
		m = prefix
	}
	switch len(m) {
	case 0:
		where := "environment " + env
		if host != "" {
			where += " host " + host
		}
		return Container{}, fmt.Errorf("container %q in %s: %w", ref, where, ErrNotFound)
	case 1:
		return m[0], nil
	}
	e := &AmbiguousError{Ref: ref}
	for _, c := range m {
		e.Matches = append(e.Matches, c.Ref()+" ("+shortID(c.ID)+")")
	}
	return Container{}, e
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// client returns the Docker client of c's host, failing fast when the
// host is known to be unreachable.
func (s *Service) client(c Container) (*hostWatch, error) {
	w, err := s.watch1(c.Env, c.Host)
	if err != nil {
		return nil, err
	}
	if st := w.info(); st.State == "unreachable" || w.cli == nil {
		return nil, fmt.Errorf("host %s: %w: %s", c.Host, ErrUnreachable, st.LastError)
	}
	return w, nil
}
