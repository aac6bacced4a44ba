package store

import (
	"context"
	"testing"
)

// The Swarm manager of an environment is stored, read back, and changed
// (or cleared) by the config sync's upsert.
func TestEnvironmentSwarmManager(t *testing.T) {
	db, _ := openTemp(t)
	ctx := context.Background()
	if err := db.UpsertEnvironment(ctx, Environment{Name: "prod", SwarmManager: "tcp://mgr:2375"}); err != nil {
		t.Fatal(err)
	}
	e, err := db.Environment(ctx, "prod")
	if err != nil || e.SwarmManager != "tcp://mgr:2375" {
		t.Fatalf("environment = %+v, %v", e, err)
	}
	if err := db.UpsertEnvironment(ctx, Environment{Name: "prod", Description: "p"}); err != nil {
		t.Fatal(err)
	}
	es, err := db.Environments(ctx)
	if err != nil || len(es) != 1 || es[0].SwarmManager != "" || es[0].Description != "p" {
		t.Fatalf("environments = %+v, %v", es, err)
	}
}
