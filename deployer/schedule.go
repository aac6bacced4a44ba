package deployer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/dockmaster/dockmaster/deployer/scheduler"
)

// Scheduler is the Placer backed by package scheduler: hard rules filter
// (host state, host labels, require_any, container affinity, host ports of
// every container on the host, CPU and memory against docker info), soft
// rules and the strategy (spread, or binpack per service) rank. Rules come
// from the service's io.rancher.scheduler.* labels and its native
// Scheduling block. It is pure and deterministic.
type Scheduler struct{}

var _ GlobalPlacer = Scheduler{}

// GlobalPlacer is a Placer that also places global services (one
// container per eligible host). The deployer uses it for global services
// when its Placer implements it; otherwise a global service is placed by
// its scale like any other.
type GlobalPlacer interface {
	Placer
	// PlaceGlobal returns the hosts that must get a container of svc, and
	// the ids of live containers of svc that must go (on hosts no longer
	// eligible, or all but one where a host has several).
	PlaceGlobal(hosts []HostSnapshot, stack string, svc ServiceSpec) (add []string, extra []string, err error)
}

// Place implements Placer.
func (Scheduler) Place(hosts []HostSnapshot, stack string, svc ServiceSpec, n int) ([]string, error) {
	req := SchedulerRequest(stack, svc)
	req.Global = false // n containers, whatever the labels say: the caller decided
	if req.Scheduling != nil && req.Scheduling.Global {
		s := *req.Scheduling
		s.Global = false
		req.Scheduling = &s
	}
	if req.Labels[scheduler.LabelGlobal] != "" {
		l := make(map[string]string, len(req.Labels))
		for k, v := range req.Labels {
			if k != scheduler.LabelGlobal {
				l[k] = v
			}
		}
		req.Labels = l
	}
	plan, err := scheduler.Place(SchedulerSnapshot(hosts), req, n)
	if err != nil {
		return nil, placementError(svc.Name, err)
	}
	out := make([]string, len(plan.Placements))
	for i, p := range plan.Placements {
		out[i] = p.Host
	}
	return out, nil
}

// PlaceGlobal implements GlobalPlacer.
func (Scheduler) PlaceGlobal(hosts []HostSnapshot, stack string, svc ServiceSpec) ([]string, []string, error) {
	req := SchedulerRequest(stack, svc)
	req.Global = true
	d, err := scheduler.Global(SchedulerSnapshot(hosts), req)
	if err != nil {
		return nil, nil, placementError(svc.Name, err)
	}
	var add, extra []string
	for _, p := range d.Place {
		add = append(add, p.Host)
	}
	for _, c := range d.Extra {
		extra = append(extra, c.ID)
	}
	return add, extra, nil
}

// placementError turns a *scheduler.NoFitError into a *PlacementError that
// keeps it (errors.As finds either).
func placementError(service string, err error) error {
	var nf *scheduler.NoFitError
	if !errors.As(err, &nf) {
		return fmt.Errorf("place %s: %w", service, err)
	}
	pe := &PlacementError{Service: service, Reasons: map[string]string{}, NoFit: nf}
	for _, h := range nf.Hosts {
		pe.Reasons[h.Host] = h.Reason
	}
	return pe
}

// IsGlobal reports whether svc runs one container per eligible host: the
// global flag, the io.rancher.scheduler.global label or scheduling.global.
func IsGlobal(svc ServiceSpec) bool {
	return svc.Global || strings.EqualFold(strings.TrimSpace(svc.Labels[scheduler.LabelGlobal]), "true") ||
		(svc.Scheduling != nil && svc.Scheduling.Global)
}

// SchedulerRequest is the scheduler's request for new containers of svc.
func SchedulerRequest(stack string, svc ServiceSpec) scheduler.Request {
	req := scheduler.Request{
		Stack: stack, Service: svc.Name, Labels: svc.Labels, Scheduling: svc.Scheduling,
		Resources: schedResources(svc.Resources), Global: svc.Global,
	}
	if svc.Scheduling != nil {
		req.Strategy = svc.Scheduling.Strategy
	}
	for _, p := range svc.Ports {
		if p.HostPort != 0 {
			req.Ports = append(req.Ports, scheduler.Port{HostIP: p.HostIP, HostPort: p.HostPort, Protocol: p.Protocol})
		}
	}
	return req
}

func schedResources(r Resources) scheduler.Resources {
	return scheduler.Resources{NanoCPUs: r.NanoCPUs, CPUShares: r.CPUShares, MemoryLimit: r.MemoryLimit, MemoryReservation: r.MemoryReservation}
}

// SchedulerSnapshot maps hosts to the scheduler's inventory. A host that
// did not answer is unreachable; capacity comes from Info; every container
// on the host (Containers and Others) is listed. Containers of the host's
// environment carry their stack and service; the rest are foreign. Stopped
// containers (the held old version) keep their index but hold nothing.
func SchedulerSnapshot(hosts []HostSnapshot) *scheduler.Snapshot {
	s := &scheduler.Snapshot{Hosts: make([]scheduler.Host, 0, len(hosts))}
	for _, h := range hosts {
		sh := scheduler.Host{Name: h.Name, Labels: h.Labels, State: scheduler.HostActive,
			NanoCPUs: int64(h.Info.NCPU) * 1e9, MemoryBytes: h.Info.MemTotal}
		switch {
		case h.Err != nil:
			sh.State = scheduler.HostUnreachable
		case h.State == string(scheduler.HostDraining):
			sh.State = scheduler.HostDraining
		}
		seen := map[string]bool{}
		for _, list := range [][]Container{h.Containers, h.Others} {
			for _, c := range list {
				if c.ID != "" && seen[c.ID] {
					continue
				}
				seen[c.ID] = true
				sh.Containers = append(sh.Containers, schedContainer(h.Env, c))
			}
		}
		s.Hosts = append(s.Hosts, sh)
	}
	return s
}

func schedContainer(env string, c Container) scheduler.Container {
	sc := scheduler.Container{ID: c.ID, Name: c.Name, Stopped: !live(c), Labels: c.Labels,
		Resources: schedResources(c.Resources)}
	// env "" (a caller that did not say) trusts the labels.
	if c.Labels[LabelStack] != "" && (env == "" || c.Labels[LabelEnv] == env) {
		sc.Stack, sc.Service, sc.Index = c.Labels[LabelStack], c.Labels[LabelService], c.Index()
	}
	for _, p := range c.Ports {
		if p.HostPort != 0 {
			sc.Ports = append(sc.Ports, scheduler.Port{HostIP: p.HostIP, HostPort: p.HostPort, Protocol: p.Protocol})
		}
	}
	return sc
}

// view is how an operation sees the hosts beyond their stored state.
type view struct {
	// draining is a host being drained: it takes nothing new.
	draining string
	// lost are hosts unreachable for longer than RescheduleAfter: they are
	// not asked, their containers count as gone and they take nothing.
	lost map[string]bool
}

// inventoryPlacer fetches the whole-host inventory (capacity, every
// container) only when something must be placed, then asks the Placer.
// Most converges place nothing, and listing every container of every host
// costs one inspect per container.
type inventoryPlacer struct {
	ctx context.Context
	d   *Deployer
	v   view
}

func (p inventoryPlacer) Place(hosts []HostSnapshot, stack string, svc ServiceSpec, n int) ([]string, error) {
	full, err := p.d.enrich(p.ctx, hosts, stack, p.v)
	if err != nil {
		return nil, err
	}
	return p.d.opts.Placer.Place(full, stack, svc, n)
}

// global returns the Placer's GlobalPlacer, or nil.
func (p inventoryPlacer) global() GlobalPlacer {
	g, _ := p.d.opts.Placer.(GlobalPlacer)
	return g
}

func (p inventoryPlacer) PlaceGlobal(hosts []HostSnapshot, stack string, svc ServiceSpec) ([]string, []string, error) {
	full, err := p.d.enrich(p.ctx, hosts, stack, p.v)
	if err != nil {
		return nil, nil, err
	}
	return p.global().PlaceGlobal(full, stack, svc)
}

// enrich adds to each answering host its state, capacity and every
// container on it outside stack (stack's own are hosts[i].Containers, which
// the caller may have edited: replaced containers left out, planned ones
// added). A host that fails now is an error (ErrHostUnreachable).
func (d *Deployer) enrich(ctx context.Context, hosts []HostSnapshot, stack string, v view) ([]HostSnapshot, error) {
	out := make([]HostSnapshot, len(hosts))
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		out[i] = h
		out[i].Env = d.opts.Env
		host := d.hosts[h.Name]
		if host == nil || h.Err != nil {
			continue
		}
		out[i].State = host.State
		if v.draining == h.Name {
			out[i].State = string(scheduler.HostDraining)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			info, err := host.Engine.Info(ctx)
			if err != nil {
				errs[i] = err
				return
			}
			all, err := host.Engine.List(ctx, nil)
			if err != nil {
				errs[i] = err
				return
			}
			out[i].Info = info
			out[i].Others = nil
			for _, c := range all {
				if stack == "" || !ownedBy(c.Labels, d.opts.Env, stack, "") {
					c.Host = h.Name
					out[i].Others = append(out[i].Others, c)
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w: %s: %w", ErrHostUnreachable, hosts[i].Name, err)
		}
	}
	return out, nil
}

// StackPlan is where Up or Upgrade of a stack would put containers, worked
// out before any container changes.
type StackPlan struct {
	Stack    string
	Services []ServicePlan
}

// ServicePlan is one service of a StackPlan.
type ServicePlan struct {
	Service string
	// Change is create (new service), upgrade (new containers replace the
	// current ones, which are kept stopped) or converge (scale and repairs
	// only).
	Change  string
	Actions []Action
	// Err is set when a container fits nowhere: a *PlacementError giving
	// each host's reason.
	Err error
}

// Err joins the services' placement errors; nil when everything fits.
func (p StackPlan) Err() error {
	var errs []error
	for _, s := range p.Services {
		if s.Err != nil {
			errs = append(errs, s.Err)
		}
	}
	return errors.Join(errs...)
}

// String is one line per action, e.g. "web: create app-web-3 on h2", and
// "web: " plus the error for a service that does not fit.
func (p StackPlan) String() string {
	var b strings.Builder
	for _, s := range p.Services {
		if s.Err != nil {
			fmt.Fprintf(&b, "%s: %v\n", s.Service, s.Err)
			continue
		}
		if len(s.Actions) == 0 {
			fmt.Fprintf(&b, "%s: nothing to do\n", s.Service)
		}
		for _, a := range s.Actions {
			fmt.Fprintf(&b, "%s: %s\n", s.Service, a)
		}
	}
	return b.String()
}

// plannedDeployment stands for the deployment id an upgrade will make.
const plannedDeployment = "(planned)"

// Plan works out, without changing anything, what Up or Upgrade of spec
// would do: per service the containers to create (and on which host) and
// to remove. Services are planned in order, each seeing the containers
// planned before it. Placement failures are in the plan (StackPlan.Err);
// the error is for hosts that do not answer or the store.
func (d *Deployer) Plan(ctx context.Context, spec StackSpec) (StackPlan, error) {
	recs := make([]*ServiceRecord, len(spec.Services))
	for i, s := range spec.Services {
		rec, err := d.opts.Store.Service(ctx, d.opts.Env, spec.Name, s.Name)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return StackPlan{}, err
		default:
			recs[i] = &rec
		}
	}
	return d.plan(ctx, spec, recs)
}

func (d *Deployer) plan(ctx context.Context, spec StackSpec, recs []*ServiceRecord) (StackPlan, error) {
	p, _, err := d.planStack(ctx, spec, recs)
	return p, err
}

// planStack is plan, also returning the snapshot of the stack it planned
// from (for executing the plan).
func (d *Deployer) planStack(ctx context.Context, spec StackSpec, recs []*ServiceRecord) (StackPlan, []HostSnapshot, error) {
	out := StackPlan{Stack: spec.Name}
	snaps, err := d.snapshot(ctx, spec.Name)
	if err != nil {
		return out, nil, err
	}
	hosts, err := d.enrich(ctx, snaps, spec.Name, view{})
	if err != nil {
		return out, nil, err
	}
	for i, s := range spec.Services {
		rec := recs[i]
		des := desired{Stack: spec.Name, Spec: s, Deployment: plannedDeployment, Hash: ConfigHash(s), Scale: scaleOf(s)}
		sp := ServicePlan{Service: s.Name, Change: "create"}
		replaced := ""
		switch {
		case rec == nil:
		case ConfigHash(rec.Spec) == ConfigHash(s):
			sp.Change, des.Deployment = "converge", rec.Deployment
			if rec.State == StateUpgraded {
				des.Keep = rec.OldDeployment
			}
		default:
			sp.Change, des.Keep, replaced = "upgrade", rec.Deployment, rec.Deployment
			if !s.Upgrade.StartFirst {
				// Stopped before their replacements start: they hold nothing.
				hosts = stopDeployment(hosts, s.Name, replaced)
			}
		}
		p, err := reconcile(des, hosts, d.opts.Placer)
		sp.Actions, sp.Err = p.Actions, err
		out.Services = append(out.Services, sp)
		if err == nil {
			hosts = applyActions(hosts, spec.Name, s, des, p.Actions)
		}
		if replaced != "" {
			hosts = stopDeployment(hosts, s.Name, replaced)
		}
	}
	return out, snaps, nil
}

// stopDeployment returns hosts with service's containers of deployment
// shown stopped.
func stopDeployment(hosts []HostSnapshot, service, deployment string) []HostSnapshot {
	out := make([]HostSnapshot, len(hosts))
	for i, h := range hosts {
		out[i] = h
		out[i].Containers = make([]Container, len(h.Containers))
		for j, c := range h.Containers {
			if c.Labels[LabelService] == service && c.Deployment() == deployment {
				c.Running, c.State = false, "exited"
			}
			out[i].Containers[j] = c
		}
	}
	return out
}

// applyActions returns hosts as they would be after actions: removed
// containers gone, created ones running with the service's labels, ports
// and resources.
func applyActions(hosts []HostSnapshot, stack string, s ServiceSpec, des desired, actions []Action) []HostSnapshot {
	gone := map[string]bool{}
	for _, a := range actions {
		if a.Kind == ActRemove {
			gone[a.ID] = true
		}
	}
	out := make([]HostSnapshot, len(hosts))
	for i, h := range hosts {
		out[i] = h
		out[i].Containers = nil
		for _, c := range h.Containers {
			if !gone[c.ID] {
				out[i].Containers = append(out[i].Containers, c)
			}
		}
		for _, a := range actions {
			if a.Kind != ActCreate || a.Host != h.Name {
				continue
			}
			labels := make(map[string]string, len(s.Labels)+6)
			for k, v := range s.Labels {
				labels[k] = v
			}
			labels[LabelEnv], labels[LabelStack], labels[LabelService] = h.Env, stack, s.Name
			labels[LabelDeployment], labels[LabelConfigHash], labels[LabelIndex] = des.Deployment, des.Hash, itoa(a.Index)
			out[i].Containers = append(out[i].Containers, Container{ID: "planned/" + a.Name, Name: a.Name, Host: h.Name,
				Labels: labels, State: "running", Running: true, Ports: s.Ports, Resources: s.Resources})
		}
	}
	return out
}

// checkPlan plans spec and returns the placement errors, if any.
func (d *Deployer) checkPlan(ctx context.Context, spec StackSpec, recs []*ServiceRecord) error {
	p, err := d.plan(ctx, spec, recs)
	if err != nil {
		return err
	}
	return p.Err()
}

// checkHosts pings every host (docker info) and returns the lost ones:
// unreachable since longer than RescheduleAfter.
func (d *Deployer) checkHosts(ctx context.Context) view {
	down := make([]bool, len(d.opts.Hosts))
	var wg sync.WaitGroup
	for i := range d.opts.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := d.opts.Hosts[i].Engine.Info(ctx)
			down[i] = err != nil && ctx.Err() == nil
		}()
	}
	wg.Wait()
	now := d.opts.Now()
	v := view{lost: map[string]bool{}}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, h := range d.opts.Hosts {
		if !down[i] {
			delete(d.downSince, h.Name)
			continue
		}
		since, ok := d.downSince[h.Name]
		if !ok {
			since = now
			d.downSince[h.Name] = now
		}
		if d.opts.RescheduleAfter > 0 && now.Sub(since) >= d.opts.RescheduleAfter {
			v.lost[h.Name] = true
		}
	}
	return v
}

// MoveResult is one container moved by Drain or Rebalance.
type MoveResult struct {
	Stack, Service string
	From, Old      string // host and name of the container stopped and removed
	To, New        string // host and name of its replacement
}

// DrainResult says what Drain did.
type DrainResult struct {
	Moved []MoveResult
	// Left lists what stays on the host, and why (the stopped old
	// containers of a held upgrade, kept for a rollback).
	Left []string
}

// Drain moves every container of this environment's services off host:
// for each service, replacements are placed on the other hosts by the
// Placer (host treated as draining), started and healthy before the
// containers on host are stopped and removed, so a service never runs
// fewer than its scale. Global services just lose their container there.
// The caller marks the host draining in the store first, so that nothing
// is placed there again. Services are drained one at a time; a service
// that is busy or fits nowhere else is reported (errors joined) and the
// others still move.
func (d *Deployer) Drain(ctx context.Context, host string, progress func(Event)) (DrainResult, error) {
	var res DrainResult
	if d.hosts[host] == nil {
		return res, fmt.Errorf("drain: %w: %s", scheduler.ErrUnknownHost, host)
	}
	recs, err := d.opts.Store.Services(ctx, d.opts.Env, "")
	if err != nil {
		return res, fmt.Errorf("drain %s: %w", host, err)
	}
	var errs []error
	for _, rec := range recs {
		if err := d.drainService(ctx, rec, host, progress, &res); err != nil {
			errs = append(errs, fmt.Errorf("drain %s: %s/%s: %w", host, rec.Stack, rec.Service, err))
		}
	}
	return res, errors.Join(errs...)
}

func (d *Deployer) drainService(ctx context.Context, rec ServiceRecord, host string, progress func(Event), res *DrainResult) error {
	defer d.lock(rec.Stack)()
	rec, err := d.opts.Store.Service(ctx, rec.Env, rec.Stack, rec.Service)
	if err != nil {
		return err
	}
	keep := ""
	switch rec.State {
	case StateActive:
	case StateUpgraded:
		keep = rec.OldDeployment
	default:
		return fmt.Errorf("%w (%s)", ErrBusy, rec.State)
	}
	snaps, err := d.snapshot(ctx, rec.Stack)
	if err != nil {
		return err
	}
	var onHost []Container
	for _, c := range serviceContainers(snaps, rec.Service) {
		switch {
		case c.Host != host:
		case c.Deployment() == rec.Deployment && live(c):
			onHost = append(onHost, c)
		case keep != "" && c.Deployment() == keep:
			res.Left = append(res.Left, fmt.Sprintf("%s: stopped container of the held upgrade of %s/%s, kept for rollback", c.Name, rec.Stack, rec.Service))
		}
	}
	v := view{draining: host}
	var created []Event
	o := DeployOptions{Progress: func(e Event) {
		if e.Step == "create" {
			created = append(created, e)
		}
		if progress != nil {
			progress(e)
		}
	}}
	if IsGlobal(rec.Spec) {
		// The host is no longer eligible: the global placer drops it.
		return d.convergeView(ctx, rec, rec.Spec, scaleOf(rec.Spec), keep, true, o, v)
	}
	if len(onHost) == 0 {
		return nil
	}
	// Scale + the containers leaving: the replacements start (elsewhere:
	// the host is draining) and are healthy before anything stops.
	if err := d.convergeView(ctx, rec, rec.Spec, scaleOf(rec.Spec)+len(onHost), keep, true, o, v); err != nil {
		return err
	}
	for i, c := range onHost {
		if err := d.stopRemove(ctx, rec, c, o); err != nil {
			return err
		}
		m := MoveResult{Stack: rec.Stack, Service: rec.Service, From: host, Old: c.Name}
		if i < len(created) {
			m.To, m.New = created[i].Host, created[i].Container
		}
		res.Moved = append(res.Moved, m)
	}
	return nil
}

// stopRemove stops c (with the grace) and removes it.
func (d *Deployer) stopRemove(ctx context.Context, rec ServiceRecord, c Container, o DeployOptions) error {
	eng := d.hosts[c.Host].Engine
	if err := eng.Stop(ctx, c.ID, d.opts.StopGrace); err != nil && !errors.Is(err, ErrNoSuchContainer) {
		return err
	}
	o.emit(Event{Stack: rec.Stack, Service: rec.Service, Host: c.Host, Container: c.Name, Step: "stop"})
	if err := eng.Remove(ctx, c.ID); err != nil && !errors.Is(err, ErrNoSuchContainer) {
		return err
	}
	o.emit(Event{Stack: rec.Stack, Service: rec.Service, Host: c.Host, Container: c.Name, Step: "remove"})
	return nil
}

// envInventory is every host with all of the environment's containers
// (every stack) and everything else on it, for env-wide planning.
func (d *Deployer) envInventory(ctx context.Context, v view) ([]HostSnapshot, map[string]Container, error) {
	snaps := make([]HostSnapshot, len(d.opts.Hosts))
	var wg sync.WaitGroup
	for i := range d.opts.Hosts {
		h := &d.opts.Hosts[i]
		snaps[i] = HostSnapshot{Name: h.Name, Labels: h.Labels}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs, err := h.Engine.List(ctx, map[string]string{LabelEnv: d.opts.Env})
			for j := range cs {
				cs[j].Host = h.Name
			}
			snaps[i].Containers, snaps[i].Err = cs, err
		}()
	}
	wg.Wait()
	for _, s := range snaps {
		if s.Err != nil {
			return nil, nil, fmt.Errorf("%w: %s: %w", ErrHostUnreachable, s.Name, s.Err)
		}
	}
	full, err := d.enrich(ctx, snaps, "", v)
	if err != nil {
		return nil, nil, err
	}
	byID := map[string]Container{}
	for _, h := range full {
		for _, c := range h.Containers {
			byID[c.ID] = c
		}
	}
	return full, byID, nil
}

// requests are the scheduler requests of the environment's services, and
// their records by stack/service.
func (d *Deployer) requests(ctx context.Context) ([]scheduler.Request, map[string]ServiceRecord, error) {
	recs, err := d.opts.Store.Services(ctx, d.opts.Env, "")
	if err != nil {
		return nil, nil, err
	}
	var reqs []scheduler.Request
	by := map[string]ServiceRecord{}
	for _, r := range recs {
		reqs = append(reqs, SchedulerRequest(r.Stack, r.Spec))
		by[r.Stack+"/"+r.Service] = r
	}
	return reqs, by, nil
}

// PlanDrain is the scheduler's evacuation plan for host: where each of its
// containers would go. Nothing is changed. Containers that fit nowhere are
// reported by the error (wrapping a *scheduler.NoFitError per service).
func (d *Deployer) PlanDrain(ctx context.Context, host string) (scheduler.Plan, error) {
	hosts, _, err := d.envInventory(ctx, view{draining: host})
	if err != nil {
		return scheduler.Plan{}, err
	}
	reqs, _, err := d.requests(ctx)
	if err != nil {
		return scheduler.Plan{}, err
	}
	return scheduler.Evacuate(SchedulerSnapshot(hosts), host, reqs)
}

// PlanRebalance is the scheduler's plan for moving containers of spread
// services back onto host (typically one that returned after a drain or
// an outage). Nothing is changed.
func (d *Deployer) PlanRebalance(ctx context.Context, host string) (scheduler.Plan, error) {
	hosts, _, err := d.envInventory(ctx, view{})
	if err != nil {
		return scheduler.Plan{}, err
	}
	reqs, _, err := d.requests(ctx)
	if err != nil {
		return scheduler.Plan{}, err
	}
	return scheduler.Rebalance(SchedulerSnapshot(hosts), host, reqs)
}

// Rebalance moves containers of spread services onto host, one service at
// a time, as PlanRebalance says: each replacement is started and healthy
// before the container it replaces is stopped and removed. Containers come
// back to a host only this way; the reconciler never does it. Services not
// active are skipped.
func (d *Deployer) Rebalance(ctx context.Context, host string, progress func(Event)) ([]MoveResult, error) {
	if d.hosts[host] == nil {
		return nil, fmt.Errorf("rebalance: %w: %s", scheduler.ErrUnknownHost, host)
	}
	hosts, byID, err := d.envInventory(ctx, view{})
	if err != nil {
		return nil, fmt.Errorf("rebalance %s: %w", host, err)
	}
	reqs, recs, err := d.requests(ctx)
	if err != nil {
		return nil, fmt.Errorf("rebalance %s: %w", host, err)
	}
	plan, perr := scheduler.Rebalance(SchedulerSnapshot(hosts), host, reqs)
	if len(plan.Moves) == 0 {
		if perr != nil {
			return nil, fmt.Errorf("rebalance %s: %w", host, perr)
		}
		return nil, nil
	}
	groups := map[string][]scheduler.Move{}
	var order []string
	for _, m := range plan.Moves {
		k := m.Old.Stack + "/" + m.Old.Service
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], m)
	}
	var out []MoveResult
	errs := []error{perr}
	o := DeployOptions{Progress: progress}
	for _, k := range order {
		moved, err := d.rebalanceService(ctx, recs[k], groups[k], byID, o)
		out = append(out, moved...)
		if err != nil {
			errs = append(errs, fmt.Errorf("rebalance %s: %s: %w", host, k, err))
		}
	}
	return out, errors.Join(errs...)
}

func (d *Deployer) rebalanceService(ctx context.Context, rec ServiceRecord, moves []scheduler.Move, byID map[string]Container, o DeployOptions) ([]MoveResult, error) {
	if rec.Service == "" {
		return nil, errors.New("no stored service for these containers")
	}
	defer d.lock(rec.Stack)()
	rec, err := d.opts.Store.Service(ctx, rec.Env, rec.Stack, rec.Service)
	if err != nil {
		return nil, err
	}
	if rec.State != StateActive {
		return nil, fmt.Errorf("%w (%s)", ErrBusy, rec.State)
	}
	var olds []Container
	var out []MoveResult
	for _, m := range moves {
		old, ok := byID[m.Old.ID]
		if !ok || old.Deployment() != rec.Deployment {
			continue // not the current deployment: leave it to the reconciler
		}
		a := Action{Kind: ActCreate, Host: m.New.Host, Name: m.New.Name(), Index: m.New.Index}
		if err := d.create(ctx, rec, rec.Spec, a); err != nil {
			return out, err
		}
		o.emit(Event{Stack: rec.Stack, Service: rec.Service, Host: a.Host, Container: a.Name, Step: "create"})
		olds = append(olds, old)
		out = append(out, MoveResult{Stack: rec.Stack, Service: rec.Service, From: old.Host, Old: old.Name, To: a.Host, New: a.Name})
	}
	if len(olds) == 0 {
		return nil, nil
	}
	if err := d.waitService(ctx, rec, rec.Spec, o, view{}); err != nil {
		return out, err
	}
	for _, c := range olds {
		if err := d.stopRemove(ctx, rec, c, o); err != nil {
			return out, err
		}
	}
	return out, nil
}
