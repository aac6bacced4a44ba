// Package leader picks the one dockmaster replica that runs the singleton
// loops (pipeline engine, deploy windows, reconcilers) when several
// replicas share a PostgreSQL store. Every replica serves HTTP and accepts
// webhooks; only the leader acts on them.
//
// Leadership is a PostgreSQL session-level advisory lock held on a
// dedicated connection for the whole term: the server releases it when
// that session ends, so a killed replica hands over as soon as its
// connection drops. With SQLite there is one process, always the leader.
//
// An advisory lock is not a fence: a leader cut off from the database
// learns it lost the lock only at its next liveness check. A new leader
// therefore waits a grace period (two checks) before it starts, and every
// step of the loops stays a conditional write, so a late step of the old
// leader is refused rather than repeated.
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Elector runs lead while this process leads.
type Elector interface {
	// Run blocks until ctx is done. Each time this process becomes the
	// leader it calls lead with a context that is canceled when the
	// leadership ends (lost, or ctx done), and waits for lead to return
	// before it campaigns again, so two terms of one process never
	// overlap. Run returns nil when ctx ends.
	Run(ctx context.Context, lead func(ctx context.Context)) error
	// Leader reports whether lead is running now.
	Leader() bool
}

// Single is the elector of a lone process (SQLite): always the leader.
type Single struct{ leading atomic.Bool }

// Run calls lead(ctx) once and returns when it has returned and ctx is done.
func (s *Single) Run(ctx context.Context, lead func(context.Context)) error {
	s.leading.Store(true)
	lead(ctx)
	<-ctx.Done()
	s.leading.Store(false)
	return nil
}

// Leader is true while Run runs.
func (s *Single) Leader() bool { return s.leading.Load() }

// DefaultKey is the advisory lock key of dockmaster's leadership
// ("dm-leadr" as a number). Advisory locks are per database, so replicas
// of different databases never compete.
const DefaultKey int64 = 0x646d2d6c65616472

// Options configure a PostgreSQL elector.
type Options struct {
	// URL is the store's postgres:// URL.
	URL string
	// Name identifies this replica in logs and in the server's
	// pg_stat_activity (application_name "dockmaster leader <name>").
	Name string
	// Key is the advisory lock key; 0 means DefaultKey.
	Key int64
	// Every is how often a follower tries the lock and a leader checks its
	// connection (default 1s); a check times out after Every too.
	Every time.Duration
	// Grace is how long a new leader waits, holding the lock, before it
	// calls lead (default 2×Every): long enough for a cut-off old leader's
	// check to fail and stop its loops.
	Grace time.Duration
	// Log receives leadership changes; nil discards them.
	Log *slog.Logger
	// OnChange, if set, is called with true when lead starts and false
	// when it has returned.
	OnChange func(leader bool)
}

// Postgres elects through pg_try_advisory_lock.
type Postgres struct {
	o       Options
	leading atomic.Bool
}

// NewPostgres returns an elector; it connects when Run starts.
func NewPostgres(o Options) *Postgres {
	if o.Key == 0 {
		o.Key = DefaultKey
	}
	if o.Every <= 0 {
		o.Every = time.Second
	}
	if o.Grace <= 0 {
		o.Grace = 2 * o.Every
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Postgres{o: o}
}

// Leader reports whether lead is running in this process.
func (p *Postgres) Leader() bool { return p.leading.Load() }

// ApplicationName is what the elector's session shows in pg_stat_activity.
func (p *Postgres) ApplicationName() string { return "dockmaster leader " + p.o.Name }

func (p *Postgres) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(p.o.URL)
	if err != nil {
		return nil, fmt.Errorf("leader: %w", err)
	}
	cfg.RuntimeParams["application_name"] = p.ApplicationName()
	// The server drops the session (and so the lock) of a peer that
	// vanished without closing its socket within about 10s.
	cfg.RuntimeParams["tcp_keepalives_idle"] = "4"
	cfg.RuntimeParams["tcp_keepalives_interval"] = "2"
	cfg.RuntimeParams["tcp_keepalives_count"] = "3"
	cctx, cancel := context.WithTimeout(ctx, 5*p.o.Every)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("leader: connect: %w", err)
	}
	return conn, nil
}

// Run campaigns until ctx is done; see Elector.
func (p *Postgres) Run(ctx context.Context, lead func(context.Context)) error {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			closeConn(conn)
		}
	}()
	lastErr := ""
	for ctx.Err() == nil {
		if conn == nil {
			c, err := p.connect(ctx)
			if err != nil {
				if err.Error() != lastErr { // once per distinct failure, not every second
					p.o.Log.Warn("leader election: cannot reach the database", "err", err)
					lastErr = err.Error()
				}
				sleep(ctx, p.o.Every)
				continue
			}
			conn, lastErr = c, ""
		}
		got, err := p.tryLock(ctx, conn)
		if err != nil {
			if ctx.Err() == nil {
				p.o.Log.Warn("leader election: lock attempt failed; reconnecting", "err", err)
			}
			closeConn(conn)
			conn = nil
			sleep(ctx, p.o.Every)
			continue
		}
		if !got {
			sleep(ctx, p.o.Every)
			continue
		}
		lost := p.term(ctx, conn, lead)
		if lost {
			closeConn(conn)
			conn = nil
			// Step back for longer than a follower's attempt period, so a
			// replica with a healthy connection takes over.
			sleep(ctx, p.o.Grace+p.o.Every)
		} else { // ctx done: hand over at once rather than when the socket closes
			uctx, cancel := context.WithTimeout(context.Background(), p.o.Every)
			_, _ = conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, p.o.Key)
			cancel()
		}
	}
	return nil
}

func (p *Postgres) tryLock(ctx context.Context, conn *pgx.Conn) (bool, error) {
	qctx, cancel := context.WithTimeout(ctx, 2*p.o.Every)
	defer cancel()
	var got bool
	err := conn.QueryRow(qctx, `SELECT pg_try_advisory_lock($1)`, p.o.Key).Scan(&got)
	return got, err
}

// term holds the leadership: grace, then lead, checking the connection
// every Every. It reports whether the leadership was lost (rather than
// ctx ending).
func (p *Postgres) term(ctx context.Context, conn *pgx.Conn, lead func(context.Context)) (lost bool) {
	p.o.Log.Info("leader election: won; starting after the grace period", "replica", p.o.Name, "grace", p.o.Grace)
	termCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	started := false
	start := time.Now()
	tick := time.NewTicker(p.o.Every)
	defer tick.Stop()
	for {
		if !started && time.Since(start) >= p.o.Grace {
			started = true
			p.leading.Store(true)
			if p.o.OnChange != nil {
				p.o.OnChange(true)
			}
			p.o.Log.Info("leader election: leading", "replica", p.o.Name)
			go func() { defer close(done); lead(termCtx) }()
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
			if err := p.check(ctx, conn); err != nil && ctx.Err() == nil {
				p.o.Log.Warn("leader election: lost the database connection; stopping the loops", "replica", p.o.Name, "err", err)
				lost = true
			}
		}
		if ctx.Err() != nil || lost {
			break
		}
	}
	cancel()
	if started {
		<-done
		p.leading.Store(false)
		if p.o.OnChange != nil {
			p.o.OnChange(false)
		}
	}
	return lost
}

// check proves the session (and with it the lock) is alive.
func (p *Postgres) check(ctx context.Context, conn *pgx.Conn) error {
	cctx, cancel := context.WithTimeout(ctx, p.o.Every)
	defer cancel()
	var held bool
	err := conn.QueryRow(cctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
		AND granted AND objid = ($1::bigint & 4294967295)::oid AND classid = ($1::bigint >> 32)::oid)`, p.o.Key).Scan(&held)
	if err != nil {
		return err
	}
	if !held {
		return errors.New("advisory lock no longer held")
	}
	return nil
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn.Close(ctx)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
