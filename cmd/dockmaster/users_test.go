package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/internal/config"
	"github.com/dockmaster/dockmaster/internal/server"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/internal/store/storetest"
)

// TestUserKeyMemberCommands drives the CLI against the real access API.
func TestUserKeyMemberCommands(t *testing.T) {
	ctx := context.Background()
	db, a, admin := startAccessAPI(t)
	db.UpsertEnvironment(ctx, store.Environment{Name: "prod"})
	key, err := a.CreateKey(ctx, admin.ID, "", "", "", "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKMASTER_ACCESS_KEY", key.AccessKey)
	t.Setenv("DOCKMASTER_SECRET_KEY", key.Secret)

	var out, errb bytes.Buffer
	if err := runUserWith([]string{"create", "bob", "--password-stdin"}, strings.NewReader("bobs-password\n"), &out, &errb); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Login(ctx, "bob", "bobs-password", "cli-test"); err != nil {
		t.Fatalf("bob cannot log in with the piped password: %v", err)
	}
	if err := runMember([]string{"add", "--env", "prod", "--user", "bob", "--role", "owner"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if roles, _ := db.UserRoles(ctx, 2); roles["prod"] != "owner" {
		t.Fatalf("bob's roles: %v", roles)
	}
	out.Reset()
	if err := runKey([]string{"create", "--env", "prod", "--role", "read-only"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "access key: DK") || !strings.Contains(out.String(), "secret key: ") {
		t.Fatalf("key output: %s", out.String())
	}
	err = runMember([]string{"add", "--env", "prod", "--user", "nobody", "--role", "member"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "nobody") {
		t.Fatalf("missing user: %v", err)
	}
	if code := exitCode(runKey([]string{"create"}, &out, &errb), &errb); code != exitUsage {
		t.Fatalf("key create without scope: exit %d, want %d", code, exitUsage)
	}
}

// TestFirstKeyFromPassword: with no API key yet, "key create --user
// --password-stdin" signs in with the password and mints one that works.
func TestFirstKeyFromPassword(t *testing.T) {
	ctx := context.Background()
	db, _, _ := startAccessAPI(t)
	t.Setenv("DOCKMASTER_ACCESS_KEY", "")
	t.Setenv("DOCKMASTER_SECRET_KEY", "")

	var out, errb bytes.Buffer
	err := runKeyWith([]string{"create", "--account", "--user", "root", "--password-stdin"}, strings.NewReader("wrong\n"), &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong password: %v, want a 401", err)
	}
	if code := exitCode(runKeyWith([]string{"create", "--account", "--user", "root"}, strings.NewReader(""), &out, &errb), &errb); code != exitUsage {
		t.Fatalf("--user without --password-stdin: exit %d, want %d", code, exitUsage)
	}
	if err := runKeyWith([]string{"create", "--account", "--user", "root", "--password-stdin", "-o", "json"}, strings.NewReader("root-password\n"), &out, &errb); err != nil {
		t.Fatal(err)
	}
	var key struct {
		AccessKey string `json:"access_key"`
		Secret    string `json:"secret"`
	}
	if err := json.Unmarshal(out.Bytes(), &key); err != nil || key.AccessKey == "" || key.Secret == "" {
		t.Fatalf("key create -o json: %q (%v)", out.String(), err)
	}
	t.Setenv("DOCKMASTER_ACCESS_KEY", key.AccessKey)
	t.Setenv("DOCKMASTER_SECRET_KEY", key.Secret)
	out.Reset()
	if err := runUserWith([]string{"create", "bob", "-o", "json"}, strings.NewReader(""), &out, &errb); err != nil {
		t.Fatalf("the new key does not work: %v", err)
	}
	var bob struct{ Name, Password string }
	if err := json.Unmarshal(out.Bytes(), &bob); err != nil || bob.Name != "bob" || len(bob.Password) < 20 {
		t.Fatalf("user create bob -o json: %q (%v), want the name and the generated password", out.String(), err)
	}
	var sessions int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sessions`).Scan(&sessions); err != nil {
		t.Fatal(err)
	}
	if sessions != 0 {
		t.Fatalf("%d sessions left after key create: it must sign out", sessions)
	}
}

// startAccessAPI serves the real access API on a new store with one admin,
// root (password root-password), and points DOCKMASTER_URL at it.
func startAccessAPI(t *testing.T) (*store.DB, *auth.Authenticator, store.User) {
	t.Helper()
	db := storetest.Open(t)
	log := slog.New(slog.DiscardHandler)
	a, err := auth.New(auth.Options{Store: db, Config: config.Auth{}, StateDir: t.TempDir(), Log: log, BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := a.CreateUser(context.Background(), "root", "root-password", true)
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(log, nil)
	if err := srv.UseAccess(a, db, nil); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Engine)
	t.Cleanup(ts.Close)
	t.Setenv("DOCKMASTER_URL", ts.URL)
	return db, a, admin
}
