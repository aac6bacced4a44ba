package deployer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/registry"
)

// Errors of the operations, wrapped with the service they concern.
var (
	// ErrUpgradeHeld: a service is held in upgraded; finish or roll it back
	// first, or pass DeployOptions.FinishHeld.
	ErrUpgradeHeld = errors.New("an upgrade is held awaiting confirmation")
	// ErrBusy: a service is in the middle of another operation.
	ErrBusy = errors.New("service is in the middle of another operation")
	// ErrConfigChanged: Up was given a changed service; use Upgrade.
	ErrConfigChanged = errors.New("service definition changed; use Upgrade")
	// ErrForeignContainer: a container not owned by this service holds the
	// name dockmaster wants. It is never touched.
	ErrForeignContainer = errors.New("container name taken by a container dockmaster does not own")
	// ErrHostUnreachable: a host did not answer, so the stack cannot be
	// observed whole.
	ErrHostUnreachable = errors.New("host unreachable")
)

// Host is one Docker host of the environment.
type Host struct {
	Name   string
	Labels map[string]string
	// Address is the IP the host's published ports answer on.
	Address string
	// ProbePublished makes health checks use the published host port
	// instead of the container IP (for remote hosts whose bridge is not
	// routable from here).
	ProbePublished bool
	Engine         Engine
	// State is the stored host state: "" or active, or draining (the
	// scheduler places nothing new on it).
	State string
}

// Options configure a Deployer for one environment.
type Options struct {
	Env    string
	Hosts  []Host
	Store  Store
	Placer Placer // default Scheduler{}
	// Auth returns credentials for pulling image, if any.
	Auth func(image string) (registry.AuthConfig, bool)
	// StopGrace is how long a stopping container gets before SIGKILL
	// (default 10s).
	StopGrace time.Duration
	// RunningGrace is how long a container without health check must stay
	// running to count as healthy (default 2s).
	RunningGrace time.Duration
	// NewID makes deployment ids (default 12 random hex digits).
	NewID func() string
	// RescheduleAfter is how long a host may stay unreachable before the
	// reconciler replaces its containers on the other hosts (default 5m;
	// negative: never). Until then an unreachable host makes operations
	// fail with ErrHostUnreachable.
	RescheduleAfter time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Discovery: LB runtime of lb_config services and the containers'
	// resolver (lb.go); zero runs containers as written.
	Discovery Discovery
}

// Deployer runs the operations on one environment. Methods are safe for
// concurrent use on different stacks; operations on one stack are
// serialized in-process, and across processes the store's conditional
// transitions make the loser fail with ErrConflict.
type Deployer struct {
	opts  Options
	hosts map[string]*Host
	mu    sync.Mutex
	locks map[string]*sync.Mutex
	// downSince is when each host was first seen unreachable by the
	// reconciler (guarded by mu).
	downSince map[string]time.Time
}

// New checks o and returns a Deployer.
func New(o Options) (*Deployer, error) {
	if o.Env == "" {
		return nil, errors.New("deployer: Options.Env is empty")
	}
	if o.Store == nil {
		return nil, errors.New("deployer: Options.Store is nil")
	}
	if o.Placer == nil {
		o.Placer = Scheduler{}
	}
	if o.StopGrace <= 0 {
		o.StopGrace = 10 * time.Second
	}
	if o.RunningGrace <= 0 {
		o.RunningGrace = 2 * time.Second
	}
	if o.NewID == nil {
		o.NewID = randomID
	}
	if o.RescheduleAfter == 0 {
		o.RescheduleAfter = 5 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	d := &Deployer{opts: o, hosts: map[string]*Host{}, locks: map[string]*sync.Mutex{}, downSince: map[string]time.Time{}}
	for i := range o.Hosts {
		h := &o.Hosts[i]
		if h.Name == "" || h.Engine == nil {
			return nil, fmt.Errorf("deployer: host %d: name and engine are required", i)
		}
		if _, dup := d.hosts[h.Name]; dup {
			return nil, fmt.Errorf("deployer: host %s listed twice", h.Name)
		}
		d.hosts[h.Name] = h
	}
	return d, nil
}

func randomID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (d *Deployer) lock(stack string) func() {
	d.mu.Lock()
	l := d.locks[stack]
	if l == nil {
		l = &sync.Mutex{}
		d.locks[stack] = l
	}
	d.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// Event reports progress of an operation.
type Event struct {
	Stack, Service string
	Host           string
	Container      string
	// Step is create, start, stop, remove, healthy or state.
	Step string
	// HostStarted and HostHealthy count the service's current containers on
	// Host; Started, Healthy and Scale are the service totals.
	HostStarted, HostHealthy int
	Started, Healthy, Scale  int
	Message                  string
}

// DeployOptions are the options of Up, Upgrade and Redeploy.
type DeployOptions struct {
	// Version labels the containers; default the image tag of each service.
	Version string
	// Compose, Rancher and Variables are recorded in the revision.
	Compose, Rancher string
	Variables        map[string]string
	// By is who asked (a user, an API key, or a ticket), recorded in the
	// revision.
	By string
	// Progress, when set, receives events synchronously and one at a time,
	// though an operation may emit them from several goroutines.
	Progress func(Event)
	// FinishHeld makes Upgrade confirm a held upgrade first instead of
	// failing with ErrUpgradeHeld.
	FinishHeld bool
	// NoAutoRollback leaves a failed upgrade in upgrading (Failed set)
	// instead of rolling it back.
	NoAutoRollback bool
}

func (o DeployOptions) emit(e Event) {
	if o.Progress != nil {
		o.Progress(e)
	}
}

// serialized returns o with Progress behind a mutex, for operations that
// emit from several goroutines: callers see one event at a time.
func (o DeployOptions) serialized() DeployOptions {
	if o.Progress == nil {
		return o
	}
	var mu sync.Mutex
	p := o.Progress
	o.Progress = func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		p(e)
	}
	return o
}

func versionOf(o DeployOptions, s ServiceSpec) string {
	if o.Version != "" {
		return o.Version
	}
	img := s.Image
	if i := strings.LastIndex(img, ":"); i > strings.LastIndex(img, "/") {
		return img[i+1:]
	}
	return "latest"
}

func scaleOf(s ServiceSpec) int {
	if s.Scale <= 0 {
		return 1
	}
	return s.Scale
}

// Revisions lists a stack's stored revisions, oldest first.
func (d *Deployer) Revisions(ctx context.Context, stack string) ([]Revision, error) {
	return d.opts.Store.Revisions(ctx, d.opts.Env, stack)
}

func (d *Deployer) addRevision(ctx context.Context, spec StackSpec, o DeployOptions) (int, error) {
	return d.opts.Store.AddRevision(ctx, newRevision(d.opts.Env, spec, o))
}

// newRevision is the revision that deploying spec with o records.
func newRevision(env string, spec StackSpec, o DeployOptions) Revision {
	v := o.Version
	if v == "" && len(spec.Services) > 0 {
		v = versionOf(o, spec.Services[0])
	}
	return Revision{Env: env, Stack: spec.Name, Version: v, Spec: spec,
		Compose: o.Compose, Rancher: o.Rancher, Variables: o.Variables, CreatedBy: o.By}
}

// Up creates the stack's services at scale (or converges their scale) and
// waits until every container is healthy. A service whose definition
// changed is refused with ErrConfigChanged: that is an Upgrade.
func (d *Deployer) Up(ctx context.Context, spec StackSpec, o DeployOptions) error {
	defer d.lock(spec.Name)()
	recs, fresh, err := upRecords(ctx, d.opts.Store, d.opts.Env, spec)
	if err != nil {
		return err
	}
	planRecs := make([]*ServiceRecord, len(recs))
	for i := range recs {
		if !fresh[i] {
			planRecs[i] = &recs[i]
		}
	}
	// One plan for the whole stack: each service's placement sees the
	// containers planned for the services before it, so the services can
	// then be created concurrently without racing for ports or capacity.
	plan, snaps, err := d.planStack(ctx, spec, planRecs)
	if err != nil {
		return fmt.Errorf("up %s: %w", spec.Name, err)
	}
	if err := plan.Err(); err != nil {
		return err // each names its stack and service
	}
	rev, err := d.addRevision(ctx, spec, o)
	if err != nil {
		return err
	}
	if err := recordUp(ctx, d.opts.Store, d.opts.Env, d.opts.NewID, spec, recs, fresh, rev, o); err != nil {
		return err
	}
	// Services have no start order (the model has no depends_on), so they
	// converge concurrently; a failing one does not stop the others. The
	// stack network comes first: dockerd 20.10 makes two networks of one
	// name when two creates race.
	if err := d.ensureNetworks(ctx, spec, plan); err != nil {
		return fmt.Errorf("up %s: %w", spec.Name, err)
	}
	o = o.serialized()
	errs := make([]error, len(recs))
	var wg sync.WaitGroup
	for i, rec := range recs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if sp := plan.Services[i]; sp.Change == "upgrade" {
				// Not reachable (Up refuses changed services); converge
				// afresh rather than execute a plan made for another
				// deployment.
				err = d.converge(ctx, rec, rec.Spec, scaleOf(rec.Spec), "", true, o)
			} else {
				err = d.execute(ctx, rec, rec.Spec, snaps, sp.Actions, true, o)
			}
			if err != nil {
				errs[i] = fmt.Errorf("up %s/%s: %w", spec.Name, rec.Service, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ensureNetworks creates the stack network on every host where plan
// creates a container of a service that uses it.
func (d *Deployer) ensureNetworks(ctx context.Context, spec StackSpec, plan StackPlan) error {
	need := map[string]bool{}
	for i, sp := range plan.Services {
		if spec.Services[i].NetworkMode != "" {
			continue
		}
		for _, a := range sp.Actions {
			if a.Kind == ActCreate {
				need[a.Host] = true
			}
		}
	}
	var hosts []string
	for h := range need {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	return forEach(len(hosts), func(i int) string { return hosts[i] }, func(i int) error {
		return d.hosts[hosts[i]].Engine.EnsureNetwork(ctx, NetworkName(d.opts.Env, spec.Name), ownerLabels(d.opts.Env, spec.Name, ""))
	})
}

// snapshot lists the stack's containers on every host. Any unreachable host
// is an error: acting on a partial view could duplicate or orphan
// containers.
func (d *Deployer) snapshot(ctx context.Context, stack string) ([]HostSnapshot, error) {
	return d.snapshotView(ctx, stack, view{})
}

// snapshotView is snapshot, except that hosts in v.lost are not asked:
// they appear with Err set and no containers (the reconciler replaces
// what ran there).
func (d *Deployer) snapshotView(ctx context.Context, stack string, v view) ([]HostSnapshot, error) {
	snaps := d.listHosts(ctx, stack, v)
	for _, s := range snaps {
		if s.Err != nil && !v.lost[s.Name] {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w: %s: %w", ErrHostUnreachable, s.Name, s.Err)
		}
	}
	return snaps, nil
}

// listHosts lists the stack's containers on every host at once; a host
// that does not answer has Err set.
func (d *Deployer) listHosts(ctx context.Context, stack string, v view) []HostSnapshot {
	snaps := make([]HostSnapshot, len(d.opts.Hosts))
	var wg sync.WaitGroup
	for i := range d.opts.Hosts {
		h := &d.opts.Hosts[i]
		snaps[i] = HostSnapshot{Name: h.Name, Labels: h.Labels}
		if v.lost[h.Name] {
			snaps[i].Err = fmt.Errorf("%w: %s: lost (rescheduling)", ErrHostUnreachable, h.Name)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs, err := h.Engine.List(ctx, ownerLabels(d.opts.Env, stack, ""))
			for j := range cs {
				cs[j].Host = h.Name
			}
			snaps[i].Containers, snaps[i].Err = cs, err
		}()
	}
	wg.Wait()
	return snaps
}

// serviceContainers returns the containers of service in snaps, sorted by
// index.
func serviceContainers(snaps []HostSnapshot, service string) []Container {
	var out []Container
	for _, h := range snaps {
		for _, c := range h.Containers {
			if c.Labels[LabelService] == service {
				out = append(out, c)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index() < out[j].Index() })
	return out
}

// converge makes rec's current deployment (with spec) run scale containers,
// leaving deployment keep alone, and when wait is set waits until all of
// them are healthy. Removals happen after the rest is healthy.
func (d *Deployer) converge(ctx context.Context, rec ServiceRecord, spec ServiceSpec, scale int, keep string, wait bool, o DeployOptions) error {
	return d.convergeView(ctx, rec, spec, scale, keep, wait, o, view{})
}

// convergeView is converge seeing the hosts through v.
func (d *Deployer) convergeView(ctx context.Context, rec ServiceRecord, spec ServiceSpec, scale int, keep string, wait bool, o DeployOptions, v view) error {
	snaps, err := d.snapshotView(ctx, rec.Stack, v)
	if err != nil {
		return err
	}
	return d.convergeFrom(ctx, snaps, rec, spec, scale, keep, wait, o, v)
}

// convergeFrom is convergeView planning from snaps, a snapshot the caller
// just took (the stack is locked, so only this operation changes it).
func (d *Deployer) convergeFrom(ctx context.Context, snaps []HostSnapshot, rec ServiceRecord, spec ServiceSpec, scale int, keep string, wait bool, o DeployOptions, v view) error {
	plan, err := reconcile(desired{Stack: rec.Stack, Spec: spec, Deployment: rec.Deployment, Hash: ConfigHash(spec),
		Scale: scale, Keep: keep}, snaps, inventoryPlacer{ctx: ctx, d: d, v: v})
	if err != nil {
		return err
	}
	return d.execute(ctx, rec, spec, snaps, plan.Actions, wait, o)
}

// hostParallelism bounds the Docker calls one operation makes at once on
// one host.
const hostParallelism = 8

// forEach runs f(0..n-1) concurrently, at most hostParallelism at once per
// host (hostOf(i)), and returns the first error in index order.
func forEach(n int, hostOf func(int) string, f func(int) error) error {
	errs := make([]error, n)
	slots := map[string]chan struct{}{}
	for i := range n {
		if slots[hostOf(i)] == nil {
			slots[hostOf(i)] = make(chan struct{}, hostParallelism)
		}
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slot := slots[hostOf(i)]
			slot <- struct{}{}
			defer func() { <-slot }()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// execute carries out actions, a plan made from snaps for rec's current
// deployment: starts and creates run concurrently (each container's own
// calls in order); when wait is set, every live container of the
// deployment must then be healthy; removals come last, so a service is
// never emptied before its replacements are up.
func (d *Deployer) execute(ctx context.Context, rec ServiceRecord, spec ServiceSpec, snaps []HostSnapshot, actions []Action, wait bool, o DeployOptions) error {
	o = o.serialized()
	var runs, removes []Action
	createHosts := map[string]bool{}
	for _, a := range actions {
		switch a.Kind {
		case ActRemove:
			removes = append(removes, a)
		case ActCreate:
			createHosts[a.Host] = true
			runs = append(runs, a)
		case ActStart:
			runs = append(runs, a)
		}
	}
	// Network and image once per host, not once per container.
	var hosts []string
	for h := range createHosts {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	if err := forEach(len(hosts), func(i int) string { return hosts[i] }, func(i int) error {
		return d.prepare(ctx, hosts[i], rec, spec)
	}); err != nil {
		return err
	}
	ids := make([]string, len(runs))
	err := forEach(len(runs), func(i int) string { return runs[i].Host }, func(i int) error {
		a := runs[i]
		if a.Kind == ActStart {
			if err := d.hosts[a.Host].Engine.Start(ctx, a.ID); err != nil {
				return err
			}
			ids[i] = a.ID
			o.emit(Event{Stack: rec.Stack, Service: rec.Service, Host: a.Host, Container: a.Name, Step: "start", Message: a.Reason})
			return nil
		}
		id, err := d.createContainer(ctx, rec, spec, a)
		if err != nil {
			return err
		}
		ids[i] = id
		o.emit(Event{Stack: rec.Stack, Service: rec.Service, Host: a.Host, Container: a.Name, Step: "create"})
		return nil
	})
	if err != nil {
		return err
	}
	if wait {
		if err := d.waitContainers(ctx, rec, spec, o, waitTargets(snaps, rec, runs, ids, removes)); err != nil {
			return err
		}
	}
	return forEach(len(removes), func(i int) string { return removes[i].Host }, func(i int) error {
		a := removes[i]
		if err := d.hosts[a.Host].Engine.Remove(ctx, a.ID); err != nil && !errors.Is(err, ErrNoSuchContainer) {
			return err
		}
		o.emit(Event{Stack: rec.Stack, Service: rec.Service, Host: a.Host, Container: a.Name, Step: "remove", Message: a.Reason})
		return nil
	})
}

// waitTargets are the containers execute waits for: those of rec's
// deployment in snaps that are live or were just started, minus the ones
// about to be removed, plus the ones just created (ids[i] for runs[i]).
func waitTargets(snaps []HostSnapshot, rec ServiceRecord, runs []Action, ids []string, removes []Action) []Container {
	gone, started := map[string]bool{}, map[string]bool{}
	for _, a := range removes {
		gone[a.ID] = true
	}
	for _, a := range runs {
		if a.Kind == ActStart {
			started[a.ID] = true
		}
	}
	seen := map[string]bool{}
	var out []Container
	for _, c := range serviceContainers(snaps, rec.Service) {
		if c.Deployment() != rec.Deployment || gone[c.ID] || (!started[c.ID] && (c.State == "exited" || c.State == "dead")) {
			continue
		}
		seen[c.ID] = true
		out = append(out, c)
	}
	for i, a := range runs {
		if a.Kind == ActCreate && !seen[ids[i]] {
			seen[ids[i]] = true
			out = append(out, Container{ID: ids[i], Name: a.Name, Host: a.Host})
		}
	}
	return out
}

// create makes and starts the container of action a (see createContainer).
func (d *Deployer) create(ctx context.Context, rec ServiceRecord, spec ServiceSpec, a Action) error {
	if err := d.prepare(ctx, a.Host, rec, spec); err != nil {
		return err
	}
	_, err := d.createContainer(ctx, rec, spec, a)
	return err
}

// prepare makes sure host has the stack network and spec's image.
func (d *Deployer) prepare(ctx context.Context, host string, rec ServiceRecord, spec ServiceSpec) error {
	h := d.hosts[host]
	if spec.NetworkMode == "" {
		if err := h.Engine.EnsureNetwork(ctx, NetworkName(d.opts.Env, rec.Stack), ownerLabels(d.opts.Env, rec.Stack, "")); err != nil {
			return err
		}
	}
	// discovery: an lb_config service runs the dockmaster image (lb.go).
	run := d.opts.Discovery.runSpec(d.opts.Env, rec.Stack, host, spec)
	var auth *registry.AuthConfig
	if d.opts.Auth != nil {
		if ac, ok := d.opts.Auth(run.Image); ok {
			auth = &ac
		}
	}
	return h.Engine.EnsureImage(ctx, run.Image, run.PullAlways, auth)
}

// createContainer creates and starts the container of action a on a
// prepared host and returns its id. A container already holding the name
// (left by an interrupted run) is reused when it is this deployment's
// container for that index with this config, and refused otherwise: the
// create itself is the look-up, which saves an inspect per container.
func (d *Deployer) createContainer(ctx context.Context, rec ServiceRecord, spec ServiceSpec, a Action) (string, error) {
	h := d.hosts[a.Host]
	labels := ownerLabels(d.opts.Env, rec.Stack, rec.Service)
	labels[LabelVersion] = rec.Version
	labels[LabelDeployment] = rec.Deployment
	labels[LabelConfigHash] = ConfigHash(spec)
	labels[LabelIndex] = itoa(a.Index)
	// discovery: the container runs spec plus the resolver and, for an
	// lb_config service, `dockmaster lb` (lb.go); the labels keep spec's hash.
	run := d.opts.Discovery.runSpec(d.opts.Env, rec.Stack, a.Host, spec)
	req := CreateRequest{Name: a.Name, Spec: run, Labels: labels, Network: NetworkName(d.opts.Env, rec.Stack)}
	// Two tries: the name's holder may vanish between the create that
	// collided and the inspect.
	for try := 0; ; try++ {
		id, err := h.Engine.Create(ctx, req)
		if err == nil {
			return id, h.Engine.Start(ctx, id)
		}
		if !errors.Is(err, ErrNameInUse) || try == 2 {
			return "", err
		}
		existing, err := h.Engine.Inspect(ctx, a.Name)
		if errors.Is(err, ErrNoSuchContainer) {
			continue
		}
		if err != nil {
			return "", err
		}
		if !ownedBy(existing.Labels, d.opts.Env, rec.Stack, rec.Service) || existing.Deployment() != rec.Deployment ||
			existing.Index() != a.Index || existing.Labels[LabelConfigHash] != ConfigHash(spec) {
			return "", fmt.Errorf("host %s: create %s: %w (id %.12s)", a.Host, a.Name, ErrForeignContainer, existing.ID)
		}
		if existing.Running {
			return existing.ID, nil
		}
		return existing.ID, h.Engine.Start(ctx, existing.ID)
	}
}

// waitService waits until every live container of rec's current
// deployment is healthy, reporting per-host progress.
func (d *Deployer) waitService(ctx context.Context, rec ServiceRecord, spec ServiceSpec, o DeployOptions, v view) error {
	snaps, err := d.snapshotView(ctx, rec.Stack, v)
	if err != nil {
		return err
	}
	var cs []Container
	for _, c := range serviceContainers(snaps, rec.Service) {
		if c.Deployment() == rec.Deployment && c.State != "exited" && c.State != "dead" {
			cs = append(cs, c)
		}
	}
	return d.waitContainers(ctx, rec, spec, o, cs)
}

// waitContainers waits until every container of cs (ID, Name and Host
// set) is healthy, reporting per-host progress. The first failure cancels
// the other waits.
func (d *Deployer) waitContainers(ctx context.Context, rec ServiceRecord, spec ServiceSpec, o DeployOptions, cs []Container) error {
	var (
		mu               sync.Mutex
		started, healthy = map[string]int{}, map[string]int{}
		totalS, totalH   int
		firstErr         error
		wg               sync.WaitGroup
	)
	for _, c := range cs {
		started[c.Host]++
		totalS++
	}
	network := NetworkName(d.opts.Env, rec.Stack)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := d.waitHealthy(wctx, d.hosts[c.Host], c.ID, spec, network)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
					cancel()
				}
				return
			}
			healthy[c.Host]++
			totalH++
			o.emit(Event{Stack: rec.Stack, Service: rec.Service, Host: c.Host, Container: c.Name, Step: "healthy",
				HostStarted: started[c.Host], HostHealthy: healthy[c.Host], Started: totalS, Healthy: totalH, Scale: scaleOf(spec)})
		}()
	}
	wg.Wait()
	if firstErr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return firstErr
	}
	return nil
}
