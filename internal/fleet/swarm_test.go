package fleet_test

import (
	"context"
	"errors"
	"testing"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/internal/fleet"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/internal/store/storetest"
)

// A Swarm environment gets a *deployer.Swarm from Target (rebuilt when its
// manager changes) and ErrSwarm from Deployer; a standalone one gets its
// *deployer.Deployer from both.
func TestTargetPicksSwarmOrHosts(t *testing.T) {
	ctx := context.Background()
	db := storetest.Open(t)
	for _, e := range []store.Environment{{Name: "sw", SwarmManager: "tcp://127.0.0.1:1"}, {Name: "std"}} {
		if err := db.UpsertEnvironment(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	f := fleet.New(fleet.Options{Store: db})
	t.Cleanup(f.Close)

	tg, err := f.Target(ctx, "sw")
	if _, ok := tg.(*deployer.Swarm); err != nil || !ok {
		t.Fatalf("Target(sw) = %T, %v; want *deployer.Swarm", tg, err)
	}
	if again, _ := f.Target(ctx, "sw"); again != tg {
		t.Error("Target(sw) built a second client for the same manager")
	}
	if _, err := f.Deployer(ctx, "sw"); !errors.Is(err, fleet.ErrSwarm) {
		t.Errorf("Deployer(sw) = %v, want ErrSwarm", err)
	}
	if err := db.UpsertEnvironment(ctx, store.Environment{Name: "sw", SwarmManager: "tcp://127.0.0.1:2"}); err != nil {
		t.Fatal(err)
	}
	if moved, _ := f.Target(ctx, "sw"); moved == tg {
		t.Error("Target(sw) kept the old manager's client")
	}

	tg, err = f.Target(ctx, "std")
	if _, ok := tg.(*deployer.Deployer); err != nil || !ok {
		t.Fatalf("Target(std) = %T, %v; want *deployer.Deployer", tg, err)
	}
	if _, err := f.Target(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Target(nope) = %v, want ErrNotFound", err)
	}
}
