package deployer_test

import (
	"context"
	"errors"
	"testing"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/internal/store/storetest"
)

func TestStoreRevisionsAndTransitions(t *testing.T) {
	ctx := context.Background()
	db := storetest.Open(t)
	spec := deployer.StackSpec{Name: "app", Services: []deployer.ServiceSpec{{Name: "web", Image: "web:1", Scale: 2}}}
	for i, v := range []string{"1.0.0", "1.0.1"} {
		n, err := db.AddRevision(ctx, deployer.Revision{Env: "prod", Stack: "app", Version: v, Spec: spec,
			Compose: "services: {}", Variables: map[string]string{"TAG": v}, CreatedBy: "DEPLOY-" + v})
		if err != nil || n != i+1 {
			t.Fatalf("AddRevision = %d, %v; want %d", n, err, i+1)
		}
	}
	revs, err := db.Revisions(ctx, "prod", "app")
	if err != nil || len(revs) != 2 || revs[1].Variables["TAG"] != "1.0.1" || revs[0].Spec.Services[0].Scale != 2 || revs[1].CreatedBy != "DEPLOY-1.0.1" {
		t.Fatalf("Revisions = %+v, %v", revs, err)
	}
	if _, err := db.Revision(ctx, "prod", "app", 9); !errors.Is(err, deployer.ErrNotFound) || !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Revision(9) err = %v, want not found", err)
	}

	rec := deployer.ServiceRecord{Env: "prod", Stack: "app", Service: "web", State: deployer.StateActive,
		Spec: spec.Services[0], Deployment: "d1", Version: "1.0.0", Revision: 1}
	if err := db.CreateService(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateService(ctx, rec); !errors.Is(err, deployer.ErrConflict) {
		t.Fatalf("second CreateService err = %v, want conflict", err)
	}
	old := rec.Spec
	up := rec
	up.State, up.Old, up.OldDeployment, up.Deployment = deployer.StateUpgrading, &old, "d1", "d2"
	if err := db.UpdateService(ctx, up, deployer.StateActive); err != nil {
		t.Fatal(err)
	}
	// A second writer still believing the service active loses.
	if err := db.UpdateService(ctx, up, deployer.StateActive); !errors.Is(err, deployer.ErrConflict) || !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale UpdateService err = %v, want conflict", err)
	}
	got, err := db.Service(ctx, "prod", "app", "web")
	if err != nil || got.State != deployer.StateUpgrading || got.Old == nil || got.Old.Image != "web:1" || got.OldDeployment != "d1" {
		t.Fatalf("Service = %+v, %v", got, err)
	}
	list, err := db.Services(ctx, "prod", "")
	if err != nil || len(list) != 1 {
		t.Fatalf("Services = %v, %v", list, err)
	}
	if _, err := db.Service(ctx, "prod", "app", "nope"); !errors.Is(err, deployer.ErrNotFound) {
		t.Fatalf("missing service err = %v", err)
	}
}
