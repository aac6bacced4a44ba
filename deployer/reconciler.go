package deployer

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Reconcile makes one pass over the environment's services: a crashed
// (exited, OOM-killed) or missing container of the current deployment is
// restarted, left (health_check strategy "none") or replaced ("recreate"),
// and leftovers of abandoned deployments are removed. Services held in
// upgraded keep their new containers running; the stopped old ones are
// left stopped. Services in the middle of an operation are skipped. It does
// not wait for health. Errors of single services are joined.
//
// A host unreachable for less than Options.RescheduleAfter fails the
// services (ErrHostUnreachable: the view is partial). Past it, the host is
// lost: its containers count as gone and are replaced on the other hosts
// within the rules. When it answers again its replaced containers are
// removed; nothing moves back to it without an explicit Rebalance.
func (d *Deployer) Reconcile(ctx context.Context) error {
	recs, err := d.opts.Store.Services(ctx, d.opts.Env, "")
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	v := d.checkHosts(ctx)
	var errs []error
	for _, rec := range recs {
		if err := d.reconcileService(ctx, rec, v); err != nil {
			errs = append(errs, fmt.Errorf("reconcile %s/%s: %w", rec.Stack, rec.Service, err))
		}
	}
	return errors.Join(errs...)
}

func (d *Deployer) reconcileService(ctx context.Context, rec ServiceRecord, v view) error {
	unlock := d.lock(rec.Stack)
	defer unlock()
	// Re-read under the lock: an operation may have moved it meanwhile.
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
		return nil
	}
	return d.convergeView(ctx, rec, rec.Spec, scaleOf(rec.Spec), keep, false, DeployOptions{}, v)
}

// RunReconciler calls Reconcile every interval until ctx is done, passing
// each pass's error to onErr (may be nil). Cancel ctx to stop it.
func (d *Deployer) RunReconciler(ctx context.Context, interval time.Duration, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := d.Reconcile(ctx); err != nil && onErr != nil && ctx.Err() == nil {
				onErr(err)
			}
		}
	}
}
