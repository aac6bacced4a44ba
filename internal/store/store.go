// Package store keeps dockmaster's durable state in SQLite (the embedded
// default) or in PostgreSQL (several replicas sharing one database). Each
// consumer sees its own small interface, defined where it is used; *DB
// satisfies them. Queries are written once, with `?` placeholders, in the
// SQL both engines share; dialect.go rebinds them for PostgreSQL.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver; pure Go, no cgo
)

// ErrNotFound is returned (wrapped) when a looked-up row does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned (wrapped) when a conditional update matched no row:
// someone else moved the record first.
var ErrConflict = errors.New("conflict: state changed concurrently")

// ErrSchemaTooNew means the database was migrated by a newer dockmaster.
var ErrSchemaTooNew = errors.New("database schema is newer than this binary")

// migrations/ is SQLite's schema, migrations_pg/ the same tables in
// PostgreSQL's types, with the same version numbers (a test holds them
// together).
//
//go:embed migrations/*.sql migrations_pg/*.sql
var migrationFS embed.FS

// DB is the store. It is safe for concurrent use.
type DB struct {
	*sql.DB
	path    string
	dialect Dialect
}

// Path is the database file, or the PostgreSQL URL without its password.
func (db *DB) Path() string { return db.path }

// Dialect is the engine behind db.
func (db *DB) Dialect() Dialect { return db.dialect }

// Open opens the store at path and applies pending migrations: a
// postgres:// (or postgresql://) URL opens that PostgreSQL database, any
// other path an SQLite file (created if needed). It refuses a database
// whose schema is newer than the migrations this binary carries.
func Open(ctx context.Context, path string) (*DB, error) {
	if IsPostgresURL(path) {
		return openPostgres(ctx, path)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("store: create %s: %w", dir, err)
		}
	}
	// synchronous(FULL): an acknowledged commit survives power loss, not only
	// a process crash; group commit keeps the fsync cost affordable.
	dsn := "file:" + path + "?_txlock=immediate" +
		"&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
		"&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)"
	sqlDB, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db := &DB{DB: sqlDB, path: path, dialect: SQLite}
	if err := db.PingContext(ctx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := db.migrate(ctx); err != nil {
		sqlDB.Close()
		return nil, err
	}
	return db, nil
}

type migration struct {
	version int
	name    string
	sql     string
}

func migrationDir(d Dialect) string {
	if d == Postgres {
		return "migrations_pg"
	}
	return "migrations"
}

func loadMigrations(d Dialect) ([]migration, error) {
	dir := migrationDir(d)
	entries, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("store: migration %q: name must be NNNN_name.sql", e.Name())
		}
		body, err := migrationFS.ReadFile(dir + "/" + e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("store: two migrations with version %d", ms[i].version)
		}
	}
	return ms, nil
}

// SchemaVersion is the newest migration this binary knows.
func SchemaVersion() int {
	ms, err := loadMigrations(SQLite)
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// migrationLock is the advisory lock key under which PostgreSQL replicas
// migrate one at a time ("dockmaster-migrate" as a number).
const migrationLock = 0x646d2d6d69677261

// migrate applies pending migrations in one transaction, so a failed one
// leaves the schema as it was. On PostgreSQL the transaction first takes an
// advisory lock: replicas starting together migrate one after the other.
func (db *DB) migrate(ctx context.Context) error {
	ms, err := loadMigrations(db.dialect)
	if err != nil {
		return err
	}
	createTable := `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))`
	if db.dialect == Postgres {
		createTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT ` + pgNow + `)`
	}
	err = db.Tx(ctx, func(tx *sql.Tx) error {
		if db.dialect == Postgres {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(migrationLock)); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, createTable); err != nil {
			return err
		}
		var current int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
			return err
		}
		known := 0
		if len(ms) > 0 {
			known = ms[len(ms)-1].version
		}
		if current > known {
			return fmt.Errorf("%w: %s is at schema version %d, this dockmaster knows up to %d; run a newer dockmaster or point --store at another database",
				ErrSchemaTooNew, db.path, current, known)
		}
		for _, m := range ms {
			if m.version <= current {
				continue
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, name) VALUES (?, ?)`, m.version, m.name); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrSchemaTooNew) {
		return fmt.Errorf("store: migrate %s: %w", db.path, err)
	}
	return err
}

// pgNow is PostgreSQL's spelling of the SQLite schema's default
// strftime('%Y-%m-%dT%H:%M:%fZ','now'): UTC, milliseconds, text.
const pgNow = `(to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))`

// Tx runs fn in one transaction, committing when fn returns nil.
func (db *DB) Tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Ready reports whether the store answers queries.
func (db *DB) Ready(ctx context.Context) error {
	var one int
	return db.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
}
