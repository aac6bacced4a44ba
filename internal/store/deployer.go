package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dockmaster/dockmaster/deployer"
)

var _ deployer.Store = (*DB)(nil)

const timeLayout = "2006-01-02T15:04:05.000Z"

// notFound and conflict wrap both this package's and the deployer's
// sentinels, so either errors.Is check works.
func notFound(what string) error {
	return fmt.Errorf("store: %s: %w: %w", what, ErrNotFound, deployer.ErrNotFound)
}

func conflict(what string) error {
	return fmt.Errorf("store: %s: %w: %w", what, ErrConflict, deployer.ErrConflict)
}

// AddRevision implements deployer.Store.
func (db *DB) AddRevision(ctx context.Context, rev deployer.Revision) (int, error) {
	spec, err := json.Marshal(rev.Spec)
	if err != nil {
		return 0, fmt.Errorf("store: revision of %s/%s: %w", rev.Env, rev.Stack, err)
	}
	vars, err := json.Marshal(rev.Variables)
	if err != nil {
		return 0, fmt.Errorf("store: revision of %s/%s: %w", rev.Env, rev.Stack, err)
	}
	var n int
	err = db.Tx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(number), 0) + 1 FROM deployer_revisions
			WHERE environment = ? AND stack = ?`, rev.Env, rev.Stack).Scan(&n); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO deployer_revisions
			(environment, stack, number, version, spec, compose, rancher, variables, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			rev.Env, rev.Stack, n, rev.Version, string(spec), rev.Compose, rev.Rancher, string(vars), rev.CreatedBy)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: add revision of %s/%s: %w", rev.Env, rev.Stack, err)
	}
	return n, nil
}

const revisionCols = `environment, stack, number, version, spec, compose, rancher, variables, created_at, created_by`

func scanRevision(row interface{ Scan(...any) error }) (deployer.Revision, error) {
	var r deployer.Revision
	var spec, vars, created string
	if err := row.Scan(&r.Env, &r.Stack, &r.Number, &r.Version, &spec, &r.Compose, &r.Rancher, &vars, &created, &r.CreatedBy); err != nil {
		return r, err
	}
	if err := json.Unmarshal([]byte(spec), &r.Spec); err != nil {
		return r, fmt.Errorf("revision %d spec: %w", r.Number, err)
	}
	if err := json.Unmarshal([]byte(vars), &r.Variables); err != nil {
		return r, fmt.Errorf("revision %d variables: %w", r.Number, err)
	}
	r.CreatedAt, _ = time.Parse(timeLayout, created)
	return r, nil
}

// Revision implements deployer.Store.
func (db *DB) Revision(ctx context.Context, env, stack string, number int) (deployer.Revision, error) {
	r, err := scanRevision(db.QueryRowContext(ctx, `SELECT `+revisionCols+` FROM deployer_revisions
		WHERE environment = ? AND stack = ? AND number = ?`, env, stack, number))
	if errors.Is(err, sql.ErrNoRows) {
		return r, notFound(fmt.Sprintf("revision %d of %s/%s", number, env, stack))
	}
	if err != nil {
		return r, fmt.Errorf("store: revision %d of %s/%s: %w", number, env, stack, err)
	}
	return r, nil
}

// Revisions implements deployer.Store.
func (db *DB) Revisions(ctx context.Context, env, stack string) ([]deployer.Revision, error) {
	rows, err := db.QueryContext(ctx, `SELECT `+revisionCols+` FROM deployer_revisions
		WHERE environment = ? AND stack = ? ORDER BY number`, env, stack)
	if err != nil {
		return nil, fmt.Errorf("store: revisions of %s/%s: %w", env, stack, err)
	}
	defer rows.Close()
	var out []deployer.Revision
	for rows.Next() {
		r, err := scanRevision(rows)
		if err != nil {
			return nil, fmt.Errorf("store: revisions of %s/%s: %w", env, stack, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: revisions of %s/%s: %w", env, stack, err)
	}
	return out, nil
}

const serviceCols = `environment, stack, service, state, failed, spec, deployment, version, revision,
	old_spec, old_deployment, old_version, old_revision, updated_at`

func scanService(row interface{ Scan(...any) error }) (deployer.ServiceRecord, error) {
	var r deployer.ServiceRecord
	var spec, updated string
	var old sql.NullString
	if err := row.Scan(&r.Env, &r.Stack, &r.Service, &r.State, &r.Failed, &spec, &r.Deployment, &r.Version, &r.Revision,
		&old, &r.OldDeployment, &r.OldVersion, &r.OldRevision, &updated); err != nil {
		return r, err
	}
	if err := json.Unmarshal([]byte(spec), &r.Spec); err != nil {
		return r, fmt.Errorf("service %s spec: %w", r.Service, err)
	}
	if old.Valid {
		r.Old = new(deployer.ServiceSpec)
		if err := json.Unmarshal([]byte(old.String), r.Old); err != nil {
			return r, fmt.Errorf("service %s old spec: %w", r.Service, err)
		}
	}
	r.UpdatedAt, _ = time.Parse(timeLayout, updated)
	return r, nil
}

// Service implements deployer.Store.
func (db *DB) Service(ctx context.Context, env, stack, service string) (deployer.ServiceRecord, error) {
	r, err := scanService(db.QueryRowContext(ctx, `SELECT `+serviceCols+` FROM deployer_services
		WHERE environment = ? AND stack = ? AND service = ?`, env, stack, service))
	if errors.Is(err, sql.ErrNoRows) {
		return r, notFound(fmt.Sprintf("service %s/%s/%s", env, stack, service))
	}
	if err != nil {
		return r, fmt.Errorf("store: service %s/%s/%s: %w", env, stack, service, err)
	}
	return r, nil
}

// Services implements deployer.Store.
func (db *DB) Services(ctx context.Context, env, stack string) ([]deployer.ServiceRecord, error) {
	rows, err := db.QueryContext(ctx, `SELECT `+serviceCols+` FROM deployer_services
		WHERE environment = ? AND (? = '' OR stack = ?) ORDER BY stack, service`, env, stack, stack)
	if err != nil {
		return nil, fmt.Errorf("store: services of %s/%s: %w", env, stack, err)
	}
	defer rows.Close()
	var out []deployer.ServiceRecord
	for rows.Next() {
		r, err := scanService(rows)
		if err != nil {
			return nil, fmt.Errorf("store: services of %s/%s: %w", env, stack, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: services of %s/%s: %w", env, stack, err)
	}
	return out, nil
}

func serviceJSON(r deployer.ServiceRecord) (spec string, old sql.NullString, err error) {
	b, err := json.Marshal(r.Spec)
	if err != nil {
		return "", old, err
	}
	if r.Old != nil {
		ob, err := json.Marshal(r.Old)
		if err != nil {
			return "", old, err
		}
		old = sql.NullString{String: string(ob), Valid: true}
	}
	return string(b), old, nil
}

// CreateService implements deployer.Store.
func (db *DB) CreateService(ctx context.Context, r deployer.ServiceRecord) error {
	spec, old, err := serviceJSON(r)
	if err != nil {
		return fmt.Errorf("store: create service %s/%s/%s: %w", r.Env, r.Stack, r.Service, err)
	}
	res, err := db.ExecContext(ctx, `INSERT INTO deployer_services (`+serviceCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT DO NOTHING`,
		r.Env, r.Stack, r.Service, r.State, r.Failed, spec, r.Deployment, r.Version, r.Revision,
		old, r.OldDeployment, r.OldVersion, r.OldRevision, authTime(time.Now()))
	if err != nil {
		return fmt.Errorf("store: create service %s/%s/%s: %w", r.Env, r.Stack, r.Service, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: create service %s/%s/%s: %w", r.Env, r.Stack, r.Service, err)
	} else if n == 0 {
		return conflict(fmt.Sprintf("create service %s/%s/%s: exists", r.Env, r.Stack, r.Service))
	}
	return nil
}

// UpdateService implements deployer.Store.
func (db *DB) UpdateService(ctx context.Context, r deployer.ServiceRecord, from deployer.ServiceState) error {
	spec, old, err := serviceJSON(r)
	if err != nil {
		return fmt.Errorf("store: update service %s/%s/%s: %w", r.Env, r.Stack, r.Service, err)
	}
	res, err := db.ExecContext(ctx, `UPDATE deployer_services SET state = ?, failed = ?, spec = ?, deployment = ?,
		version = ?, revision = ?, old_spec = ?, old_deployment = ?, old_version = ?, old_revision = ?,
		updated_at = ?
		WHERE environment = ? AND stack = ? AND service = ? AND state = ?`,
		r.State, r.Failed, spec, r.Deployment, r.Version, r.Revision, old, r.OldDeployment, r.OldVersion, r.OldRevision,
		authTime(time.Now()), r.Env, r.Stack, r.Service, from)
	if err != nil {
		return fmt.Errorf("store: update service %s/%s/%s: %w", r.Env, r.Stack, r.Service, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: update service %s/%s/%s: %w", r.Env, r.Stack, r.Service, err)
	} else if n == 0 {
		return conflict(fmt.Sprintf("service %s/%s/%s %s -> %s: not in state %s", r.Env, r.Stack, r.Service, from, r.State, from))
	}
	return nil
}
