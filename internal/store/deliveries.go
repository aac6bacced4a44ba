package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bytedance/sonic"
)

// Verdict is what dockmaster made of a delivery.
type Verdict string

// Verdicts. Duplicate is never stored: a second copy of a delivery is counted
// on the original row (Duplicates) and answered with VerdictDuplicate.
const (
	VerdictAccepted  Verdict = "accepted"
	VerdictIgnored   Verdict = "ignored"
	VerdictPing      Verdict = "ping"
	VerdictDuplicate Verdict = "duplicate"
)

// ErrNotActionable is returned (wrapped) when replaying a delivery that never
// produced an event (ignored, ping, branch deletion).
var ErrNotActionable = errors.New("delivery is not actionable")

// NewDelivery is one received hook to record. The caller serializes the
// event (and may call Encode) so that the single committing goroutine does
// as little as possible.
type NewDelivery struct {
	Provider   string
	DeliveryID string
	EventName  string
	Repository string
	Verdict    Verdict
	Reason     string
	Headers    http.Header // already redacted
	Body       []byte
	EventKind  string
	Event      json.RawMessage // JSON webhooks.Event; nil when ignored
	// Actionable gives the delivery an events row for the pipeline engine.
	Actionable bool

	headersJSON []byte // set by Encode
}

// Encode serializes the headers ahead of InsertDeliveries, on the caller's
// goroutine. Calling it is optional.
func (d *NewDelivery) Encode() error {
	b, err := sonic.ConfigStd.Marshal(nonNilHeader(d.Headers)) // encoding/json's output, faster: the webhook hot path
	if err != nil {
		return fmt.Errorf("delivery %s/%s: headers: %w", d.Provider, d.DeliveryID, err)
	}
	d.headersJSON = b
	return nil
}

// InsertResult is the outcome of recording one NewDelivery.
type InsertResult struct {
	ID        int64   // deliveries.id, the original's when Duplicate
	Duplicate bool    // the (provider, delivery id) was already stored
	Verdict   Verdict // the stored verdict (the original's when Duplicate)
	EventID   int64   // the events row created, 0 if none
}

const (
	// insertDeliverySQL stores a new delivery and inserts nothing for a
	// (provider, delivery id) already stored; countDuplicateSQL then counts
	// the copy and reads the original.
	insertDeliverySQL = `INSERT INTO deliveries
		(provider, delivery_id, event_name, repository, verdict, reason, headers, body, event_kind, event, actionable, received_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(provider, delivery_id) DO NOTHING`
	countDuplicateSQL = `UPDATE deliveries SET duplicates = duplicates + 1 WHERE provider = ? AND delivery_id = ? RETURNING id, verdict`
	insertEventSQL    = `INSERT INTO events(delivery, kind, payload, created_at) VALUES (?, ?, ?, ?)`
	// dbTimeFmt is the schema's strftime('%Y-%m-%dT%H:%M:%fZ'), written from Go
	// because SQLite's strftime costs more than the rest of an insert.
	dbTimeFmt = "2006-01-02T15:04:05.000Z"
)

// InsertDeliveries records ds in one transaction (one fsync) and returns one
// result per input, in order. A (provider, delivery id) already stored, or
// seen earlier in ds, is not stored again: the original row's duplicate count
// goes up and the result says Duplicate. On error nothing is stored.
func (db *DB) InsertDeliveries(ctx context.Context, ds []NewDelivery) ([]InsertResult, error) {
	var out []InsertResult
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		st, err := prepareDeliveryStmts(ctx, tx, db.dialect)
		if err != nil {
			return err
		}
		defer st.close()
		out, err = st.insert(ctx, ds)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: record %d deliveries: %w", len(ds), err)
	}
	return out, nil
}

// DeliveryWriter is InsertDeliveries on one dedicated connection whose
// statements stay prepared: the group committer's fast path. Its connection
// never checkpoints the WAL itself; a goroutine of the writer does, off the
// commit path (see checkpointDue). Not safe for concurrent use; Close it
// when done (it stops that goroutine).
type DeliveryWriter struct {
	db    *DB
	conn  *sql.Conn
	stmts *deliveryStmts

	written    atomic.Int64  // deliveries committed since the last checkpoint began
	lastCommit atomic.Int64  // when the last commit ended, in Unix nanoseconds
	checkpoint chan struct{} // buffered 1: a checkpoint is due; closed by Close
	stopped    chan struct{} // closed when the checkpointer returns
}

// Checkpointing copies every page the commits wrote into the database file,
// which costs about as much CPU and disk again as writing them. Run during
// a burst of webhooks, that copy competes with the commits the senders are
// waiting for (measured here: 30-40% fewer hooks/s), so it waits for a
// quiet moment unless the WAL has grown too long.
var (
	// checkpointDue: a checkpoint is due after this many deliveries (about
	// 8,000 WAL pages of GitHub-sized pushes)...
	checkpointDue int64 = 2048
	// ...and runs once no commit has ended for checkpointQuiet,
	checkpointQuiet = 20 * time.Millisecond
	// or at once past checkpointForce deliveries (about 128 MiB of WAL).
	checkpointForce int64 = 8192
)

// DeliveryWriter returns a writer; it takes a connection on first use.
func (db *DB) DeliveryWriter() *DeliveryWriter { return &DeliveryWriter{db: db} }

func (w *DeliveryWriter) open(ctx context.Context) error {
	conn, err := w.db.Conn(ctx)
	if err != nil {
		return err
	}
	if w.db.dialect == SQLite {
		if _, err := conn.ExecContext(ctx, `PRAGMA wal_autocheckpoint=0`); err != nil {
			conn.Close()
			return err
		}
	}
	st, err := prepareDeliveryStmts(ctx, conn, w.db.dialect)
	if err != nil {
		conn.Close()
		return err
	}
	w.conn, w.stmts = conn, st
	if w.checkpoint == nil && w.db.dialect == SQLite { // PostgreSQL checkpoints by itself
		w.checkpoint, w.stopped = make(chan struct{}, 1), make(chan struct{})
		go w.checkpointer()
	}
	return nil
}

func (w *DeliveryWriter) checkpointer() {
	defer close(w.stopped)
	for range w.checkpoint {
		w.awaitQuiet()
		w.written.Store(0)
		// PASSIVE never blocks the writer. A failure only leaves the WAL
		// longer until the next attempt (or SQLite's own autocheckpoint
		// on another connection), so it is not worth an error path.
		_, _ = w.db.ExecContext(context.Background(), `PRAGMA wal_checkpoint(PASSIVE)`)
	}
}

// awaitQuiet returns once no commit has ended for checkpointQuiet, the WAL
// is past checkpointForce, or Close was called.
func (w *DeliveryWriter) awaitQuiet() {
	tick := time.NewTicker(min(checkpointQuiet/4, 5*time.Millisecond))
	defer tick.Stop()
	for w.written.Load() < checkpointForce && time.Since(time.Unix(0, w.lastCommit.Load())) < checkpointQuiet {
		select {
		case _, open := <-w.checkpoint: // a further "due" changes nothing
			if !open {
				return
			}
		case <-tick.C:
		}
	}
}

// InsertDeliveries is (*DB).InsertDeliveries on the writer's connection.
func (w *DeliveryWriter) InsertDeliveries(ctx context.Context, ds []NewDelivery) ([]InsertResult, error) {
	out, err := w.insert(ctx, ds)
	if err != nil {
		return nil, fmt.Errorf("store: record %d deliveries: %w", len(ds), err)
	}
	return out, nil
}

func (w *DeliveryWriter) insert(ctx context.Context, ds []NewDelivery) ([]InsertResult, error) {
	if w.conn == nil {
		if err := w.open(ctx); err != nil {
			return nil, err
		}
	}
	// Plain BEGIN/COMMIT: a database/sql Tx would re-prepare the statements.
	begin := `BEGIN IMMEDIATE` // SQLite: take the write lock now, not at the first insert
	if w.db.dialect == Postgres {
		begin = `BEGIN`
	}
	if _, err := w.conn.ExecContext(ctx, begin); err != nil {
		w.release() // reopen next time rather than reuse a connection in doubt
		return nil, err
	}
	out, err := w.stmts.insert(ctx, ds)
	if err == nil {
		if _, err = w.conn.ExecContext(ctx, `COMMIT`); err == nil {
			w.lastCommit.Store(time.Now().UnixNano())
			if w.written.Add(int64(len(ds))) >= checkpointDue && w.checkpoint != nil {
				select {
				case w.checkpoint <- struct{}{}:
				default: // one is pending or running
				}
			}
			return out, nil
		}
	}
	if _, rerr := w.conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`); rerr != nil {
		w.release()
	}
	return nil, err
}

// Close stops the checkpointer and releases the connection.
func (w *DeliveryWriter) Close() error {
	err := w.release()
	if w.checkpoint != nil {
		close(w.checkpoint)
		<-w.stopped
		w.checkpoint = nil
	}
	return err
}

// release drops the connection (reopened on next use), keeping the
// checkpointer. The connection is discarded, not returned to the pool: it
// never checkpoints the WAL, so other writes made through it would let the
// WAL grow.
func (w *DeliveryWriter) release() error {
	if w.conn == nil {
		return nil
	}
	w.stmts.close()
	err := w.conn.Raw(func(any) error { return driver.ErrBadConn }) // database/sql closes a bad connection
	if errors.Is(err, driver.ErrBadConn) {
		err = nil
	}
	w.conn, w.stmts = nil, nil
	return err
}

// deliveryStmts are the statements recording deliveries, prepared on one
// transaction or connection.
type deliveryStmts struct {
	delivery, duplicate, event *sql.Stmt
	// returning: PostgreSQL has no LastInsertId, so there the inserts
	// return the new id. SQLite does not get RETURNING: it costs SQLite
	// about as much as the insert itself.
	returning bool
}

func prepareDeliveryStmts(ctx context.Context, p interface {
	PrepareContext(context.Context, string) (*sql.Stmt, error)
}, d Dialect) (*deliveryStmts, error) {
	st := &deliveryStmts{returning: d == Postgres}
	returning := ""
	if st.returning {
		returning = " RETURNING id"
	}
	for _, s := range []struct {
		into **sql.Stmt
		sql  string
	}{{&st.delivery, insertDeliverySQL + returning}, {&st.duplicate, countDuplicateSQL}, {&st.event, insertEventSQL + returning}} {
		var err error
		if *s.into, err = p.PrepareContext(ctx, s.sql); err != nil {
			st.close()
			return nil, err
		}
	}
	return st, nil
}

func (st *deliveryStmts) close() {
	for _, s := range []*sql.Stmt{st.delivery, st.duplicate, st.event} {
		if s != nil {
			s.Close()
		}
	}
}

// insertID runs an INSERT and returns the new row's id, or 0 when the
// insert was skipped (ON CONFLICT DO NOTHING).
func (st *deliveryStmts) insertID(ctx context.Context, s *sql.Stmt, args ...any) (int64, error) {
	if st.returning {
		var id int64
		if err := s.QueryRowContext(ctx, args...).Scan(&id); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return 0, err
		}
		return id, nil
	}
	res, err := s.ExecContext(ctx, args...)
	if err != nil {
		return 0, err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return 0, err
	}
	return res.LastInsertId()
}

// insert records ds inside an open transaction.
func (st *deliveryStmts) insert(ctx context.Context, ds []NewDelivery) ([]InsertResult, error) {
	out := make([]InsertResult, len(ds))
	now := time.Now().UTC().Format(dbTimeFmt)
	for i := range ds {
		d := &ds[i]
		headers := d.headersJSON
		if headers == nil {
			if err := d.Encode(); err != nil {
				return nil, err
			}
			headers = d.headersJSON
		}
		var event any // NULL when absent, or when the events row holds it
		if d.Event != nil && !d.Actionable {
			event = string(d.Event)
		}
		body := d.Body
		if body == nil {
			body = []byte{}
		}
		r := &out[i]
		id, err := st.insertID(ctx, st.delivery, d.Provider, d.DeliveryID, d.EventName, d.Repository, string(d.Verdict),
			d.Reason, string(headers), body, d.EventKind, event, d.Actionable, now)
		if err != nil {
			return nil, fmt.Errorf("delivery %s/%s: %w", d.Provider, d.DeliveryID, err)
		}
		if id == 0 {
			r.Duplicate = true
			if err := st.duplicate.QueryRowContext(ctx, d.Provider, d.DeliveryID).Scan(&r.ID, &r.Verdict); err != nil {
				return nil, fmt.Errorf("delivery %s/%s: duplicate: %w", d.Provider, d.DeliveryID, err)
			}
			continue
		}
		r.ID, r.Verdict = id, d.Verdict
		if !d.Actionable {
			continue
		}
		if len(d.Event) == 0 {
			return nil, fmt.Errorf("delivery %s/%s: actionable but no event", d.Provider, d.DeliveryID)
		}
		if r.EventID, err = st.insertID(ctx, st.event, r.ID, d.EventKind, string(d.Event), now); err != nil {
			return nil, fmt.Errorf("delivery %s/%s: event: %w", d.Provider, d.DeliveryID, err)
		}
	}
	return out, nil
}

// DeliverySummary is a delivery without its headers, body and event.
type DeliverySummary struct {
	ID         int64     `json:"id"`
	Provider   string    `json:"provider"`
	DeliveryID string    `json:"delivery_id"`
	EventName  string    `json:"event_name"`
	Repository string    `json:"repository"`
	Verdict    Verdict   `json:"verdict"`
	Reason     string    `json:"reason,omitempty"`
	EventKind  string    `json:"event_kind,omitempty"`
	Actionable bool      `json:"actionable"`
	Duplicates int       `json:"duplicates"`
	Replays    int       `json:"replays"`
	ReceivedAt time.Time `json:"received_at"`
}

// Delivery is a stored delivery in full.
type Delivery struct {
	DeliverySummary
	Headers http.Header     `json:"headers"`
	Body    []byte          `json:"-"`
	Event   json.RawMessage `json:"event,omitempty"`
	// Events are the events rows made from it, first the original.
	Events []EventRef `json:"events"`
}

// EventRef names one events row.
type EventRef struct {
	ID        int64     `json:"id"`
	Source    string    `json:"source"` // hook | replay
	CreatedAt time.Time `json:"created_at"`
}

// DeliveryFilter selects deliveries, newest first.
type DeliveryFilter struct {
	Provider   string
	Verdict    Verdict
	Repository string
	// Before is a cursor: only deliveries with a smaller id (0: from the newest).
	Before int64
	// Limit caps the page; <= 0 means 50, and at most 1000.
	Limit int
}

// eventCol reads a delivery's normalized event: an actionable delivery's is
// stored once, in its first events row.
const eventCol = `COALESCE(event, (SELECT payload FROM events WHERE events.delivery = deliveries.id ORDER BY events.id LIMIT 1))`

const summaryCols = `id, provider, delivery_id, event_name, repository, verdict, reason, event_kind, actionable, duplicates, replays, received_at`

// Deliveries lists deliveries matching f, newest first.
func (db *DB) Deliveries(ctx context.Context, f DeliveryFilter) ([]DeliverySummary, error) {
	var where []string
	var args []any
	add := func(cond string, v any) { where = append(where, cond); args = append(args, v) }
	if f.Provider != "" {
		add("provider = ?", f.Provider)
	}
	if f.Verdict != "" {
		add("verdict = ?", string(f.Verdict))
	}
	if f.Repository != "" {
		add("repository = ?", f.Repository)
	}
	if f.Before > 0 {
		add("id < ?", f.Before)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 1000)
	q := `SELECT ` + summaryCols + ` FROM deliveries`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, limit)
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: deliveries: %w", err)
	}
	defer rows.Close()
	out := []DeliverySummary{}
	for rows.Next() {
		s, err := scanSummary(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("store: deliveries: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: deliveries: %w", err)
	}
	return out, nil
}

func scanSummary(scan func(...any) error) (DeliverySummary, error) {
	var s DeliverySummary
	var at string
	err := scan(&s.ID, &s.Provider, &s.DeliveryID, &s.EventName, &s.Repository, &s.Verdict, &s.Reason,
		&s.EventKind, &s.Actionable, &s.Duplicates, &s.Replays, &at)
	if err != nil {
		return s, err
	}
	s.ReceivedAt = parseDeliveryTime(at)
	return s, nil
}

// parseTime reads the strftime('%Y-%m-%dT%H:%M:%fZ') defaults of the schema.
func parseDeliveryTime(s string) time.Time {
	t, err := time.Parse("2006-01-02T15:04:05.999Z", s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// Delivery returns one delivery with its headers, body, event and events
// rows, or ErrNotFound.
func (db *DB) Delivery(ctx context.Context, id int64) (Delivery, error) {
	var d Delivery
	var headers string
	var event sql.NullString
	row := db.QueryRowContext(ctx, `SELECT `+summaryCols+`, headers, body, `+eventCol+` FROM deliveries WHERE id = ?`, id)
	s, err := scanSummary(func(dest ...any) error { return row.Scan(append(dest, &headers, &d.Body, &event)...) })
	if errors.Is(err, sql.ErrNoRows) {
		return d, fmt.Errorf("delivery %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return d, fmt.Errorf("store: delivery %d: %w", id, err)
	}
	d.DeliverySummary = s
	if err := json.Unmarshal([]byte(headers), &d.Headers); err != nil {
		return d, fmt.Errorf("store: delivery %d: headers: %w", id, err)
	}
	if event.Valid {
		d.Event = json.RawMessage(event.String)
	}
	rows, err := db.QueryContext(ctx, `SELECT id, source, created_at FROM events WHERE delivery = ? ORDER BY id`, id)
	if err != nil {
		return d, fmt.Errorf("store: delivery %d: events: %w", id, err)
	}
	defer rows.Close()
	d.Events = []EventRef{}
	for rows.Next() {
		var e EventRef
		var at string
		if err := rows.Scan(&e.ID, &e.Source, &at); err != nil {
			return d, fmt.Errorf("store: delivery %d: events: %w", id, err)
		}
		e.CreatedAt = parseDeliveryTime(at)
		d.Events = append(d.Events, e)
	}
	return d, rows.Err()
}

// ReplayDelivery makes a new events row from the stored normalized event of
// delivery id, counts the replay and audits it under actor. It returns the
// new event id; ErrNotFound, or ErrNotActionable when the delivery never
// produced an event.
func (db *DB) ReplayDelivery(ctx context.Context, id int64, actor string) (int64, error) {
	var eventID int64
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		var kind, provider, deliveryID string
		var event sql.NullString
		var actionable bool
		err := tx.QueryRowContext(ctx, `SELECT provider, delivery_id, event_kind, `+eventCol+`, actionable FROM deliveries WHERE id = ?`, id).
			Scan(&provider, &deliveryID, &kind, &event, &actionable)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("delivery %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if !actionable || !event.Valid {
			return fmt.Errorf("delivery %d (%s %s): %w", id, provider, kind, ErrNotActionable)
		}
		if err := tx.QueryRowContext(ctx, `INSERT INTO events(delivery, kind, payload, source) VALUES (?, ?, ?, 'replay') RETURNING id`,
			id, kind, event.String).Scan(&eventID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE deliveries SET replays = replays + 1 WHERE id = ?`, id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO audit_log(actor, action, target, detail) VALUES (?, 'delivery.replay', ?, ?)`,
			actor, fmt.Sprintf("delivery/%d", id), fmt.Sprintf("%s %s -> event %d", provider, deliveryID, eventID))
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrNotActionable) {
			return 0, err
		}
		return 0, fmt.Errorf("store: replay delivery %d: %w", id, err)
	}
	return eventID, nil
}

func nonNilHeader(h http.Header) http.Header {
	if h == nil {
		return http.Header{}
	}
	return h
}
