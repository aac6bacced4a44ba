package auth

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/dockmaster/dockmaster/internal/config"
	"github.com/dockmaster/dockmaster/internal/store"
)

func newTestAuth(t *testing.T, cfg config.Auth, log *slog.Logger, now func() time.Time) (*Authenticator, *store.DB, string) {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(context.Background(), filepath.Join(dir, "dm.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	a, err := New(Options{Store: db, Config: cfg, StateDir: dir, Log: log, Now: now, BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	return a, db, dir
}

func TestCan(t *testing.T) {
	az := &Authorizer{}
	member := &Principal{UserID: 1, Name: "m", Roles: map[string]Role{"prod": RoleMember, "dev": RoleRestricted}}
	admin := &Principal{UserID: 2, Name: "a", Admin: true}
	envKey := &Principal{Name: "key:K", KeyEnv: "prod", Roles: map[string]Role{"prod": RoleOwner}}
	for _, c := range []struct {
		p    *Principal
		env  string
		perm Permission
		want bool
	}{
		{nil, "prod", PermView, false},
		{nil, "", PermAuthenticated, false},
		{member, "prod", PermDeploy, true},
		{member, "prod", PermManageMembers, false},
		{member, "dev", PermView, true},
		{member, "dev", PermViewSecrets, false}, // restricted: no env vars or secrets
		{member, "staging", PermView, false},
		{member, "", PermDeploy, true}, // on some environment
		{member, "", PermManageHosts, false},
		{member, "prod", PermAdmin, false},
		{admin, "anything", PermManageHosts, true},
		{admin, "", PermAdmin, true},
		{envKey, "prod", PermManageMembers, true},
		{envKey, "staging", PermView, false},
		{envKey, "", PermAccount, false},
		{member, "", PermAccount, true},
	} {
		if got := az.Can(c.p, c.env, c.perm); got != c.want {
			name := "nil"
			if c.p != nil {
				name = c.p.Name
			}
			t.Errorf("Can(%s, %q, %s) = %v, want %v", name, c.env, c.perm, got, c.want)
		}
	}
	if got := az.Environments(member, PermViewSecrets); len(got) != 1 || got[0] != "prod" {
		t.Errorf("Environments(member, view-secrets) = %v", got)
	}
	if got := az.Environments(admin, PermView); got != nil {
		t.Errorf("Environments(admin) = %v, want nil (all)", got)
	}
}

func TestPasswordLogin(t *testing.T) {
	a, _, _ := newTestAuth(t, config.Auth{}, nil, nil)
	ctx := context.Background()
	if _, err := a.CreateUser(ctx, "bob", "short", false); !errors.Is(err, ErrBadPassword) {
		t.Fatalf("short password: %v", err)
	}
	if _, err := a.CreateUser(ctx, "bad name!", "long-enough-pw", false); !errors.Is(err, ErrBadName) {
		t.Fatalf("bad name: %v", err)
	}
	if _, err := a.CreateUser(ctx, "bob", "correct-horse", false); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Login(ctx, "bob", "wrong-horse", "10.0.0.1"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := a.Login(ctx, "nobody", "correct-horse", "10.0.0.1"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("unknown user: %v", err)
	}
	s, err := a.Login(ctx, "bob", "correct-horse", "10.0.0.1")
	if err != nil || s.Cookie == "" || s.CSRFToken == "" || s.User.Name != "bob" {
		t.Fatalf("login: %+v %v", s, err)
	}
	p, err := a.sessionPrincipal(ctx, s.Cookie)
	if err != nil || p == nil || p.Name != "bob" || !p.ViaSession() {
		t.Fatalf("session: %+v %v", p, err)
	}
	// A new password ends old sessions.
	if err := a.SetPassword(ctx, s.User.ID, "battery-staple"); err != nil {
		t.Fatal(err)
	}
	if p, err := a.sessionPrincipal(ctx, s.Cookie); p != nil || err != nil {
		t.Fatalf("session after password change: %+v %v", p, err)
	}
}

func TestSessionExpires(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { return now }
	a, _, _ := newTestAuth(t, config.Auth{SessionTTL: config.Duration(time.Hour)}, nil, clock)
	ctx := context.Background()
	a.CreateUser(ctx, "bob", "correct-horse", false)
	s, err := a.Login(ctx, "bob", "correct-horse", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(59 * time.Minute)
	if p, _ := a.sessionPrincipal(ctx, s.Cookie); p == nil {
		t.Fatal("session gone before its hour")
	}
	now = now.Add(2 * time.Minute)
	if p, _ := a.sessionPrincipal(ctx, s.Cookie); p != nil {
		t.Fatal("session alive after its hour")
	}
}

func TestKeyStoredHashedShownOnce(t *testing.T) {
	a, db, _ := newTestAuth(t, config.Auth{}, nil, nil)
	ctx := context.Background()
	db.UpsertEnvironment(ctx, store.Environment{Name: "prod"})
	u, _ := a.CreateUser(ctx, "bob", "correct-horse", false)
	acct, err := a.CreateKey(ctx, u.ID, "", "", "laptop", "bob")
	if err != nil {
		t.Fatal(err)
	}
	env, err := a.CreateKey(ctx, 0, "prod", RoleMember, "jenkins", "bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateKey(ctx, u.ID, "prod", RoleMember, "", "bob"); err == nil {
		t.Fatal("a key for a user and an environment at once was accepted")
	}
	if _, err := a.CreateKey(ctx, 0, "prod", "god", "", "bob"); err == nil {
		t.Fatal("unknown role accepted")
	}
	stored, err := db.APIKey(ctx, acct.AccessKey)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(stored.SecretHash, []byte(acct.Secret)) || len(stored.SecretHash) != 32 {
		t.Fatalf("stored secret is not a sha256: %q", stored.SecretHash)
	}
	p, err := a.keyPrincipal(ctx, acct.AccessKey, acct.Secret)
	if err != nil || p.Name != "bob" || p.UserID != u.ID || p.KeyEnv != "" {
		t.Fatalf("account key principal: %+v %v", p, err)
	}
	p, err = a.keyPrincipal(ctx, env.AccessKey, env.Secret)
	if err != nil || p.KeyEnv != "prod" || p.UserID != 0 || p.Roles["prod"] != RoleMember || !strings.HasPrefix(p.Name, "key:") {
		t.Fatalf("env key principal: %+v %v", p, err)
	}
	if _, err := a.keyPrincipal(ctx, env.AccessKey, acct.Secret); !errors.Is(err, ErrBadKey) {
		t.Fatalf("wrong secret: %v", err)
	}
}

func TestBootstrapGeneratesPasswordFileOnce(t *testing.T) {
	var logs bytes.Buffer
	a, db, dir := newTestAuth(t, config.Auth{}, slog.New(slog.NewTextHandler(&logs, nil)), nil)
	ctx := context.Background()
	if err := a.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "initial-admin-password")
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v %v", st, err)
	}
	b, _ := os.ReadFile(path)
	pw := strings.TrimSpace(string(b))
	if len(pw) < 20 || strings.Contains(logs.String(), pw) || !strings.Contains(logs.String(), path) {
		t.Fatalf("log must name the file and not the password: %s", logs.String())
	}
	if _, err := a.Login(ctx, "admin", pw, "10.0.0.1"); err != nil {
		t.Fatalf("generated password does not log in: %v", err)
	}
	os.Remove(path)
	if err := a.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("second start wrote a new password although users exist")
	}
	if us, _ := db.Users(ctx); len(us) != 1 || !us[0].Admin {
		t.Fatalf("users %+v", us)
	}
	if st, err := os.Stat(filepath.Join(dir, "signing-key")); err != nil || st.Mode().Perm() != 0o600 || len(a.SigningKey()) < 32 {
		t.Fatalf("signing key file: %v %v", st, err)
	}
}

func TestBootstrapConfiguredPasswordIsReapplied(t *testing.T) {
	t.Setenv("DM_TEST_ADMIN_PW", "first-password")
	a, _, dir := newTestAuth(t, config.Auth{AdminUser: "root"}, nil, nil)
	ctx := context.Background()
	cfg, err := config.Parse("t.yaml", []byte("auth:\n  admin_user: root\n  admin_password: {env: DM_TEST_ADMIN_PW}\n"))
	if err != nil {
		t.Fatal(err)
	}
	a.cfg = cfg.Auth.WithDefaults()
	if err := a.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DM_TEST_ADMIN_PW", "second-password")
	if err := a.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Login(ctx, "root", "second-password", "10.0.0.1"); err != nil {
		t.Fatalf("reset password: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "initial-admin-password")); !os.IsNotExist(err) {
		t.Fatal("password file written although the password is configured")
	}
}

func TestLimiterBacksOff(t *testing.T) {
	l := newLimiter(5, 100)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for range 4 {
		l.fail("ip", now)
	}
	if w := l.wait("ip", now); w != 0 {
		t.Fatalf("locked after 4 failures: %v", w)
	}
	l.fail("ip", now)
	if w := l.wait("ip", now); w != time.Minute {
		t.Fatalf("after 5 failures wait %v, want 1m", w)
	}
	now = now.Add(time.Minute)
	for range 5 {
		l.fail("ip", now)
	}
	if w := l.wait("ip", now); w != 2*time.Minute {
		t.Fatalf("second lock-out %v, want 2m (doubling)", w)
	}
	if w := l.wait("other", now); w != 0 {
		t.Fatalf("other key locked: %v", w)
	}
	l.reset("ip")
	if w := l.wait("ip", now); w != 0 {
		t.Fatalf("after reset: %v", w)
	}
	// Failures spread over more than a minute do not lock.
	for i := range 10 {
		l.fail("slow", now.Add(time.Duration(i)*20*time.Second))
	}
	if w := l.wait("slow", now.Add(200*time.Second)); w != 0 {
		t.Fatalf("slow failures locked: %v", w)
	}
}

func TestLimiterStaysBoundedAndKeepsLocks(t *testing.T) {
	l := newLimiter(1, 10)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.fail("victim", now) // locked
	for i := range 1000 {
		l.fail("flood-"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+time.Duration(i).String(), now.Add(time.Duration(i)*time.Millisecond))
	}
	if w := l.wait("victim", now.Add(2*time.Second)); w == 0 {
		t.Fatal("a flood of new keys washed out the lock")
	}
	if len(l.m) > 10 {
		t.Fatalf("limiter grew to %d keys", len(l.m))
	}
}
