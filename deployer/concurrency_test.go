package deployer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/registry"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/internal/store/storetest"
)

// memEngine is an in-memory Engine that records how many Start calls are
// in flight at once; Start takes startDelay so that concurrent calls
// overlap.
type memEngine struct {
	name       string
	startDelay time.Duration
	mu         sync.Mutex
	ctrs       map[string]*deployer.Container // by id
	nextID     int
	inflight   *atomic.Int32
	maxStarts  *atomic.Int32
}

func newMemEngines(names ...string) []*memEngine {
	var inflight, peak atomic.Int32
	var out []*memEngine
	for _, n := range names {
		out = append(out, &memEngine{name: n, startDelay: 50 * time.Millisecond, ctrs: map[string]*deployer.Container{},
			inflight: &inflight, maxStarts: &peak})
	}
	return out
}

func (m *memEngine) List(_ context.Context, labels map[string]string) ([]deployer.Container, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []deployer.Container
next:
	for _, c := range m.ctrs {
		for k, v := range labels {
			if c.Labels[k] != v {
				continue next
			}
		}
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (m *memEngine) find(idOrName string) *deployer.Container {
	for _, c := range m.ctrs {
		if c.ID == idOrName || c.Name == idOrName {
			return c
		}
	}
	return nil
}

func (m *memEngine) Inspect(_ context.Context, idOrName string) (deployer.Container, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.find(idOrName); c != nil {
		return *c, nil
	}
	return deployer.Container{}, fmt.Errorf("%s: inspect %s: %w", m.name, idOrName, deployer.ErrNoSuchContainer)
}

func (m *memEngine) EnsureImage(context.Context, string, bool, *registry.AuthConfig) error {
	return nil
}
func (m *memEngine) EnsureNetwork(context.Context, string, map[string]string) error { return nil }

func (m *memEngine) Create(_ context.Context, req deployer.CreateRequest) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.find(req.Name) != nil {
		return "", fmt.Errorf("%s: create %s: %w", m.name, req.Name, deployer.ErrNameInUse)
	}
	m.nextID++
	labels := map[string]string{}
	for k, v := range req.Labels {
		labels[k] = v
	}
	id := fmt.Sprintf("%s-%03d", m.name, m.nextID)
	m.ctrs[id] = &deployer.Container{ID: id, Name: req.Name, Labels: labels, State: "created", Created: time.Now()}
	return id, nil
}

func (m *memEngine) Start(_ context.Context, id string) error {
	n := m.inflight.Add(1)
	defer m.inflight.Add(-1)
	for {
		peak := m.maxStarts.Load()
		if n <= peak || m.maxStarts.CompareAndSwap(peak, n) {
			break
		}
	}
	time.Sleep(m.startDelay)
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.ctrs[id]
	if c == nil {
		return fmt.Errorf("%s: start %s: %w", m.name, id, deployer.ErrNoSuchContainer)
	}
	c.Running, c.State, c.StartedAt = true, "running", time.Now()
	return nil
}

func (m *memEngine) Stop(_ context.Context, id string, _ time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.ctrs[id]; c != nil {
		c.Running, c.State = false, "exited"
		return nil
	}
	return fmt.Errorf("%s: stop %s: %w", m.name, id, deployer.ErrNoSuchContainer)
}

func (m *memEngine) Remove(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.ctrs, id)
	return nil
}

func (m *memEngine) Stats(context.Context, string) (deployer.Usage, error) {
	return deployer.Usage{}, nil
}
func (m *memEngine) Logs(context.Context, string, int, bool) (io.ReadCloser, error) {
	return nil, errors.New("no logs")
}
func (m *memEngine) Info(context.Context) (deployer.HostInfo, error) { return deployer.HostInfo{}, nil }
func (m *memEngine) Close() error                                    { return nil }

func memDeployer(t *testing.T, engines []*memEngine) *deployer.Deployer {
	t.Helper()
	var hosts []deployer.Host
	for _, e := range engines {
		hosts = append(hosts, deployer.Host{Name: e.name, Engine: e})
	}
	d, err := deployer.New(deployer.Options{Env: env, Store: storetest.Open(t), Hosts: hosts, RunningGrace: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// serialCheck is a Progress func that fails the test if it is ever called
// concurrently, and records the create and stop steps.
type serialCheck struct {
	t     *testing.T
	busy  atomic.Bool
	steps []string
}

func (s *serialCheck) progress(e deployer.Event) {
	if !s.busy.CompareAndSwap(false, true) {
		s.t.Errorf("Progress called concurrently (event %+v)", e)
		return
	}
	defer s.busy.Store(false)
	time.Sleep(time.Millisecond) // widen the window a concurrent call would hit
	if e.Step == "create" || e.Step == "stop" {
		s.steps = append(s.steps, e.Step+" "+e.Container)
	}
}

// TestBatchRunsConcurrentlyInOrder: an upgrade starts a batch's containers
// at once, yet every batch is created (and healthy) before its old
// containers stop, and batches follow one another.
func TestBatchRunsConcurrentlyInOrder(t *testing.T) {
	ctx := context.Background()
	engines := newMemEngines("h1", "h2")
	d := memDeployer(t, engines)
	svc := func(image string) deployer.StackSpec {
		return deployer.StackSpec{Name: "b", Services: []deployer.ServiceSpec{{Name: "web", Image: image, Scale: 4,
			Upgrade: deployer.UpgradeStrategy{StartFirst: true, BatchSize: 2}}}}
	}
	if err := d.Up(ctx, svc("web:1"), deployer.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	engines[0].maxStarts.Store(0)
	sc := &serialCheck{t: t}
	if err := d.Upgrade(ctx, svc("web:2"), deployer.DeployOptions{Progress: sc.progress}); err != nil {
		t.Fatal(err)
	}
	if got := engines[0].maxStarts.Load(); got < 2 {
		t.Errorf("at most %d start in flight; want the batch of 2 started together", got)
	}
	// Within a batch the order is free; the batches and their phases are not.
	var batches []string
	for i := 0; i < len(sc.steps); i += 2 {
		pair := sc.steps[i:min(i+2, len(sc.steps))]
		sort.Strings(pair)
		batches = append(batches, strings.Join(pair, ", "))
	}
	same(t, "steps", strings.Join(batches, " | "),
		"create b-web-5, create b-web-6 | stop b-web-3, stop b-web-4 | create b-web-7, create b-web-8 | stop b-web-1, stop b-web-2")
}

// TestUpServicesConcurrently: Up starts the stack's services together,
// places them as the sequential plan does (spread sees the services
// planned before), and reports progress one event at a time.
func TestUpServicesConcurrently(t *testing.T) {
	ctx := context.Background()
	engines := newMemEngines("h1", "h2")
	d := memDeployer(t, engines)
	spec := deployer.StackSpec{Name: "u"}
	for _, s := range []string{"a", "b", "c"} {
		spec.Services = append(spec.Services, deployer.ServiceSpec{Name: s, Image: "web:1", Scale: 1})
	}
	plan, err := d.Plan(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	sc := &serialCheck{t: t}
	if err := d.Up(ctx, spec, deployer.DeployOptions{Progress: sc.progress}); err != nil {
		t.Fatal(err)
	}
	if got := engines[0].maxStarts.Load(); got < 3 {
		t.Errorf("at most %d start in flight; want the 3 services started together", got)
	}
	var placed []string
	for _, e := range engines {
		cs, _ := e.List(ctx, nil)
		for _, c := range cs {
			placed = append(placed, fmt.Sprintf("%s: create %s on %s", c.Labels[deployer.LabelService], c.Name, e.name))
		}
	}
	sort.Strings(placed)
	same(t, "placement", strings.Join(placed, "\n")+"\n", plan.String())
	// A second Up changes nothing.
	if err := d.Up(ctx, spec, deployer.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range engines {
		cs, _ := e.List(ctx, nil)
		n += len(cs)
	}
	same(t, "containers after second up", n, 3)
}

// TestCreateReusesOwnRefusesForeign: a name collision at create is
// resolved by looking: our interrupted container is reused, a foreign one
// is refused and left alone.
func TestCreateReusesOwnRefusesForeign(t *testing.T) {
	ctx := context.Background()
	engines := newMemEngines("h1")
	d := memDeployer(t, engines)
	spec := deployer.StackSpec{Name: "f", Services: []deployer.ServiceSpec{{Name: "web", Image: "web:1", Scale: 1}}}
	if _, err := engines[0].Create(ctx, deployer.CreateRequest{Name: "f-web-1", Labels: map[string]string{"other": "app"}}); err != nil {
		t.Fatal(err)
	}
	err := d.Up(ctx, spec, deployer.DeployOptions{})
	if !errors.Is(err, deployer.ErrForeignContainer) {
		t.Fatalf("Up over a foreign f-web-1: err = %v, want ErrForeignContainer", err)
	}
	if c, _ := engines[0].Inspect(ctx, "f-web-1"); c.Labels["other"] != "app" || c.Running {
		t.Fatalf("foreign container touched: %+v", c)
	}
}
