package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/internal/config"
	"github.com/dockmaster/dockmaster/internal/server"
	"github.com/dockmaster/dockmaster/internal/store"
)

// TestUserKeyMemberCommands drives the CLI against the real access API.
func TestUserKeyMemberCommands(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(dir, "dm.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.UpsertEnvironment(ctx, store.Environment{Name: "prod"})
	log := slog.New(slog.DiscardHandler)
	a, err := auth.New(auth.Options{Store: db, Config: config.Auth{}, StateDir: dir, Log: log, BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := a.CreateUser(ctx, "root", "root-password", true)
	if err != nil {
		t.Fatal(err)
	}
	key, err := a.CreateKey(ctx, admin.ID, "", "", "", "test")
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(log, nil)
	if err := srv.UseAccess(a, db, nil); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Engine)
	defer ts.Close()
	t.Setenv("DOCKMASTER_URL", ts.URL)
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
