package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"
)

// RegistrationToken lets a host join an environment. Hash is sha256 of
// the token; Sealed is the token encrypted at rest (internal/seal).
type RegistrationToken struct {
	ID          int64
	Environment string
	Hash        []byte
	Sealed      []byte
	CreatedBy   string
	CreatedAt   time.Time
	ExpiresAt   time.Time
}

const tokenCols = `id, environment, token_hash, token_sealed, created_by, created_at, expires_at`

func scanToken(row interface{ Scan(...any) error }) (RegistrationToken, error) {
	var t RegistrationToken
	var created, expires string
	err := row.Scan(&t.ID, &t.Environment, &t.Hash, &t.Sealed, &t.CreatedBy, &created, &expires)
	t.CreatedAt, t.ExpiresAt = authParseTime(created), authParseTime(expires)
	return t, err
}

// CreateRegistrationToken stores t and returns it with its id. An
// unknown environment is ErrNotFound.
func (db *DB) CreateRegistrationToken(ctx context.Context, t RegistrationToken) (RegistrationToken, error) {
	if _, err := db.Environment(ctx, t.Environment); err != nil {
		return t, err
	}
	err := db.QueryRowContext(ctx, `INSERT INTO registration_tokens(environment, token_hash, token_sealed, created_by, expires_at)
		VALUES (?, ?, ?, ?, ?) RETURNING id`, t.Environment, t.Hash, t.Sealed, t.CreatedBy, authTime(t.ExpiresAt)).Scan(&t.ID)
	if err != nil {
		return t, fmt.Errorf("store: registration token for %s: %w", t.Environment, err)
	}
	t.CreatedAt = time.Now().UTC()
	return t, nil
}

// RegistrationTokens lists env's live tokens (neither expired nor
// revoked at now), newest first.
func (db *DB) RegistrationTokens(ctx context.Context, env string, now time.Time) ([]RegistrationToken, error) {
	rows, err := db.QueryContext(ctx, `SELECT `+tokenCols+` FROM registration_tokens
		WHERE environment = ? AND revoked_at IS NULL AND expires_at > ? ORDER BY id DESC`, env, authTime(now))
	if err != nil {
		return nil, fmt.Errorf("store: registration tokens: %w", err)
	}
	defer rows.Close()
	var out []RegistrationToken
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RegistrationTokenByHash returns the live token with this hash; a
// missing, expired or revoked one is ErrNotFound (the caller cannot tell
// which, and neither can whoever presented it).
func (db *DB) RegistrationTokenByHash(ctx context.Context, hash []byte, now time.Time) (RegistrationToken, error) {
	t, err := scanToken(db.QueryRowContext(ctx, `SELECT `+tokenCols+` FROM registration_tokens
		WHERE token_hash = ? AND revoked_at IS NULL AND expires_at > ?`, hash, authTime(now)))
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("registration token: %w", ErrNotFound)
	}
	return t, err
}

// RevokeRegistrationToken ends token id of env; a token of another
// environment, or one already revoked, is ErrNotFound.
func (db *DB) RevokeRegistrationToken(ctx context.Context, env string, id int64, now time.Time) error {
	res, err := db.ExecContext(ctx, `UPDATE registration_tokens SET revoked_at = ?
		WHERE id = ? AND environment = ? AND revoked_at IS NULL`, authTime(now), id, env)
	if err != nil {
		return fmt.Errorf("store: revoke registration token %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("registration token %d of %s: %w", id, env, ErrNotFound)
	}
	return nil
}

// RegisterHost adds h or brings it up to date, keyed by environment and
// endpoint, with its sealed TLS material (nil for none). sameTLS tells
// whether the stored sealed material holds what h brings (sealing is
// randomized, so the caller opens and compares). It reports whether
// anything changed, so registering the same host twice is a no-op. A
// name taken by another endpoint of the environment is ErrConflict.
func (db *DB) RegisterHost(ctx context.Context, h Host, tlsSealed []byte, sameTLS func(stored []byte) bool) (changed bool, err error) {
	labels, err := json.Marshal(nonNil(h.Labels))
	if err != nil {
		return false, err
	}
	err = db.Tx(ctx, func(tx *sql.Tx) error {
		var (
			id                    int64
			name, addr, oldLabels string
			oldTLS                []byte
		)
		err := tx.QueryRowContext(ctx, `SELECT id, name, address, labels, tls_sealed FROM hosts WHERE environment = ? AND endpoint = ?`,
			h.Environment, h.Endpoint).Scan(&id, &name, &addr, &oldLabels, &oldTLS)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			_, err = tx.ExecContext(ctx, `INSERT INTO hosts(environment, name, endpoint, address, labels, tls_sealed) VALUES (?, ?, ?, ?, ?, ?)`,
				h.Environment, h.Name, h.Endpoint, h.Address, string(labels), tlsSealed)
			changed = err == nil
		case err != nil:
			return err
		default:
			var old map[string]string
			if err := json.Unmarshal([]byte(oldLabels), &old); err != nil {
				return fmt.Errorf("host %s labels: %w", name, err)
			}
			if name == h.Name && addr == h.Address && maps.Equal(old, nonNil(h.Labels)) && sameTLS(oldTLS) {
				return nil
			}
			_, err = tx.ExecContext(ctx, `UPDATE hosts SET name = ?, address = ?, labels = ?, tls_sealed = ? WHERE id = ?`,
				h.Name, h.Address, string(labels), tlsSealed, id)
			changed = err == nil
		}
		if isUnique(err) {
			return fmt.Errorf("host name %q is taken by another endpoint of environment %s: %w", h.Name, h.Environment, ErrConflict)
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: register host %s/%s: %w", h.Environment, h.Name, err)
	}
	return changed, nil
}

// HostTLS returns the sealed TLS material of env's host at endpoint (nil
// when it has none); an unknown host is ErrNotFound.
func (db *DB) HostTLS(ctx context.Context, env, endpoint string) ([]byte, error) {
	var b []byte
	err := db.QueryRowContext(ctx, `SELECT tls_sealed FROM hosts WHERE environment = ? AND endpoint = ?`, env, endpoint).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("host %s in %s: %w", endpoint, env, ErrNotFound)
	}
	return b, err
}

// SSOUser finds or creates the user of a single sign-on identity (issuer,
// subject), named name, and makes its admin flag and memberships exactly
// admin and roles (env -> role), as the identity provider's groups say at
// this login. Environments in roles that do not exist are skipped. A name
// held by a local user, or by another identity, is ErrConflict: a login
// through the provider never takes over an account it did not create.
func (db *DB) SSOUser(ctx context.Context, issuer, subject, name string, admin bool, roles map[string]string) (User, error) {
	var u User
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		u, err = scanUser(tx.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE sso_issuer = ? AND sso_subject = ?`, issuer, subject))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			err := tx.QueryRowContext(ctx, `INSERT INTO users(name, password_hash, admin, sso_issuer, sso_subject) VALUES (?, '', ?, ?, ?) RETURNING id`,
				name, admin, issuer, subject).Scan(&u.ID)
			if isUnique(err) {
				return fmt.Errorf("user name %q is taken by another account: %w", name, ErrConflict)
			}
			if err != nil {
				return err
			}
			u.Name = name
		case err != nil:
			return err
		default:
			_, err = tx.ExecContext(ctx, `UPDATE users SET name = ?, admin = ? WHERE id = ?`, name, admin, u.ID)
			if isUnique(err) {
				return fmt.Errorf("user name %q is taken by another account: %w", name, ErrConflict)
			}
			if err != nil {
				return err
			}
			u.Name = name
		}
		u.Admin = admin
		if _, err := tx.ExecContext(ctx, `DELETE FROM memberships WHERE user_id = ?`, u.ID); err != nil {
			return err
		}
		for env, role := range roles {
			if _, err := tx.ExecContext(ctx, `INSERT INTO memberships(environment, user_id, role)
				SELECT name, CAST(? AS BIGINT), CAST(? AS TEXT) FROM environments WHERE name = ?`, u.ID, role, env); err != nil {
				return fmt.Errorf("membership %s=%s: %w", env, role, err)
			}
		}
		return nil
	})
	if err != nil {
		return u, fmt.Errorf("store: sso user %q: %w", name, err)
	}
	return u, nil
}

// CreateEnvironment adds e; an existing name is ErrConflict (unlike
// UpsertEnvironment, which the config sync uses).
func (db *DB) CreateEnvironment(ctx context.Context, e Environment) error {
	_, err := db.ExecContext(ctx, `INSERT INTO environments(name, description) VALUES (?, ?)`, e.Name, e.Description)
	if isUnique(err) {
		return fmt.Errorf("environment %q already exists: %w", e.Name, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("store: environment %s: %w", e.Name, err)
	}
	return nil
}
