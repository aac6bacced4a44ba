package deployer

import (
	"context"
	"errors"
	"fmt"
)

// Upgrade performs an in-service upgrade of every changed service of spec,
// batch by batch as its UpgradeStrategy says, and holds each in upgraded:
// the new containers run, the old ones are stopped and kept until Finish or
// Rollback. Unchanged services only converge their scale; new services are
// created. If any service is held, nothing is done and ErrUpgradeHeld is
// returned, unless o.FinishHeld. A failing health check stops the rollout
// with a *HealthError and, unless o.NoAutoRollback, rolls the stack back.
func (d *Deployer) Upgrade(ctx context.Context, spec StackSpec, o DeployOptions) error {
	defer d.lock(spec.Name)()
	return upgradeStack(ctx, d, d.opts.Store, d.opts.Env, d.opts.NewID, spec, o)
}

// Redeploy upgrades the stack to the definition stored in revision n (as a
// new revision).
func (d *Deployer) Redeploy(ctx context.Context, stack string, n int, o DeployOptions) error {
	rev, err := d.opts.Store.Revision(ctx, d.opts.Env, stack, n)
	if err != nil {
		return err
	}
	if o.Version == "" {
		o.Version = rev.Version
	}
	if o.Compose == "" && o.Rancher == "" && o.Variables == nil {
		o.Compose, o.Rancher, o.Variables = rev.Compose, rev.Rancher, rev.Variables
	}
	return d.Upgrade(ctx, rev.Spec, o)
}

// convergeService brings an active service to its spec's scale.
func (d *Deployer) convergeService(ctx context.Context, rec ServiceRecord, o DeployOptions) error {
	return d.converge(ctx, rec, rec.Spec, scaleOf(rec.Spec), "", true, o)
}

// rollout drives rec (state upgrading) to upgraded. It is resumable: each
// batch is computed from what exists, so a rerun after a crash reuses the
// new containers already made and stops only old ones still running.
func (d *Deployer) rollout(ctx context.Context, rec ServiceRecord, o DeployOptions) error {
	scale := scaleOf(rec.Spec)
	batch := max(rec.Spec.Upgrade.BatchSize, 1)
	for first := true; ; first = false {
		snaps, err := d.snapshot(ctx, rec.Stack)
		if err != nil {
			return err
		}
		var liveNew int
		var oldRunning []Container
		for _, c := range serviceContainers(snaps, rec.Service) {
			switch {
			case c.Deployment() == rec.Deployment && live(c):
				liveNew++
			case c.Deployment() == rec.OldDeployment && c.Running:
				oldRunning = append(oldRunning, c)
			}
		}
		if liveNew >= scale && len(oldRunning) == 0 {
			// Converge once more: makes sure every new container is healthy
			// and removes leftovers of abandoned deployments.
			if err := d.convergeFrom(ctx, snaps, rec, rec.Spec, scale, rec.OldDeployment, true, o, view{}); err != nil {
				return err
			}
			break
		}
		if !first && rec.Spec.Upgrade.Interval > 0 {
			if err := sleep(ctx, rec.Spec.Upgrade.Interval); err != nil {
				return err
			}
		}
		target := min(scale, liveNew+batch)
		// Highest index stops first.
		stop := oldRunning[max(len(oldRunning)-batch, 0):]
		// The batch is planned from this iteration's snapshot: the stack
		// is locked, so nothing but this loop changed it since.
		if rec.Spec.Upgrade.StartFirst {
			if err := d.convergeFrom(ctx, snaps, rec, rec.Spec, target, rec.OldDeployment, true, o, view{}); err != nil {
				return err
			}
			if err := d.stopAll(ctx, rec, stop, o); err != nil {
				return err
			}
		} else {
			if err := d.stopAll(ctx, rec, stop, o); err != nil {
				return err
			}
			// Stopped, they free their ports and resources for placement.
			if err := d.convergeFrom(ctx, markStopped(snaps, stop), rec, rec.Spec, target, rec.OldDeployment, true, o, view{}); err != nil {
				return err
			}
		}
	}
	rec.State = StateUpgraded
	if err := d.opts.Store.UpdateService(ctx, rec, StateUpgrading); err != nil {
		return err
	}
	o.emit(Event{Stack: rec.Stack, Service: rec.Service, Step: "state", Message: string(StateUpgraded)})
	return nil
}

// stopAll stops cs (one batch) concurrently: each gets the whole grace,
// so the batch takes as long as its slowest container.
func (d *Deployer) stopAll(ctx context.Context, rec ServiceRecord, cs []Container, o DeployOptions) error {
	o = o.serialized()
	return forEach(len(cs), func(i int) string { return cs[i].Host }, func(i int) error {
		c := cs[i]
		if err := d.hosts[c.Host].Engine.Stop(ctx, c.ID, d.opts.StopGrace); err != nil && !errors.Is(err, ErrNoSuchContainer) {
			return err
		}
		o.emit(Event{Stack: rec.Stack, Service: rec.Service, Host: c.Host, Container: c.Name, Step: "stop"})
		return nil
	})
}

// markStopped returns snaps with the containers of cs shown exited.
func markStopped(snaps []HostSnapshot, cs []Container) []HostSnapshot {
	ids := map[string]bool{}
	for _, c := range cs {
		ids[c.ID] = true
	}
	out := make([]HostSnapshot, len(snaps))
	for i, h := range snaps {
		out[i] = h
		out[i].Containers = make([]Container, len(h.Containers))
		for j, c := range h.Containers {
			if ids[c.ID] {
				c.Running, c.State = false, "exited"
			}
			out[i].Containers[j] = c
		}
	}
	return out
}

// Finish confirms the stack's held upgrades: the old containers are
// removed and each service returns to active. An interrupted upgrade
// (upgrading) is first completed. Idempotent: an active service is left as
// is; a service caught in finishing-upgrade by a crash is finished.
func (d *Deployer) Finish(ctx context.Context, stack string, progress func(Event)) error {
	defer d.lock(stack)()
	o := DeployOptions{Progress: progress, NoAutoRollback: true}
	return finishServices(ctx, d.opts.Store, d.opts.Env, stack,
		func(ctx context.Context, rec ServiceRecord) error { return d.rollout(ctx, rec, o) },
		func(ctx context.Context, rec ServiceRecord) error { return d.finishService(ctx, rec, o) })
}

func (d *Deployer) finishService(ctx context.Context, rec ServiceRecord, o DeployOptions) error {
	if err := beginFinish(ctx, d.opts.Store, &rec, o); err != nil {
		return err
	}
	snaps, err := d.snapshot(ctx, rec.Stack)
	if err != nil {
		return fmt.Errorf("finish %s/%s: %w", rec.Stack, rec.Service, err)
	}
	var old []Container
	for _, c := range serviceContainers(snaps, rec.Service) {
		if c.Deployment() != rec.Deployment {
			old = append(old, c)
		}
	}
	o = o.serialized()
	if err := forEach(len(old), func(i int) string { return old[i].Host }, func(i int) error {
		c := old[i]
		if err := d.hosts[c.Host].Engine.Remove(ctx, c.ID); err != nil && !errors.Is(err, ErrNoSuchContainer) {
			return err
		}
		o.emit(Event{Stack: rec.Stack, Service: rec.Service, Host: c.Host, Container: c.Name, Step: "remove"})
		return nil
	}); err != nil {
		return fmt.Errorf("finish %s/%s: %w", rec.Stack, rec.Service, err)
	}
	return endFinish(ctx, d.opts.Store, rec, o)
}

// Rollback returns every held or interrupted upgrade of the stack to its
// previous definition: the kept old containers are started, and once
// healthy the new ones are removed; the service is active at the old
// version. Idempotent and resumable like Finish.
func (d *Deployer) Rollback(ctx context.Context, stack string, progress func(Event)) error {
	defer d.lock(stack)()
	return d.rollback(ctx, stack, DeployOptions{Progress: progress})
}

func (d *Deployer) rollback(ctx context.Context, stack string, o DeployOptions) error {
	return rollbackServices(ctx, d.opts.Store, d.opts.Env, stack, o, func(ctx context.Context, rec ServiceRecord, back *ServiceRecord) error {
		// Restart the warm old containers (an exited one is restarted
		// whatever its strategy), then remove everything else.
		spec := *rec.Old
		if spec.HealthCheck != nil {
			hc := *spec.HealthCheck
			hc.Strategy = ""
			spec.HealthCheck = &hc
		}
		return d.converge(ctx, *back, spec, scaleOf(*rec.Old), "", true, o)
	})
}
