package store

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

func TestRegistrationTokens(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		for _, e := range []string{"prod", "staging"} {
			if err := db.UpsertEnvironment(ctx, Environment{Name: e}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.CreateRegistrationToken(ctx, RegistrationToken{Environment: "nope", Hash: []byte("x"), Sealed: []byte("s"), ExpiresAt: now}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown environment: %v", err)
		}
		a, err := db.CreateRegistrationToken(ctx, RegistrationToken{Environment: "prod", Hash: []byte("hash-a"), Sealed: []byte("sa"), CreatedBy: "olga", ExpiresAt: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.CreateRegistrationToken(ctx, RegistrationToken{Environment: "prod", Hash: []byte("hash-b"), Sealed: []byte("sb"), ExpiresAt: now.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		ts, err := db.RegistrationTokens(ctx, "prod", now.Add(2*time.Minute))
		if err != nil || len(ts) != 1 || ts[0].ID != a.ID || ts[0].CreatedBy != "olga" || !ts[0].ExpiresAt.Equal(now.Add(time.Hour)) {
			t.Fatalf("live tokens after b expired: %+v %v", ts, err)
		}
		if got, err := db.RegistrationTokenByHash(ctx, []byte("hash-a"), now); err != nil || got.Environment != "prod" || !bytes.Equal(got.Sealed, []byte("sa")) {
			t.Fatalf("by hash: %+v %v", got, err)
		}
		if _, err := db.RegistrationTokenByHash(ctx, []byte("hash-b"), now.Add(time.Minute)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("expired token found: %v", err)
		}
		if err := db.RevokeRegistrationToken(ctx, "staging", a.ID, now); !errors.Is(err, ErrNotFound) {
			t.Fatalf("revoke through another environment: %v", err)
		}
		if err := db.RevokeRegistrationToken(ctx, "prod", a.ID, now); err != nil {
			t.Fatal(err)
		}
		if _, err := db.RegistrationTokenByHash(ctx, []byte("hash-a"), now); !errors.Is(err, ErrNotFound) {
			t.Fatalf("revoked token found: %v", err)
		}
		if err := db.RevokeRegistrationToken(ctx, "prod", a.ID, now); !errors.Is(err, ErrNotFound) {
			t.Fatalf("revoke twice: %v", err)
		}
	})
}

func TestRegisterHost(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		if err := db.UpsertEnvironment(ctx, Environment{Name: "prod"}); err != nil {
			t.Fatal(err)
		}
		h := Host{Environment: "prod", Name: "h1", Endpoint: "tcp://10.0.0.1:2376", Address: "10.0.0.1", Labels: map[string]string{"zone": "a"}}
		same := func(want []byte) func([]byte) bool { return func(b []byte) bool { return bytes.Equal(b, want) } }
		steps := []struct {
			name    string
			h       Host
			tls     []byte
			changed bool
		}{
			{"new", h, []byte("tls-1"), true},
			{"again", h, []byte("tls-1"), false},
			{"new certificates", h, []byte("tls-2"), true},
			{"label", Host{Environment: "prod", Name: "h1", Endpoint: h.Endpoint, Address: h.Address, Labels: map[string]string{"zone": "b"}}, []byte("tls-2"), true},
			{"label again", Host{Environment: "prod", Name: "h1", Endpoint: h.Endpoint, Address: h.Address, Labels: map[string]string{"zone": "b"}}, []byte("tls-2"), false},
		}
		for _, s := range steps {
			changed, err := db.RegisterHost(ctx, s.h, s.tls, same(s.tls))
			if err != nil || changed != s.changed {
				t.Fatalf("%s: changed %v, %v; want %v", s.name, changed, err, s.changed)
			}
			got, err := db.HostTLS(ctx, "prod", h.Endpoint)
			if err != nil || !bytes.Equal(got, s.tls) {
				t.Fatalf("%s: stored TLS %q %v", s.name, got, err)
			}
		}
		hs, err := db.Hosts(ctx, "prod")
		if err != nil || len(hs) != 1 || hs[0].Labels["zone"] != "b" {
			t.Fatalf("hosts %+v %v", hs, err)
		}
		other := Host{Environment: "prod", Name: "h1", Endpoint: "tcp://10.0.0.2:2376"}
		if _, err := db.RegisterHost(ctx, other, nil, same(nil)); !errors.Is(err, ErrConflict) {
			t.Fatalf("same name, other endpoint: %v, want ErrConflict", err)
		}
		if _, err := db.HostTLS(ctx, "prod", "tcp://nowhere:1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("HostTLS of unknown host: %v", err)
		}
	})
}

func TestSSOUser(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		for _, e := range []string{"prod", "staging"} {
			if err := db.UpsertEnvironment(ctx, Environment{Name: e}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.CreateUser(ctx, User{Name: "admin", PasswordHash: "x", Admin: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SSOUser(ctx, "https://idp", "sub-1", "admin", false, nil); !errors.Is(err, ErrConflict) {
			t.Fatalf("SSO login named like a local user: %v, want ErrConflict", err)
		}
		u, err := db.SSOUser(ctx, "https://idp", "sub-1", "alice", false, map[string]string{"prod": "owner", "gone": "member"})
		if err != nil {
			t.Fatal(err)
		}
		roles, _ := db.UserRoles(ctx, u.ID)
		if len(roles) != 1 || roles["prod"] != "owner" {
			t.Fatalf("roles %v", roles)
		}
		u2, err := db.SSOUser(ctx, "https://idp", "sub-1", "alice", false, map[string]string{"staging": "read-only"})
		if err != nil || u2.ID != u.ID {
			t.Fatalf("second login: %+v %v", u2, err)
		}
		roles, _ = db.UserRoles(ctx, u.ID)
		if len(roles) != 1 || roles["staging"] != "read-only" {
			t.Fatalf("roles after the groups changed: %v", roles)
		}
		if _, err := db.SSOUser(ctx, "https://other-idp", "sub-1", "alice", false, nil); !errors.Is(err, ErrConflict) {
			t.Fatalf("other issuer, same name: %v", err)
		}
	})
}

func TestCreateEnvironment(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		if err := db.CreateEnvironment(ctx, Environment{Name: "qa", Description: "testers"}); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateEnvironment(ctx, Environment{Name: "qa"}); !errors.Is(err, ErrConflict) {
			t.Fatalf("twice: %v, want ErrConflict", err)
		}
		if e, err := db.Environment(ctx, "qa"); err != nil || e.Description != "testers" {
			t.Fatalf("%+v %v", e, err)
		}
	})
}
