package config

import (
	"errors"
	"strings"
	"testing"
)

func TestStoreSetting(t *testing.T) {
	for _, c := range []struct {
		name, yaml string
		line       int
		key, msg   string
	}{
		{"no database", "store: postgres://u:secretpw@db:5432\nauth: {signing_key: k}\n", 1, "store", "no database"},
		{"no host", "store: postgres:///dm\nauth: {signing_key: k}\n", 1, "store", "no host"},
		{"replicas need one signing key", "store: postgres://u:secretpw@db:5432/dm\n", 0, "auth.signing_key", "same key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("dm.yaml", []byte(c.yaml))
			var ce *Error
			if !errors.As(err, &ce) || ce.Line != c.line || ce.Key != c.key || !strings.Contains(ce.Msg, c.msg) {
				t.Fatalf("got %#v (%v), want line %d key %q msg ~%q", ce, err, c.line, c.key, c.msg)
			}
			if strings.Contains(err.Error(), "secretpw") {
				t.Fatalf("the password leaks into the error: %v", err)
			}
		})
	}
	cfg, err := Parse("dm.yaml", []byte("store: postgresql://u:p@127.0.0.1:5432/dm?sslmode=disable\nauth: {signing_key: k}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !StoreIsPostgres(cfg.Store) || cfg.StateDir() != "./data" {
		t.Fatalf("postgres store: %v, state dir %q", StoreIsPostgres(cfg.Store), cfg.StateDir())
	}
	cfg, err = Parse("dm.yaml", []byte("store: /var/lib/dm/dm.db\n"))
	if err != nil || StoreIsPostgres(cfg.Store) || cfg.StateDir() != "/var/lib/dm" {
		t.Fatalf("sqlite store: %v, state dir %q", err, cfg.StateDir())
	}
	cfg, err = Parse("dm.yaml", []byte("store: /var/lib/dm/dm.db\ndata_dir: /srv/dm\n"))
	if err != nil || cfg.StateDir() != "/srv/dm" {
		t.Fatalf("data_dir: %v, state dir %q", err, cfg.StateDir())
	}
}
