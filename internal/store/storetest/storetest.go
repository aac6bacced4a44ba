// Package storetest opens throwaway stores for other packages' tests.
package storetest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/dockmaster/dockmaster/internal/store"
)

// Open opens a fresh SQLite store in t's temporary directory, closed when t
// ends.
func Open(t testing.TB) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "dm.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
