package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// Environment is a stored environment.
type Environment struct {
	Name        string
	Description string
	// SwarmManager is the manager endpoint of a Swarm environment; empty
	// for standalone hosts.
	SwarmManager string
}

// Host is a stored Docker host of an environment.
type Host struct {
	ID          int64
	Environment string
	Name        string
	Endpoint    string
	Address     string
	Labels      map[string]string
	State       string // active | draining
}

// UpsertEnvironment creates env or updates its description and Swarm
// manager.
func (db *DB) UpsertEnvironment(ctx context.Context, e Environment) error {
	_, err := db.ExecContext(ctx, `INSERT INTO environments(name, description, swarm_manager) VALUES (?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET description = excluded.description, swarm_manager = excluded.swarm_manager`,
		e.Name, e.Description, e.SwarmManager)
	if err != nil {
		return fmt.Errorf("store: environment %s: %w", e.Name, err)
	}
	return nil
}

// Environments lists environments by name.
func (db *DB) Environments(ctx context.Context) ([]Environment, error) {
	rows, err := db.QueryContext(ctx, `SELECT name, description, swarm_manager FROM environments ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("store: environments: %w", err)
	}
	defer rows.Close()
	var out []Environment
	for rows.Next() {
		var e Environment
		if err := rows.Scan(&e.Name, &e.Description, &e.SwarmManager); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Environment returns one environment or ErrNotFound.
func (db *DB) Environment(ctx context.Context, name string) (Environment, error) {
	var e Environment
	err := db.QueryRowContext(ctx, `SELECT name, description, swarm_manager FROM environments WHERE name = ?`, name).Scan(&e.Name, &e.Description, &e.SwarmManager)
	if errors.Is(err, sql.ErrNoRows) {
		return e, fmt.Errorf("environment %q: %w", name, ErrNotFound)
	}
	return e, err
}

// UpsertHost registers h, keyed by environment and endpoint, so
// registering the same host twice changes nothing. It reports whether
// anything changed.
func (db *DB) UpsertHost(ctx context.Context, h Host) (changed bool, err error) {
	labels, err := json.Marshal(nonNil(h.Labels))
	if err != nil {
		return false, err
	}
	res, err := db.ExecContext(ctx, `INSERT INTO hosts(environment, name, endpoint, address, labels) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(environment, endpoint) DO UPDATE SET name = excluded.name, address = excluded.address, labels = excluded.labels
		WHERE hosts.name != excluded.name OR hosts.address != excluded.address OR hosts.labels != excluded.labels`,
		h.Environment, h.Name, h.Endpoint, h.Address, string(labels))
	if err != nil {
		return false, fmt.Errorf("store: host %s/%s: %w", h.Environment, h.Name, err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// Hosts lists an environment's hosts by name ("" lists all).
func (db *DB) Hosts(ctx context.Context, env string) ([]Host, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, environment, name, endpoint, address, labels, state FROM hosts
		WHERE ? = '' OR environment = ? ORDER BY environment, name`, env, env)
	if err != nil {
		return nil, fmt.Errorf("store: hosts: %w", err)
	}
	defer rows.Close()
	var out []Host
	for rows.Next() {
		var h Host
		var labels string
		if err := rows.Scan(&h.ID, &h.Environment, &h.Name, &h.Endpoint, &h.Address, &labels, &h.State); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(labels), &h.Labels); err != nil {
			return nil, fmt.Errorf("store: host %s labels: %w", h.Name, err)
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
