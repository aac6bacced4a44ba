package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/internal/fleet"
	"github.com/dockmaster/dockmaster/internal/store"
)

// reconcileEvery runs every environment's reconciler at an interval:
// crashed containers are restarted or replaced by their health strategy
// (also while an upgrade is held), global services follow their hosts,
// and a host lost for longer than its grace has its containers replaced.
// A swarm reconciles itself.
func reconcileEvery(db *store.DB, f *fleet.Fleet, every time.Duration, log *slog.Logger) func(context.Context) {
	return func(ctx context.Context) {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			envs, err := db.Environments(ctx)
			if err != nil && ctx.Err() == nil {
				log.Warn("reconciler: environments", "err", err)
			}
			for _, e := range envs {
				if e.SwarmManager != "" {
					continue
				}
				d, err := f.Deployer(ctx, e.Name)
				if err == nil {
					err = d.Reconcile(ctx)
				}
				switch {
				case err == nil || ctx.Err() != nil:
				case errors.Is(err, deployer.ErrHostUnreachable):
					log.Debug("reconciler: waiting for a host", "env", e.Name, "err", err)
				default:
					log.Warn("reconciler", "env", e.Name, "err", err)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}
}
