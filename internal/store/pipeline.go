package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dockmaster/dockmaster/pipeline"
)

// Pipeline returns the pipeline engine's view of the store.
func (db *DB) Pipeline() pipeline.Store { return pipelineStore{db} }

type pipelineStore struct{ db *DB }

const timeFmt = "2006-01-02T15:04:05.000000000Z07:00"

func now() string { return time.Now().UTC().Format(timeFmt) }

func parseTime(s string) time.Time {
	t, _ := time.Parse(timeFmt, s)
	return t
}

func parseTimePtr(s sql.NullString) *time.Time {
	if !s.Valid || s.String == "" {
		return nil
	}
	t := parseTime(s.String)
	return &t
}

func (p pipelineStore) Cursor(ctx context.Context) (int64, error) {
	var id int64
	err := p.db.QueryRowContext(ctx, `SELECT event_id FROM engine_cursor WHERE name = 'pipeline'`).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return id, err
}

func (p pipelineStore) SetCursor(ctx context.Context, eventID int64) error {
	_, err := p.db.ExecContext(ctx, `INSERT INTO engine_cursor(name, event_id) VALUES ('pipeline', ?)
		ON CONFLICT(name) DO UPDATE SET event_id = excluded.event_id WHERE excluded.event_id > engine_cursor.event_id`, eventID)
	return err
}

func (p pipelineStore) EventsAfter(ctx context.Context, id int64, limit int) ([]pipeline.StoredEvent, error) {
	rows, err := p.db.QueryContext(ctx, `SELECT id, payload FROM events WHERE id > ? ORDER BY id LIMIT ?`, id, limit)
	if err != nil {
		return nil, fmt.Errorf("store: events: %w", err)
	}
	defer rows.Close()
	var out []pipeline.StoredEvent
	for rows.Next() {
		var e pipeline.StoredEvent
		if err := rows.Scan(&e.ID, &e.Payload); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

const runCols = `id, app, repo, ref, branch, tag, commit_sha, message, pusher, version, environment,
	COALESCE(event_id, 0), state, reason, image, digest, attempt, created_at, updated_at`

func scanRun(sc interface{ Scan(...any) error }) (pipeline.Run, error) {
	var r pipeline.Run
	var created, updated string
	err := sc.Scan(&r.ID, &r.App, &r.Repo, &r.Ref, &r.Branch, &r.Tag, &r.Commit, &r.Message, &r.Pusher,
		&r.Version, &r.Environment, &r.EventID, &r.State, &r.Reason, &r.Image, &r.Digest, &r.Attempt, &created, &updated)
	r.CreatedAt, r.UpdatedAt = parseTime(created), parseTime(updated)
	return r, err
}

func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

func (p pipelineStore) CreateRun(ctx context.Context, r pipeline.Run) (pipeline.Run, bool, error) {
	ts := now()
	if r.State == "" {
		r.State = pipeline.RunPending
	}
	if r.Attempt == 0 {
		r.Attempt = 1
	}
	var id int64
	err := p.db.QueryRowContext(ctx, `INSERT INTO runs(app, repo, ref, branch, tag, commit_sha, message, pusher, version,
		environment, event_id, state, reason, image, digest, attempt, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(event_id, app) DO NOTHING RETURNING id`,
		r.App, r.Repo, r.Ref, r.Branch, r.Tag, r.Commit, r.Message, r.Pusher, r.Version, r.Environment, nullID(r.EventID),
		r.State, r.Reason, r.Image, r.Digest, r.Attempt, ts, ts).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) { // the event already made this app's run
		run, err := scanRun(p.db.QueryRowContext(ctx, `SELECT `+runCols+` FROM runs WHERE event_id = ? AND app = ?`, r.EventID, r.App))
		return run, false, err
	}
	if err != nil {
		return r, false, fmt.Errorf("store: create run: %w", err)
	}
	run, err := p.Run(ctx, id)
	return run, true, err
}

func (p pipelineStore) SupersedeOlder(ctx context.Context, r pipeline.Run) ([]int64, error) {
	rows, err := p.db.QueryContext(ctx, `UPDATE runs SET state = 'superseded', reason = ?, updated_at = ?
		WHERE app = ? AND branch = ? AND tag = ? AND id < ? AND state = 'pending' RETURNING id`,
		fmt.Sprintf("superseded by run %d", r.ID), now(), r.App, r.Branch, r.Tag, r.ID)
	if err != nil {
		return nil, fmt.Errorf("store: supersede: %w", err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

func (p pipelineStore) Run(ctx context.Context, id int64) (pipeline.Run, error) {
	r, err := scanRun(p.db.QueryRowContext(ctx, `SELECT `+runCols+` FROM runs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("run %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return r, err
	}
	r.Stages, err = p.stages(ctx, id)
	return r, err
}

func (p pipelineStore) stages(ctx context.Context, runID int64) ([]pipeline.Stage, error) {
	rows, err := p.db.QueryContext(ctx, `SELECT `+stageCols+` FROM stages WHERE run_id = ? ORDER BY attempt, CASE name WHEN 'test' THEN 0 WHEN 'build' THEN 1 ELSE 2 END`, runID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []pipeline.Stage
	for rows.Next() {
		s, err := scanStage(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func scanStage(sc interface{ Scan(...any) error }) (pipeline.Stage, error) {
	var s pipeline.Stage
	var started, finished sql.NullString
	var external, links string
	if err := sc.Scan(&s.RunID, &s.Name, &s.Attempt, &s.Executor, &s.State, &started, &finished, &s.Reason, &external, &links, &s.Log); err != nil {
		return s, err
	}
	s.StartedAt, s.FinishedAt = parseTimePtr(started), parseTimePtr(finished)
	if err := json.Unmarshal([]byte(external), &s.External); err != nil {
		return s, err
	}
	return s, json.Unmarshal([]byte(links), &s.Links)
}

func inClause(n int) string {
	return "(" + strings.TrimSuffix(strings.Repeat("?,", n), ",") + ")"
}

// listQuery builds "SELECT cols FROM table WHERE <equalities and states>
// [AND id < before] ORDER BY id DESC LIMIT n" from a filter; empty values
// match everything.
type listQuery struct {
	q    strings.Builder
	args []any
}

func newListQuery(cols, table string) *listQuery {
	l := &listQuery{}
	l.q.WriteString(`SELECT ` + cols + ` FROM ` + table + ` WHERE 1=1`)
	return l
}

func (l *listQuery) eq(col, v string) *listQuery {
	if v != "" {
		l.q.WriteString(` AND ` + col + ` = ?`)
		l.args = append(l.args, v)
	}
	return l
}

func (l *listQuery) states(vs []string) *listQuery {
	if len(vs) > 0 {
		l.q.WriteString(` AND state IN ` + inClause(len(vs)))
		for _, v := range vs {
			l.args = append(l.args, v)
		}
	}
	return l
}

// page adds the id cursor and the newest-first order (limit 0: 1000).
func (l *listQuery) page(before int64, limit int) (string, []any) {
	if before > 0 {
		l.q.WriteString(` AND id < ?`)
		l.args = append(l.args, before)
	}
	if limit <= 0 {
		limit = 1000
	}
	l.q.WriteString(` ORDER BY id DESC LIMIT ?`)
	return l.q.String(), append(l.args, limit)
}

func stateStrings[S ~string](ss []S) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return out
}

// queryAll runs q and scans every row with scan.
func queryAll[T any](ctx context.Context, db *DB, what, q string, args []any, scan func(interface{ Scan(...any) error }) (T, error)) ([]T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func (p pipelineStore) Runs(ctx context.Context, f pipeline.RunFilter) ([]pipeline.Run, error) {
	q, args := newListQuery(runCols, "runs").eq("app", f.App).eq("branch", f.Branch).states(stateStrings(f.States)).page(f.Before, f.Limit)
	return queryAll(ctx, p.db, "runs", q, args, scanRun)
}

// pipelineConflict adds pipeline.ErrConflict to a store conflict, so the engine can
// recognize it without importing the store.
func pipelineConflict(err error) error {
	if errors.Is(err, ErrConflict) {
		return fmt.Errorf("%w (%w)", err, pipeline.ErrConflict)
	}
	return err
}

func affected(res sql.Result, err error, what string) error {
	if err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("%s: %w", what, ErrConflict)
	}
	return nil
}

func (p pipelineStore) TransitionRun(ctx context.Context, id int64, from, to pipeline.RunState, reason string) error {
	if !pipeline.CanTransition(from, to) {
		return fmt.Errorf("run %d: illegal transition %s -> %s", id, from, to)
	}
	res, err := p.db.ExecContext(ctx, `UPDATE runs SET state = ?, reason = ?, updated_at = ? WHERE id = ? AND state = ?`,
		to, reason, now(), id, from)
	return pipelineConflict(affected(res, err, fmt.Sprintf("run %d %s -> %s", id, from, to)))
}

func (p pipelineStore) Rerun(ctx context.Context, id int64, from pipeline.RunState) (pipeline.Run, error) {
	if !pipeline.CanTransition(from, pipeline.RunPending) {
		return pipeline.Run{}, fmt.Errorf("run %d is %s: only a finished run can be re-run: %w", id, from, pipeline.ErrConflict)
	}
	res, err := p.db.ExecContext(ctx, `UPDATE runs SET state = 'pending', reason = '', attempt = attempt + 1, updated_at = ?
		WHERE id = ? AND state = ?`, now(), id, from)
	if err := pipelineConflict(affected(res, err, fmt.Sprintf("rerun %d", id))); err != nil {
		return pipeline.Run{}, err
	}
	return p.Run(ctx, id)
}

func (p pipelineStore) SetRunImage(ctx context.Context, id int64, image, digest string) error {
	res, err := p.db.ExecContext(ctx, `UPDATE runs SET image = ?, digest = ?, updated_at = ? WHERE id = ?`, image, digest, now(), id)
	return affected(res, err, fmt.Sprintf("run %d image", id))
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	if string(b) == "null" {
		return "{}"
	}
	return string(b)
}

func timeText(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UTC().Format(timeFmt)
}

const stageCols = `run_id, name, attempt, executor, state, started_at, finished_at, reason, external, links, log`

func (p pipelineStore) StartStage(ctx context.Context, s pipeline.Stage) (pipeline.Stage, bool, error) {
	// Most calls find the stage already started: read first, so a waiting
	// run does not take the write lock on every look.
	got, err := scanStage(p.db.QueryRowContext(ctx, `SELECT `+stageCols+` FROM stages WHERE run_id = ? AND name = ? AND attempt = ?`, s.RunID, s.Name, s.Attempt))
	if err == nil {
		return got, false, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return s, false, err
	}
	if s.State == "" {
		s.State = pipeline.StageRunning
	}
	if s.StartedAt == nil && s.State == pipeline.StageRunning {
		t := time.Now()
		s.StartedAt = &t
	}
	res, err := p.db.ExecContext(ctx, `INSERT INTO stages(run_id, name, attempt, executor, state, started_at, finished_at, reason, external, links, log)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id, name, attempt) DO NOTHING`,
		s.RunID, s.Name, s.Attempt, s.Executor, s.State, timeText(s.StartedAt), timeText(s.FinishedAt), s.Reason,
		jsonText(s.External), jsonText(s.Links), s.Log)
	if err != nil {
		return s, false, fmt.Errorf("store: start stage %s of run %d: %w", s.Name, s.RunID, err)
	}
	n, _ := res.RowsAffected()
	got, err = scanStage(p.db.QueryRowContext(ctx, `SELECT `+stageCols+` FROM stages WHERE run_id = ? AND name = ? AND attempt = ?`, s.RunID, s.Name, s.Attempt))
	return got, n > 0, err
}

func (p pipelineStore) UpdateStage(ctx context.Context, s pipeline.Stage, from pipeline.StageState) error {
	res, err := p.db.ExecContext(ctx, `UPDATE stages SET state = ?, started_at = ?, finished_at = ?, reason = ?, external = ?, links = ?, log = ?
		WHERE run_id = ? AND name = ? AND attempt = ? AND state = ?`,
		s.State, timeText(s.StartedAt), timeText(s.FinishedAt), s.Reason, jsonText(s.External), jsonText(s.Links), s.Log,
		s.RunID, s.Name, s.Attempt, from)
	return pipelineConflict(affected(res, err, fmt.Sprintf("stage %s of run %d", s.Name, s.RunID)))
}

const ticketCols = `id, key, app, branch, commit_sha, version, image, digest, environment, pusher, COALESCE(run_id, 0),
	state, reason, links, created_by, created_at, updated_at`

func scanTicket(sc interface{ Scan(...any) error }) (pipeline.Ticket, error) {
	var t pipeline.Ticket
	var links, created, updated string
	if err := sc.Scan(&t.ID, &t.Key, &t.App, &t.Branch, &t.Commit, &t.Version, &t.Image, &t.Digest, &t.Environment,
		&t.Pusher, &t.RunID, &t.State, &t.Reason, &links, &t.CreatedBy, &created, &updated); err != nil {
		return t, err
	}
	t.CreatedAt, t.UpdatedAt = parseTime(created), parseTime(updated)
	return t, json.Unmarshal([]byte(links), &t.Links)
}

func (p pipelineStore) CreateTicket(ctx context.Context, t pipeline.Ticket, prefix string) (pipeline.Ticket, bool, error) {
	var out pipeline.Ticket
	created := false
	err := p.db.Tx(ctx, func(tx *sql.Tx) error {
		if t.RunID != 0 {
			existing, err := scanTicket(tx.QueryRowContext(ctx, `SELECT `+ticketCols+` FROM tickets WHERE run_id = ? AND environment = ?`, t.RunID, t.Environment))
			if err == nil {
				out = existing
				return nil
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		var n int64
		if err := tx.QueryRowContext(ctx, `INSERT INTO ticket_counters(prefix, next) VALUES (?, 2)
			ON CONFLICT(prefix) DO UPDATE SET next = ticket_counters.next + 1 RETURNING next - 1`, prefix).Scan(&n); err != nil {
			return err
		}
		if t.State == "" {
			t.State = pipeline.TicketOpen
		}
		ts := now()
		var id int64
		if err := tx.QueryRowContext(ctx, `INSERT INTO tickets(key, app, branch, commit_sha, version, image, digest, environment, pusher,
			run_id, state, reason, links, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			fmt.Sprintf("%s-%d", prefix, n), t.App, t.Branch, t.Commit, t.Version, t.Image, t.Digest, t.Environment, t.Pusher,
			nullID(t.RunID), t.State, t.Reason, jsonText(t.Links), t.CreatedBy, ts, ts).Scan(&id); err != nil {
			return err
		}
		var err error
		out, err = scanTicket(tx.QueryRowContext(ctx, `SELECT `+ticketCols+` FROM tickets WHERE id = ?`, id))
		created = true
		return err
	})
	if err != nil {
		return out, false, fmt.Errorf("store: create ticket: %w", err)
	}
	return out, created, nil
}

func (p pipelineStore) Ticket(ctx context.Context, key string) (pipeline.Ticket, error) {
	t, err := scanTicket(p.db.QueryRowContext(ctx, `SELECT `+ticketCols+` FROM tickets WHERE key = ?`, key))
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("ticket %s: %w", key, ErrNotFound)
	}
	return t, err
}

func (p pipelineStore) Tickets(ctx context.Context, f pipeline.TicketFilter) ([]pipeline.Ticket, error) {
	q, args := newListQuery(ticketCols, "tickets").eq("app", f.App).eq("environment", f.Environment).states(stateStrings(f.States)).page(f.Before, f.Limit)
	return queryAll(ctx, p.db, "tickets", q, args, scanTicket)
}

func (p pipelineStore) TransitionTicket(ctx context.Context, key string, from, to pipeline.TicketState, reason string) error {
	res, err := p.db.ExecContext(ctx, `UPDATE tickets SET state = ?, reason = ?, updated_at = ? WHERE key = ? AND state = ?`,
		to, reason, now(), key, from)
	return pipelineConflict(affected(res, err, fmt.Sprintf("ticket %s %s -> %s", key, from, to)))
}
