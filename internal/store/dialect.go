package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// Dialect names the SQL engine behind a DB.
type Dialect string

// Dialects. SQLite is the embedded default and the fast path; PostgreSQL
// lets several dockmaster replicas share one database.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// IsPostgresURL reports whether a store setting is a PostgreSQL URL
// (postgres:// or postgresql://) rather than an SQLite file path.
func IsPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// RedactURL hides the password of a PostgreSQL URL, for logs and errors.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "postgres://…"
	}
	return u.Redacted()
}

// openPostgres opens the database at a postgres:// URL through pgx's
// database/sql driver, wrapped so that the store's `?` placeholders
// become `$n` in one place (every query of the store, on the DB, a Tx or a
// Conn, passes through the connector).
func openPostgres(ctx context.Context, rawURL string) (*DB, error) {
	name := RedactURL(rawURL)
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", name, err)
	}
	sqlDB := sql.OpenDB(&rebindConnector{Connector: stdlib.GetConnector(*cfg)})
	// Enough for the HTTP handlers and the loops of one replica; the
	// server's max_connections (100 by default) is shared by replicas.
	sqlDB.SetMaxOpenConns(20)
	sqlDB.SetMaxIdleConns(10)
	db := &DB{DB: sqlDB, path: name, dialect: Postgres}
	if err := db.PingContext(ctx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("store: open %s: %w", name, err)
	}
	if err := db.migrate(ctx); err != nil {
		sqlDB.Close()
		return nil, err
	}
	return db, nil
}

// rebindConnector hands out pgx connections that rewrite `?` placeholders
// to PostgreSQL's `$1, $2, …`. Rewrites are cached: the store's queries
// are a small fixed set (IN lists vary only by length).
type rebindConnector struct {
	driver.Connector
	cache sync.Map // query -> rebound query
}

func (c *rebindConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	pc, ok := conn.(*stdlib.Conn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("store: pgx connector returned %T", conn)
	}
	return &rebindConn{Conn: pc, c: c}, nil
}

func (c *rebindConnector) rebind(q string) string {
	if v, ok := c.cache.Load(q); ok {
		return v.(string)
	}
	r := rebind(q)
	c.cache.Store(q, r)
	return r
}

// rebindConn is a *stdlib.Conn (all its optional driver interfaces are
// promoted) whose query entry points rebind placeholders.
type rebindConn struct {
	*stdlib.Conn
	c *rebindConnector
}

func (r *rebindConn) Prepare(q string) (driver.Stmt, error) {
	return r.Conn.Prepare(r.c.rebind(q))
}

func (r *rebindConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	return r.Conn.PrepareContext(ctx, r.c.rebind(q))
}

func (r *rebindConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	return r.Conn.ExecContext(ctx, r.c.rebind(q), args)
}

func (r *rebindConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	return r.Conn.QueryContext(ctx, r.c.rebind(q), args)
}

// rebind turns each `?` outside string literals, quoted identifiers and
// comments into `$n`.
func rebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		ch := q[i]
		switch {
		case ch == '\'' || ch == '"':
			j := i + 1
			for j < len(q) && q[j] != ch {
				j++
			}
			if j < len(q) {
				j++
			}
			b.WriteString(q[i:j])
			i = j - 1
		case ch == '-' && i+1 < len(q) && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				j = len(q) - i
			}
			b.WriteString(q[i : i+j])
			i += j - 1
		case ch == '?':
			n++
			fmt.Fprintf(&b, "$%d", n)
		default:
			b.WriteByte(ch)
		}
	}
	return b.String()
}

// SQLite reports constraint failures only in its messages; PostgreSQL
// by SQLSTATE.
func isUnique(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "23505" // unique_violation
	}
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

func isForeignKey(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "23503" // foreign_key_violation
	}
	return err != nil && strings.Contains(err.Error(), "FOREIGN KEY")
}
