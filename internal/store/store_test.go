package store

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func openTemp(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dm.db")
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

func TestOpenMigratesAndSetsPragmas(t *testing.T) {
	db, path := openTemp(t)
	ctx := context.Background()
	var v int
	if err := db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil || v != SchemaVersion() {
		t.Fatalf("schema version %d (%v), want %d", v, err, SchemaVersion())
	}
	var mode string
	if err := db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode %q %v", mode, err)
	}
	var fk int
	if err := db.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Fatalf("foreign_keys %d %v", fk, err)
	}
	// Reopening applies nothing twice.
	db.Close()
	db2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	var n int
	db2.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&n)
	if n != len(mustMigrations(t)) {
		t.Fatalf("%d migrations recorded, want %d", n, len(mustMigrations(t)))
	}
}

func mustMigrations(t *testing.T) []migration {
	ms, err := loadMigrations(SQLite)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func TestRefusesNewerSchema(t *testing.T) {
	db, path := openTemp(t)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `INSERT INTO schema_migrations(version, name) VALUES (9999, '9999_future.sql')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err := Open(ctx, path)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("want ErrSchemaTooNew, got %v", err)
	}
	if !strings.Contains(err.Error(), "9999") || !strings.Contains(err.Error(), path) {
		t.Fatalf("message should name the versions and file: %v", err)
	}
}

func TestHostRegistrationIsIdempotent(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		if err := db.UpsertEnvironment(ctx, Environment{Name: "prod"}); err != nil {
			t.Fatal(err)
		}
		h := Host{Environment: "prod", Name: "h1", Endpoint: "tcp://10.0.0.1:2376", Labels: map[string]string{"zone": "a"}}
		if changed, err := db.UpsertHost(ctx, h); err != nil || !changed {
			t.Fatalf("first: changed=%v err=%v", changed, err)
		}
		if changed, err := db.UpsertHost(ctx, h); err != nil || changed {
			t.Fatalf("second: changed=%v err=%v", changed, err)
		}
		h.Labels["zone"] = "b"
		if changed, err := db.UpsertHost(ctx, h); err != nil || !changed {
			t.Fatalf("label change: changed=%v err=%v", changed, err)
		}
		hosts, err := db.Hosts(ctx, "prod")
		if err != nil || len(hosts) != 1 || hosts[0].Labels["zone"] != "b" {
			t.Fatalf("hosts %+v %v", hosts, err)
		}
		if _, err := db.Environment(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("want ErrNotFound, got %v", err)
		}
	})
}
