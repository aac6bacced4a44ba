package store

import (
	"context"
	"io/fs"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/dockmaster/dockmaster/internal/store/pgtest"
)

// forEachStore runs f on a fresh, migrated store of each dialect: an
// SQLite file in a temp dir, and a PostgreSQL database of its own (skipped
// without DOCKMASTER_TEST_POSTGRES).
func forEachStore(t *testing.T, f func(t *testing.T, db *DB)) {
	t.Run("sqlite", func(t *testing.T) {
		db, _ := openTemp(t)
		f(t, db)
	})
	t.Run("postgres", func(t *testing.T) {
		f(t, openPostgresTemp(t))
	})
}

func openPostgresTemp(t testing.TB) *DB {
	t.Helper()
	db, err := Open(context.Background(), pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestRebind(t *testing.T) {
	for in, want := range map[string]string{
		`SELECT 1`: `SELECT 1`,
		`SELECT a FROM t WHERE a = ? AND b IN (?,?)`:    `SELECT a FROM t WHERE a = $1 AND b IN ($2,$3)`,
		`SELECT '?', "a?" FROM t WHERE x = ? -- why?\n`: `SELECT '?', "a?" FROM t WHERE x = $1 -- why?\n`,
		"-- what?\nSELECT ?":                            "-- what?\nSELECT $1",
		`SELECT 'it''s ?' WHERE y = ?`:                  `SELECT 'it''s ?' WHERE y = $1`,
	} {
		if got := rebind(in); got != want {
			t.Errorf("rebind(%q) = %q, want %q", in, got, want)
		}
	}
}

var (
	createTableRe = regexp.MustCompile(`(?is)CREATE TABLE (\w+) \((.*?)\n\);`)
	alterAddRe    = regexp.MustCompile(`(?i)ALTER TABLE (\w+) ADD COLUMN (\w+)`)
	columnRe      = regexp.MustCompile(`(?m)^\s+(\w+)\s+[A-Z]`)
	indexRe       = regexp.MustCompile(`(?i)CREATE (?:UNIQUE )?INDEX (\w+)`)
)

// schemaOf lists "table.column" and "index name" declared by a set of
// migrations, version by version.
func schemaOf(t *testing.T, d Dialect) (versions []int, names map[int][]string) {
	t.Helper()
	ms, err := loadMigrations(d)
	if err != nil {
		t.Fatal(err)
	}
	names = map[int][]string{}
	for _, m := range ms {
		versions = append(versions, m.version)
		var out []string
		for _, ct := range createTableRe.FindAllStringSubmatch(m.sql, -1) {
			for _, c := range columnRe.FindAllStringSubmatch(ct[2], -1) {
				if up := strings.ToUpper(c[1]); up == "PRIMARY" || up == "UNIQUE" || up == "CHECK" {
					continue
				}
				out = append(out, ct[1]+"."+c[1])
			}
		}
		for _, a := range alterAddRe.FindAllStringSubmatch(m.sql, -1) {
			out = append(out, a[1]+"."+a[2])
		}
		for _, ix := range indexRe.FindAllStringSubmatch(m.sql, -1) {
			out = append(out, "index "+ix[1])
		}
		sort.Strings(out)
		names[m.version] = out
	}
	return versions, names
}

// TestMigrationSetsMatch: migrations_pg is a translation of migrations,
// with the same versions, tables, columns and indexes.
func TestMigrationSetsMatch(t *testing.T) {
	sv, sn := schemaOf(t, SQLite)
	pv, pn := schemaOf(t, Postgres)
	if !slices.Equal(sv, pv) {
		t.Fatalf("migration versions differ: sqlite %v, postgres %v", sv, pv)
	}
	for _, v := range sv {
		if len(sn[v]) == 0 {
			t.Errorf("version %d: found no tables or indexes in the SQLite migration (parser out of date?)", v)
		}
		if !slices.Equal(sn[v], pn[v]) {
			t.Errorf("version %d differs:\n sqlite:   %v\n postgres: %v", v, sn[v], pn[v])
		}
	}
	entries, _ := fs.ReadDir(migrationFS, "migrations_pg")
	if len(entries) != len(sv) {
		t.Errorf("%d files in migrations_pg, want %d", len(entries), len(sv))
	}
}

// TestPostgresMigratesOnceUnderConcurrentOpens: replicas starting
// together migrate one after the other and apply nothing twice.
func TestPostgresMigratesOnceUnderConcurrentOpens(t *testing.T) {
	url := pgtest.URL(t)
	ctx := context.Background()
	errs := make(chan error, 3)
	dbs := make(chan *DB, 3)
	for range 3 {
		go func() {
			db, err := Open(ctx, url)
			errs <- err
			dbs <- db
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		db := <-dbs
		t.Cleanup(func() { db.Close() })
	}
	db, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.Dialect() != Postgres || strings.Contains(db.Path(), "dockmaster:dockmaster@") {
		t.Errorf("dialect %s, path %q (password must be redacted)", db.Dialect(), db.Path())
	}
	var n, v int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if ms, _ := loadMigrations(Postgres); n != len(ms) || v != SchemaVersion() {
		t.Fatalf("%d migrations recorded up to %d, want %d up to %d", n, v, len(ms), SchemaVersion())
	}
}
