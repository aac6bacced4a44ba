package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Host states as stored in hosts.state.
const (
	HostActive   = "active"
	HostDraining = "draining"
)

// SetHostState sets a host's stored state (HostActive or HostDraining) and
// reports whether it changed. An unknown host is ErrNotFound.
func (db *DB) SetHostState(ctx context.Context, env, name, state string) (changed bool, err error) {
	if state != HostActive && state != HostDraining {
		return false, fmt.Errorf("store: host %s/%s: state %q: want %s or %s", env, name, state, HostActive, HostDraining)
	}
	res, err := db.ExecContext(ctx, `UPDATE hosts SET state = ? WHERE environment = ? AND name = ? AND state != ?`, state, env, name, state)
	if err != nil {
		return false, fmt.Errorf("store: host %s/%s: set state: %w", env, name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	if n > 0 {
		return true, nil
	}
	var one int
	err = db.QueryRowContext(ctx, `SELECT 1 FROM hosts WHERE environment = ? AND name = ?`, env, name).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("host %s/%s: %w", env, name, ErrNotFound)
	}
	return false, err
}
