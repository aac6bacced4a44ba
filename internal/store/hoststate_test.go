package store

import (
	"context"
	"errors"
	"testing"
)

func TestSetHostState(t *testing.T) {
	forEachStore(t, testSetHostState)
}

func testSetHostState(t *testing.T, db *DB) {
	ctx := context.Background()
	if err := db.UpsertEnvironment(ctx, Environment{Name: "prod"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.UpsertHost(ctx, Host{Environment: "prod", Name: "h1", Endpoint: "unix:///x.sock"}); err != nil {
		t.Fatal(err)
	}
	state := func() string {
		hs, err := db.Hosts(ctx, "prod")
		if err != nil || len(hs) != 1 {
			t.Fatalf("hosts %v %v", hs, err)
		}
		return hs[0].State
	}
	if got := state(); got != HostActive {
		t.Fatalf("new host state %q", got)
	}
	for _, step := range []struct {
		state   string
		changed bool
	}{{HostDraining, true}, {HostDraining, false}, {HostActive, true}} {
		changed, err := db.SetHostState(ctx, "prod", "h1", step.state)
		if err != nil || changed != step.changed || state() != step.state {
			t.Fatalf("SetHostState(%s) = %v, %v; state %q", step.state, changed, err, state())
		}
	}
	if _, err := db.SetHostState(ctx, "prod", "nope", HostDraining); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown host: %v", err)
	}
	if _, err := db.SetHostState(ctx, "prod", "h1", "broken"); err == nil {
		t.Fatal("bad state accepted")
	}
}
