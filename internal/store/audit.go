package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// AuditEntry is one recorded change: who did what, where, from which
// address, and how it ended.
type AuditEntry struct {
	ID          int64     `json:"id"`
	At          time.Time `json:"at"`
	Actor       string    `json:"actor"`  // user name, or key:<access key> for environment keys
	Source      string    `json:"source"` // client address
	Action      string    `json:"action"` // e.g. user.create, member.set, deploy
	Environment string    `json:"environment,omitempty"`
	Target      string    `json:"target,omitempty"`
	Result      string    `json:"result"` // ok | denied | failed
	Detail      string    `json:"detail,omitempty"`
}

// AuditQuery filters the audit log. Empty fields match everything; Envs,
// when non-nil, restricts to those environments (and is how a non-admin's
// view is limited to environments they may see).
type AuditQuery struct {
	Environment string
	Envs        []string
	Actor       string
	Action      string
	Limit       int // default 100, at most 1000
}

// Audit appends e. A zero At means now, an empty Result means ok.
func (db *DB) Audit(ctx context.Context, e AuditEntry) error {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	if e.Result == "" {
		e.Result = "ok"
	}
	_, err := db.ExecContext(ctx, `INSERT INTO audit_log(at, actor, source, action, environment, target, result, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, authTime(e.At), e.Actor, e.Source, e.Action, e.Environment, e.Target, e.Result, e.Detail)
	if err != nil {
		return fmt.Errorf("store: audit %s by %s: %w", e.Action, e.Actor, err)
	}
	return nil
}

// AuditLog returns matching entries, newest first.
func (db *DB) AuditLog(ctx context.Context, q AuditQuery) ([]AuditEntry, error) {
	var where []string
	var args []any
	if q.Environment != "" {
		where, args = append(where, "environment = ?"), append(args, q.Environment)
	}
	if q.Envs != nil {
		if len(q.Envs) == 0 {
			return []AuditEntry{}, nil
		}
		where = append(where, "environment IN (?"+strings.Repeat(", ?", len(q.Envs)-1)+")")
		for _, e := range q.Envs {
			args = append(args, e)
		}
	}
	if q.Actor != "" {
		where, args = append(where, "actor = ?"), append(args, q.Actor)
	}
	if q.Action != "" {
		where, args = append(where, "action = ?"), append(args, q.Action)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	query := `SELECT id, at, actor, source, action, environment, target, result, detail FROM audit_log`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY id DESC LIMIT ?"
	rows, err := db.QueryContext(ctx, query, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("store: audit log: %w", err)
	}
	defer rows.Close()
	out := []AuditEntry{}
	for rows.Next() {
		var e AuditEntry
		var at string
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Source, &e.Action, &e.Environment, &e.Target, &e.Result, &e.Detail); err != nil {
			return nil, err
		}
		e.At = authParseTime(at)
		out = append(out, e)
	}
	return out, rows.Err()
}
