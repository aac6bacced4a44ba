// Package pgtest gives tests a fresh PostgreSQL database of their own on
// the server named by DOCKMASTER_TEST_POSTGRES (`make test` sets it;
// scripts/setup.sh starts that server). Without the variable the test is
// skipped with a message saying how to run it.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvVar names the admin URL of the test server. Its role must be allowed
// to create databases.
const EnvVar = "DOCKMASTER_TEST_POSTGRES"

// URL creates the database t_<random>, drops it when the test ends, and
// returns its URL. Each test (and each package running in parallel) thus
// has its own schema, advisory locks and sequences.
func URL(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(EnvVar)
	if admin == "" {
		t.Skipf("no PostgreSQL for this test: set %s=postgres://user:pass@127.0.0.1:5432/db?sslmode=disable (make test does)", EnvVar)
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("%s: %v", EnvVar, err)
	}
	var b [6]byte
	rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("%s: connect: %v (is the server running? scripts/setup.sh starts one)", EnvVar, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("%s: create database %s: %v", EnvVar, name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		// FORCE: a replica killed by the test may leave a session behind.
		// FORCE cannot end an autovacuum worker's session (another role),
		// which ends by itself: try again for a while, and at worst leave
		// the scratch database to the server, which is not the test's fault.
		for try := 0; ; try++ {
			_, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			if err == nil {
				return
			}
			if try == 20 || ctx.Err() != nil {
				t.Logf("drop database %s: %v (left behind)", name, err)
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
	})
	u.Path = "/" + name
	return u.String()
}
