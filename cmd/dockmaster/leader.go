package main

import (
	"context"
	"log/slog"
	"os"
	"sync"

	"github.com/dockmaster/dockmaster/internal/config"
	"github.com/dockmaster/dockmaster/internal/leader"
)

// newElector: with a PostgreSQL store several replicas may share the
// database, and one of them, elected, runs the singleton loops; with
// SQLite this process is the only one and always leads.
func newElector(cfg *config.Config, log *slog.Logger) leader.Elector {
	if !config.StoreIsPostgres(cfg.Store) {
		return &leader.Single{}
	}
	host, _ := os.Hostname()
	return leader.NewPostgres(leader.Options{URL: cfg.Store, Name: host + " " + cfg.Listen, Log: log})
}

// leading runs loops together for one leadership term and returns when
// all have returned (they stop when ctx, the term, ends).
func leading(loops ...func(context.Context)) func(context.Context) {
	return func(ctx context.Context) {
		var wg sync.WaitGroup
		for _, loop := range loops {
			wg.Add(1)
			go func() { defer wg.Done(); loop(ctx) }()
		}
		wg.Wait()
	}
}
