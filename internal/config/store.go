package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
)

// StoreIsPostgres reports whether store names a PostgreSQL database
// (postgres:// or postgresql://) rather than an SQLite file.
func StoreIsPostgres(store string) bool {
	return strings.HasPrefix(store, "postgres://") || strings.HasPrefix(store, "postgresql://")
}

// StateDir is where local state files go: data_dir, else the SQLite
// file's directory, else (PostgreSQL) ./data.
func (c *Config) StateDir() string {
	switch {
	case c.DataDir != "":
		return c.DataDir
	case StoreIsPostgres(c.Store):
		return "./data"
	default:
		return filepath.Dir(c.Store)
	}
}

// validateStore checks the store setting. A PostgreSQL store is shared by
// replicas, so they must also share the key that signs approval links and
// sessions' companions: a key generated per replica would make one
// replica's links invalid on the other.
func (c *Config) validateStore(at func(msg string, path ...string) error) error {
	if c.Store == "" {
		return at("must not be empty", "store")
	}
	if !StoreIsPostgres(c.Store) {
		return nil
	}
	u, err := url.Parse(c.Store)
	if err != nil {
		// url's message quotes the URL, password included: say less.
		return at("not a valid postgres:// URL", "store")
	}
	if u.Host == "" {
		return at(fmt.Sprintf("want postgres://user:password@host:5432/database, got %s (no host)", u.Redacted()), "store")
	}
	if strings.Trim(u.Path, "/") == "" {
		return at(fmt.Sprintf("want postgres://user:password@host:5432/database, got %s (no database)", u.Redacted()), "store")
	}
	if c.Auth.SigningKey.IsZero() {
		return at("must be set when store is PostgreSQL: every replica must sign approval links with the same key", "auth", "signing_key")
	}
	return nil
}
