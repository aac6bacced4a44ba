package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestAuditQuery(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		for i, e := range []AuditEntry{
			{Actor: "ann", Action: "deploy", Environment: "prod", Target: "web:1.2"},
			{Actor: "bob", Action: "deploy", Environment: "staging", Target: "web:1.3", Result: "failed", Detail: "no host fits"},
			{Actor: "ann", Action: "member.set", Environment: "staging", Target: "bob=member"},
			{Actor: "admin", Action: "user.create", Target: "ann"},
		} {
			e.At = at.Add(time.Duration(i) * time.Second)
			e.Source = "10.0.0.9"
			if err := db.Audit(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		get := func(q AuditQuery) []string {
			t.Helper()
			es, err := db.AuditLog(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, e := range es {
				out = append(out, e.Actor+"/"+e.Action+"/"+e.Result)
			}
			return out
		}
		for name, c := range map[string]struct {
			q    AuditQuery
			want []string
		}{
			"all, newest first": {AuditQuery{}, []string{"admin/user.create/ok", "ann/member.set/ok", "bob/deploy/failed", "ann/deploy/ok"}},
			"env":               {AuditQuery{Environment: "staging"}, []string{"ann/member.set/ok", "bob/deploy/failed"}},
			"actor and action":  {AuditQuery{Actor: "ann", Action: "deploy"}, []string{"ann/deploy/ok"}},
			"visible envs":      {AuditQuery{Envs: []string{"prod"}}, []string{"ann/deploy/ok"}},
			"no visible env":    {AuditQuery{Envs: []string{}}, nil},
			"limit":             {AuditQuery{Limit: 1}, []string{"admin/user.create/ok"}},
		} {
			got := get(c.q)
			if len(got) != len(c.want) {
				t.Errorf("%s: %v, want %v", name, got, c.want)
				continue
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("%s: %v, want %v", name, got, c.want)
					break
				}
			}
		}
		es, _ := db.AuditLog(ctx, AuditQuery{Actor: "bob"})
		if len(es) != 1 || !es[0].At.Equal(at.Add(time.Second)) || es[0].Source != "10.0.0.9" || es[0].Detail != "no host fits" {
			t.Fatalf("entry round trip: %+v", es)
		}
	})
}

func TestUsersKeysSessions(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		if err := db.UpsertEnvironment(ctx, Environment{Name: "prod"}); err != nil {
			t.Fatal(err)
		}
		u, err := db.CreateUser(ctx, User{Name: "ann", PasswordHash: "$2a$hash"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.CreateUser(ctx, User{Name: "ann"}); !errors.Is(err, ErrConflict) {
			t.Fatalf("duplicate user: %v", err)
		}
		if _, err := db.UserByName(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing user: %v", err)
		}
		if err := db.SetMembership(ctx, "prod", u.ID, "member"); err != nil {
			t.Fatal(err)
		}
		if err := db.SetMembership(ctx, "prod", u.ID, "owner"); err != nil {
			t.Fatal(err)
		}
		if err := db.SetMembership(ctx, "nowhere", u.ID, "owner"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("membership of a missing env: %v", err)
		}
		if err := db.SetMembership(ctx, "prod", u.ID, "boss"); err == nil {
			t.Fatal("unknown role stored")
		}
		if roles, _ := db.UserRoles(ctx, u.ID); roles["prod"] != "owner" || len(roles) != 1 {
			t.Fatalf("roles %v", roles)
		}
		if _, err := db.CreateAPIKey(ctx, APIKey{AccessKey: "K1", SecretHash: []byte("h"), UserID: u.ID, Environment: "prod", Role: "member"}); err == nil {
			t.Fatal("key with both a user and an environment stored")
		}
		if _, err := db.CreateAPIKey(ctx, APIKey{AccessKey: "K2", SecretHash: []byte("h"), Environment: "prod", Role: "member"}); err != nil {
			t.Fatal(err)
		}
		if ks, _ := db.APIKeys(ctx, 0, "prod"); len(ks) != 1 || ks[0].Role != "member" {
			t.Fatalf("env keys %+v", ks)
		}
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		if err := db.CreateSession(ctx, Session{IDHash: []byte("s1"), UserID: u.ID, CSRFToken: "c", ExpiresAt: now.Add(time.Hour)}, now); err != nil {
			t.Fatal(err)
		}
		if s, err := db.Session(ctx, []byte("s1"), now.Add(59*time.Minute)); err != nil || s.CSRFToken != "c" {
			t.Fatalf("live session: %+v %v", s, err)
		}
		if _, err := db.Session(ctx, []byte("s1"), now.Add(time.Hour)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("expired session: %v", err)
		}
		// Deleting the environment drops its memberships and keys.
		if _, err := db.ExecContext(ctx, `DELETE FROM environments WHERE name = 'prod'`); err != nil {
			t.Fatal(err)
		}
		if _, err := db.APIKey(ctx, "K2"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("key of a deleted env: %v", err)
		}
	})
}
