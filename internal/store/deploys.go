package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/dockmaster/dockmaster/pipeline"
)

// Deploys is the store seen by pipeline.Deploys: tickets plus schedules,
// votes, holds, link uses, blocks and audit records.
func (db *DB) Deploys() pipeline.DeployStore { return deployStore{pipelineStore{db}} }

type deployStore struct{ pipelineStore }

// dTime is fixed width, so text order is time order.
const dLayout = "2006-01-02T15:04:05.000000000Z"

func dTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(dLayout)
}

func dParse(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, _ := time.Parse(dLayout, s)
	return t
}

func (s deployStore) PutSchedule(ctx context.Context, sc pipeline.Schedule) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO deploy_schedules(ticket, environment, due_at, window_end, next_label, state, claimed_by, updated_at)
		VALUES (?, ?, ?, ?, ?, 'waiting', '', ?)
		ON CONFLICT(ticket) DO UPDATE SET environment = excluded.environment, due_at = excluded.due_at, window_end = excluded.window_end,
		next_label = excluded.next_label, state = 'waiting', claimed_by = '', updated_at = excluded.updated_at`,
		sc.Ticket, sc.Environment, dTime(sc.DueAt), dTime(sc.WindowEnd), sc.Next, dTime(time.Now()))
	if err != nil {
		return fmt.Errorf("store: schedule %s: %w", sc.Ticket, err)
	}
	return nil
}

const scheduleCols = `ticket, environment, due_at, window_end, next_label, state, claimed_by`

func scanSchedule(sc interface{ Scan(...any) error }) (pipeline.Schedule, error) {
	var s pipeline.Schedule
	var due, end string
	err := sc.Scan(&s.Ticket, &s.Environment, &due, &end, &s.Next, &s.State, &s.ClaimedBy)
	s.DueAt, s.WindowEnd = dParse(due), dParse(end)
	return s, err
}

func (s deployStore) GetSchedule(ctx context.Context, ticket string) (pipeline.Schedule, error) {
	sc, err := scanSchedule(s.db.QueryRowContext(ctx, `SELECT `+scheduleCols+` FROM deploy_schedules WHERE ticket = ?`, ticket))
	if errors.Is(err, sql.ErrNoRows) {
		return sc, fmt.Errorf("schedule of %s: %w", ticket, ErrNotFound)
	}
	return sc, err
}

func (s deployStore) DueSchedules(ctx context.Context, now time.Time) ([]pipeline.Schedule, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+scheduleCols+` FROM deploy_schedules WHERE state = 'waiting' AND due_at <= ? ORDER BY due_at`, dTime(now))
	if err != nil {
		return nil, fmt.Errorf("store: due schedules: %w", err)
	}
	defer rows.Close()
	var out []pipeline.Schedule
	for rows.Next() {
		sc, err := scanSchedule(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, sc)
	}
	return out, rows.Err()
}

func (s deployStore) ClaimSchedule(ctx context.Context, ticket string, dueAt time.Time, by string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE deploy_schedules SET state = 'claimed', claimed_by = ?, updated_at = ?
		WHERE ticket = ? AND due_at = ? AND state = 'waiting'`, by, dTime(time.Now()), ticket, dTime(dueAt))
	return pipelineConflict(affected(res, err, "claim schedule "+ticket))
}

func (s deployStore) TakeOverSchedule(ctx context.Context, ticket, from, by string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE deploy_schedules SET claimed_by = ?, updated_at = ?
		WHERE ticket = ? AND state = 'claimed' AND claimed_by = ?`, by, dTime(time.Now()), ticket, from)
	return pipelineConflict(affected(res, err, "take over schedule "+ticket))
}

func (s deployStore) AddVote(ctx context.Context, v pipeline.Vote) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO deploy_votes(ticket, stage, voter, approve, comment, source, at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		v.Ticket, v.Stage, v.Voter, v.Approve, v.Comment, v.Source, dTime(v.At))
	if isUnique(err) {
		return fmt.Errorf("%s on %s %s: %w", v.Voter, v.Ticket, v.Stage, pipeline.ErrAlreadyVoted)
	}
	if err != nil {
		return fmt.Errorf("store: vote: %w", err)
	}
	return nil
}

func (s deployStore) Votes(ctx context.Context, ticket, stage string) ([]pipeline.Vote, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT ticket, stage, voter, approve, comment, source, at FROM deploy_votes
		WHERE ticket = ? AND stage = ? ORDER BY at`, ticket, stage)
	if err != nil {
		return nil, fmt.Errorf("store: votes: %w", err)
	}
	defer rows.Close()
	var out []pipeline.Vote
	for rows.Next() {
		var v pipeline.Vote
		var at string
		if err := rows.Scan(&v.Ticket, &v.Stage, &v.Voter, &v.Approve, &v.Comment, &v.Source, &at); err != nil {
			return nil, err
		}
		v.At = dParse(at)
		out = append(out, v)
	}
	return out, rows.Err()
}

const holdCols = `id, ticket, app, environment, from_version, to_version, state, finish_nonce, rollback_nonce, expires_at, created_at, reminded_at, decided_by`

func scanHold(sc interface{ Scan(...any) error }) (pipeline.Hold, error) {
	var h pipeline.Hold
	var exp, created, reminded string
	err := sc.Scan(&h.ID, &h.Ticket, &h.App, &h.Environment, &h.FromVersion, &h.ToVersion, &h.State, &h.FinishNonce,
		&h.RollbackNonce, &exp, &created, &reminded, &h.DecidedBy)
	h.ExpiresAt, h.CreatedAt, h.RemindedAt = dParse(exp), dParse(created), dParse(reminded)
	return h, err
}

func (s deployStore) CreateHold(ctx context.Context, h pipeline.Hold) (pipeline.Hold, error) {
	_, err := s.db.ExecContext(ctx, `INSERT INTO deploy_holds(ticket, app, environment, from_version, to_version, state,
		finish_nonce, rollback_nonce, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(ticket) DO NOTHING`,
		h.Ticket, h.App, h.Environment, h.FromVersion, h.ToVersion, h.State, h.FinishNonce, h.RollbackNonce, dTime(h.ExpiresAt), dTime(h.CreatedAt))
	if err != nil {
		return h, fmt.Errorf("store: create hold %s: %w", h.Ticket, err)
	}
	return s.HoldFor(ctx, h.Ticket)
}

func (s deployStore) hold(ctx context.Context, where string, arg any) (pipeline.Hold, error) {
	h, err := scanHold(s.db.QueryRowContext(ctx, `SELECT `+holdCols+` FROM deploy_holds WHERE `+where, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return h, fmt.Errorf("hold %v: %w", arg, ErrNotFound)
	}
	return h, err
}

func (s deployStore) GetHold(ctx context.Context, id int64) (pipeline.Hold, error) {
	return s.hold(ctx, "id = ?", id)
}

func (s deployStore) HoldFor(ctx context.Context, ticket string) (pipeline.Hold, error) {
	return s.hold(ctx, "ticket = ?", ticket)
}

func (s deployStore) OpenHolds(ctx context.Context) ([]pipeline.Hold, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+holdCols+` FROM deploy_holds WHERE state = 'open' ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: open holds: %w", err)
	}
	defer rows.Close()
	var out []pipeline.Hold
	for rows.Next() {
		h, err := scanHold(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

func (s deployStore) DecideHold(ctx context.Context, id int64, to pipeline.HoldState, by string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE deploy_holds SET state = ?, decided_by = ? WHERE id = ? AND state = 'open'`, to, by, id)
	return pipelineConflict(affected(res, err, fmt.Sprintf("hold %d -> %s", id, to)))
}

func (s deployStore) MarkReminded(ctx context.Context, id int64, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE deploy_holds SET reminded_at = ? WHERE id = ? AND reminded_at = ''`, dTime(at), id)
	return pipelineConflict(affected(res, err, fmt.Sprintf("remind hold %d", id)))
}

func (s deployStore) UseLink(ctx context.Context, nonce, who string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO deploy_link_uses(nonce, who, at) VALUES (?, ?, ?)`, nonce, who, dTime(time.Now()))
	if isUnique(err) {
		return fmt.Errorf("%w (by %s)", pipeline.ErrLinkUsed, who)
	}
	if err != nil {
		return fmt.Errorf("store: use link: %w", err)
	}
	return nil
}

func (s deployStore) AddBlock(ctx context.Context, b pipeline.Block) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO deploy_blocks(app, environment, version, reason, by_actor, at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT(app, environment, version) DO UPDATE SET reason = excluded.reason, by_actor = excluded.by_actor, at = excluded.at`,
		b.App, b.Environment, b.Version, b.Reason, b.By, dTime(b.At))
	if err != nil {
		return fmt.Errorf("store: block %s %s on %s: %w", b.App, b.Version, b.Environment, err)
	}
	return nil
}

func (s deployStore) RemoveBlock(ctx context.Context, app, env, version string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM deploy_blocks WHERE app = ? AND environment = ? AND version = ?`, app, env, version)
	if err == nil {
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("block of %s %s on %s: %w", app, version, env, ErrNotFound)
		}
	}
	return err
}

func (s deployStore) GetBlock(ctx context.Context, app, env, version string) (pipeline.Block, bool, error) {
	b := pipeline.Block{App: app, Environment: env, Version: version}
	var at string
	err := s.db.QueryRowContext(ctx, `SELECT reason, by_actor, at FROM deploy_blocks WHERE app = ? AND environment = ? AND version = ?`,
		app, env, version).Scan(&b.Reason, &b.By, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return b, false, nil
	}
	b.At = dParse(at)
	return b, err == nil, err
}

func (s deployStore) Blocks(ctx context.Context) ([]pipeline.Block, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT app, environment, version, reason, by_actor, at FROM deploy_blocks ORDER BY at`)
	if err != nil {
		return nil, fmt.Errorf("store: blocks: %w", err)
	}
	defer rows.Close()
	var out []pipeline.Block
	for rows.Next() {
		var b pipeline.Block
		var at string
		if err := rows.Scan(&b.App, &b.Environment, &b.Version, &b.Reason, &b.By, &at); err != nil {
			return nil, err
		}
		b.At = dParse(at)
		out = append(out, b)
	}
	return out, rows.Err()
}

// Record writes the deploy event into the audit log.
func (s deployStore) Record(ctx context.Context, r pipeline.Record) error {
	return s.db.Audit(ctx, AuditEntry{At: r.At, Actor: r.Actor, Source: r.Source, Action: r.Action,
		Environment: r.Environment, Target: r.Target, Result: r.Result, Detail: r.Detail})
}
