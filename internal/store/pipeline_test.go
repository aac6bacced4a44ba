package store

import (
	"context"
	"errors"
	"testing"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/pipeline"
)

// TestPipelineStore covers the writes the engine's idempotence rests on,
// on both dialects: the cursor only moves forward, one run per event and
// app, conditional transitions, one ticket per run and environment.
func TestPipelineStore(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		p := db.Pipeline()
		for _, id := range []int64{5, 3, 7} {
			if err := p.SetCursor(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		if c, err := p.Cursor(ctx); err != nil || c != 7 {
			t.Fatalf("cursor %d %v, want 7 (never backwards)", c, err)
		}
		res, err := db.InsertDeliveries(ctx, []NewDelivery{newDelivery("e1", true)})
		if err != nil {
			t.Fatal(err)
		}
		r := pipeline.Run{App: "web", Repo: "r", Ref: "refs/heads/main", Branch: "main", Commit: "abc", Version: "1.0",
			Environment: "prod", EventID: res[0].EventID}
		first, created, err := p.CreateRun(ctx, r)
		if err != nil || !created || first.ID == 0 || first.State != pipeline.RunPending {
			t.Fatalf("create run: %+v created=%v %v", first, created, err)
		}
		again, created, err := p.CreateRun(ctx, r)
		if err != nil || created || again.ID != first.ID {
			t.Fatalf("second create run: id %d created=%v %v, want id %d not created", again.ID, created, err, first.ID)
		}
		if err := p.TransitionRun(ctx, first.ID, pipeline.RunPending, pipeline.RunTesting, ""); err != nil {
			t.Fatal(err)
		}
		if err := p.TransitionRun(ctx, first.ID, pipeline.RunPending, pipeline.RunTesting, ""); !errors.Is(err, pipeline.ErrConflict) {
			t.Fatalf("second transition: %v, want a conflict", err)
		}
		tk, created, err := p.CreateTicket(ctx, pipeline.Ticket{App: "web", Version: "1.0", Environment: "prod", RunID: first.ID}, "DEPLOY")
		if err != nil || !created || tk.Key != "DEPLOY-1" {
			t.Fatalf("ticket %+v created=%v %v", tk, created, err)
		}
		tk2, created, err := p.CreateTicket(ctx, pipeline.Ticket{App: "web", Version: "1.0", Environment: "prod", RunID: first.ID}, "DEPLOY")
		if err != nil || created || tk2.Key != "DEPLOY-1" {
			t.Fatalf("second ticket %+v created=%v %v, want DEPLOY-1 again", tk2, created, err)
		}
		tk3, _, err := p.CreateTicket(ctx, pipeline.Ticket{App: "web", Version: "1.1", Environment: "prod"}, "DEPLOY")
		if err != nil || tk3.Key != "DEPLOY-2" {
			t.Fatalf("manual ticket %+v %v, want DEPLOY-2", tk3, err)
		}
	})
}

func TestDeployerStore(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		for want := 1; want <= 2; want++ {
			n, err := db.AddRevision(ctx, deployer.Revision{Env: "prod", Stack: "web", Version: "1", Variables: map[string]string{"A": "b"}})
			if err != nil || n != want {
				t.Fatalf("revision %d %v, want %d", n, err, want)
			}
		}
		rec := deployer.ServiceRecord{Env: "prod", Stack: "web", Service: "app", State: deployer.StateActive, Deployment: "d1", Revision: 1}
		if err := db.CreateService(ctx, rec); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateService(ctx, rec); !errors.Is(err, deployer.ErrConflict) {
			t.Fatalf("second create: %v, want conflict", err)
		}
		rec.State = deployer.StateUpgrading
		if err := db.UpdateService(ctx, rec, deployer.StateActive); err != nil {
			t.Fatal(err)
		}
		if err := db.UpdateService(ctx, rec, deployer.StateActive); !errors.Is(err, ErrConflict) {
			t.Fatalf("stale update: %v, want conflict", err)
		}
		got, err := db.Service(ctx, "prod", "web", "app")
		if err != nil || got.State != deployer.StateUpgrading || got.UpdatedAt.IsZero() {
			t.Fatalf("service %+v %v", got, err)
		}
	})
}
