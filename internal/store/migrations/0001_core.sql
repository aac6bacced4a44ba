-- Environments and their Docker hosts.
CREATE TABLE environments (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

CREATE TABLE hosts (
    id          INTEGER PRIMARY KEY,
    environment TEXT NOT NULL REFERENCES environments(name) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    endpoint    TEXT NOT NULL,          -- unix:///var/run/docker.sock or tcp://host:2376
    address     TEXT NOT NULL DEFAULT '', -- IP its published ports answer on
    labels      TEXT NOT NULL DEFAULT '{}', -- JSON object
    state       TEXT NOT NULL DEFAULT 'active', -- active | draining
    tls_sealed  BLOB,                   -- TLS material, encrypted at rest
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    UNIQUE (environment, name),
    UNIQUE (environment, endpoint)
);

-- Every change, who made it and from where.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    actor       TEXT NOT NULL,
    source      TEXT NOT NULL DEFAULT '',
    action      TEXT NOT NULL,
    environment TEXT NOT NULL DEFAULT '',
    target      TEXT NOT NULL DEFAULT '',
    result      TEXT NOT NULL DEFAULT 'ok',
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_env ON audit_log(environment, at);
