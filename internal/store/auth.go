package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// authTime formats t as the SQL default strftime('%Y-%m-%dT%H:%M:%fZ')
// (timeLayout), so stored times compare correctly as text.
func authTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func authParseTime(s string) time.Time {
	t, _ := time.Parse(timeLayout, s)
	return t
}

// User is a local account. PasswordHash is bcrypt, never the password.
type User struct {
	ID           int64
	Name         string
	PasswordHash string
	Admin        bool
	Disabled     bool
	CreatedAt    time.Time
}

// Membership is a user's role on an environment.
type Membership struct {
	Environment string
	UserID      int64
	User        string
	Role        string // owner | member | read-only | restricted
}

// APIKey is a stored key. SecretHash is sha256 of the secret. Exactly one
// of UserID (an account key, acting as that user) and Environment (an
// environment key carrying Role) is set.
type APIKey struct {
	ID          int64
	AccessKey   string
	SecretHash  []byte
	UserID      int64
	Environment string
	Role        string
	Description string
	CreatedBy   string
	CreatedAt   time.Time
}

// Session is a login. IDHash is sha256 of the cookie value.
type Session struct {
	IDHash    []byte
	UserID    int64
	CSRFToken string
	Source    string
	ExpiresAt time.Time
}

// CreateUser inserts u and returns it with its id. A taken name is
// ErrConflict.
func (db *DB) CreateUser(ctx context.Context, u User) (User, error) {
	err := db.QueryRowContext(ctx, `INSERT INTO users(name, password_hash, admin, disabled) VALUES (?, ?, ?, ?) RETURNING id`,
		u.Name, u.PasswordHash, u.Admin, u.Disabled).Scan(&u.ID)
	if isUnique(err) {
		return u, fmt.Errorf("store: user %q already exists: %w", u.Name, ErrConflict)
	}
	if err != nil {
		return u, fmt.Errorf("store: user %q: %w", u.Name, err)
	}
	return u, nil
}

const userCols = `id, name, password_hash, admin, disabled, created_at`

func scanUser(row interface{ Scan(...any) error }) (User, error) {
	var u User
	var created string
	err := row.Scan(&u.ID, &u.Name, &u.PasswordHash, &u.Admin, &u.Disabled, &created)
	u.CreatedAt = authParseTime(created)
	return u, err
}

// UserByName returns a user or ErrNotFound.
func (db *DB) UserByName(ctx context.Context, name string) (User, error) {
	u, err := scanUser(db.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	return u, err
}

// UserByID returns a user or ErrNotFound.
func (db *DB) UserByID(ctx context.Context, id int64) (User, error) {
	u, err := scanUser(db.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("user #%d: %w", id, ErrNotFound)
	}
	return u, err
}

// Users lists users by name.
func (db *DB) Users(ctx context.Context) ([]User, error) {
	rows, err := db.QueryContext(ctx, `SELECT `+userCols+` FROM users ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("store: users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// SetPassword replaces a user's password hash and ends their sessions, so
// a changed password logs out whoever had the old one.
func (db *DB) SetPassword(ctx context.Context, userID int64, hash string) error {
	return db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = ? WHERE id = ?`, hash, userID)
		if err != nil {
			return fmt.Errorf("store: user #%d password: %w", userID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("user #%d: %w", userID, ErrNotFound)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ?`, userID)
		return err
	})
}

// SetMembership gives user a role on env, replacing any previous role.
func (db *DB) SetMembership(ctx context.Context, env string, userID int64, role string) error {
	_, err := db.ExecContext(ctx, `INSERT INTO memberships(environment, user_id, role) VALUES (?, ?, ?)
		ON CONFLICT(environment, user_id) DO UPDATE SET role = excluded.role`, env, userID, role)
	if err != nil {
		if isForeignKey(err) {
			return fmt.Errorf("environment %q or user #%d: %w", env, userID, ErrNotFound)
		}
		return fmt.Errorf("store: membership %s/#%d: %w", env, userID, err)
	}
	return nil
}

// DeleteMembership removes user from env; ErrNotFound when not a member.
func (db *DB) DeleteMembership(ctx context.Context, env string, userID int64) error {
	res, err := db.ExecContext(ctx, `DELETE FROM memberships WHERE environment = ? AND user_id = ?`, env, userID)
	if err != nil {
		return fmt.Errorf("store: membership %s/#%d: %w", env, userID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("membership of user #%d on %q: %w", userID, env, ErrNotFound)
	}
	return nil
}

// Memberships lists env's members by user name.
func (db *DB) Memberships(ctx context.Context, env string) ([]Membership, error) {
	rows, err := db.QueryContext(ctx, `SELECT m.environment, m.user_id, u.name, m.role FROM memberships m
		JOIN users u ON u.id = m.user_id WHERE m.environment = ? ORDER BY u.name`, env)
	if err != nil {
		return nil, fmt.Errorf("store: memberships %s: %w", env, err)
	}
	defer rows.Close()
	var out []Membership
	for rows.Next() {
		var m Membership
		if err := rows.Scan(&m.Environment, &m.UserID, &m.User, &m.Role); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// UserRoles maps each environment the user belongs to to their role.
func (db *DB) UserRoles(ctx context.Context, userID int64) (map[string]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT environment, role FROM memberships WHERE user_id = ?`, userID)
	if err != nil {
		return nil, fmt.Errorf("store: roles of user #%d: %w", userID, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var env, role string
		if err := rows.Scan(&env, &role); err != nil {
			return nil, err
		}
		out[env] = role
	}
	return out, rows.Err()
}

// CreateAPIKey stores k (whose secret is already hashed).
func (db *DB) CreateAPIKey(ctx context.Context, k APIKey) (APIKey, error) {
	var user, env any
	if k.UserID != 0 {
		user = k.UserID
	}
	if k.Environment != "" {
		env = k.Environment
	}
	err := db.QueryRowContext(ctx, `INSERT INTO api_keys(access_key, secret_hash, user_id, environment, role, description, created_by)
		VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`, k.AccessKey, k.SecretHash, user, env, k.Role, k.Description, k.CreatedBy).Scan(&k.ID)
	if isUnique(err) {
		return k, fmt.Errorf("store: api key %s: %w", k.AccessKey, ErrConflict)
	}
	if err != nil {
		if isForeignKey(err) {
			return k, fmt.Errorf("api key: environment %q or user #%d: %w", k.Environment, k.UserID, ErrNotFound)
		}
		return k, fmt.Errorf("store: api key %s: %w", k.AccessKey, err)
	}
	return k, nil
}

const keyCols = `id, access_key, secret_hash, COALESCE(user_id, 0), COALESCE(environment, ''), role, description, created_by, created_at`

func scanKey(row interface{ Scan(...any) error }) (APIKey, error) {
	var k APIKey
	var created string
	err := row.Scan(&k.ID, &k.AccessKey, &k.SecretHash, &k.UserID, &k.Environment, &k.Role, &k.Description, &k.CreatedBy, &created)
	k.CreatedAt = authParseTime(created)
	return k, err
}

// APIKey returns the key with this access key, or ErrNotFound.
func (db *DB) APIKey(ctx context.Context, accessKey string) (APIKey, error) {
	k, err := scanKey(db.QueryRowContext(ctx, `SELECT `+keyCols+` FROM api_keys WHERE access_key = ?`, accessKey))
	if errors.Is(err, sql.ErrNoRows) {
		return k, fmt.Errorf("api key %q: %w", accessKey, ErrNotFound)
	}
	return k, err
}

// APIKeys lists keys: a user's account keys (userID != 0), or an
// environment's keys (env != ""), newest first.
func (db *DB) APIKeys(ctx context.Context, userID int64, env string) ([]APIKey, error) {
	rows, err := db.QueryContext(ctx, `SELECT `+keyCols+` FROM api_keys
		WHERE (? != 0 AND user_id = ?) OR (? != '' AND environment = ?) ORDER BY id DESC`, userID, userID, env, env)
	if err != nil {
		return nil, fmt.Errorf("store: api keys: %w", err)
	}
	defer rows.Close()
	var out []APIKey
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// DeleteAPIKey revokes a key; ErrNotFound when it does not exist.
func (db *DB) DeleteAPIKey(ctx context.Context, accessKey string) error {
	res, err := db.ExecContext(ctx, `DELETE FROM api_keys WHERE access_key = ?`, accessKey)
	if err != nil {
		return fmt.Errorf("store: api key %s: %w", accessKey, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("api key %q: %w", accessKey, ErrNotFound)
	}
	return nil
}

// CreateSession stores s and drops sessions that expired before now.
func (db *DB) CreateSession(ctx context.Context, s Session, now time.Time) error {
	return db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at <= ?`, authTime(now)); err != nil {
			return fmt.Errorf("store: expire sessions: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO sessions(id_hash, user_id, csrf_token, source, expires_at) VALUES (?, ?, ?, ?, ?)`,
			s.IDHash, s.UserID, s.CSRFToken, s.Source, authTime(s.ExpiresAt)); err != nil {
			return fmt.Errorf("store: session: %w", err)
		}
		return nil
	})
}

// Session returns the live session with this id hash; a missing or
// expired one is ErrNotFound.
func (db *DB) Session(ctx context.Context, idHash []byte, now time.Time) (Session, error) {
	var s Session
	var exp string
	err := db.QueryRowContext(ctx, `SELECT id_hash, user_id, csrf_token, source, expires_at FROM sessions
		WHERE id_hash = ? AND expires_at > ?`, idHash, authTime(now)).Scan(&s.IDHash, &s.UserID, &s.CSRFToken, &s.Source, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return s, fmt.Errorf("session: %w", ErrNotFound)
	}
	s.ExpiresAt = authParseTime(exp)
	return s, err
}

// DeleteSession ends a session (logout). Deleting a missing one is not an
// error: logging out twice is fine.
func (db *DB) DeleteSession(ctx context.Context, idHash []byte) error {
	if _, err := db.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash = ?`, idHash); err != nil {
		return fmt.Errorf("store: session: %w", err)
	}
	return nil
}
