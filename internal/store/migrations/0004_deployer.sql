-- Deployer: stack revisions (history, redeploys) and per-service upgrade state.
CREATE TABLE deployer_revisions (
    environment TEXT NOT NULL,
    stack       TEXT NOT NULL,
    number      INTEGER NOT NULL,
    version     TEXT NOT NULL DEFAULT '',
    spec        TEXT NOT NULL,              -- JSON deployer.StackSpec
    compose     TEXT NOT NULL DEFAULT '',
    rancher     TEXT NOT NULL DEFAULT '',
    variables   TEXT NOT NULL DEFAULT '{}', -- JSON object
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    PRIMARY KEY (environment, stack, number)
);

CREATE TABLE deployer_services (
    environment    TEXT NOT NULL,
    stack          TEXT NOT NULL,
    service        TEXT NOT NULL,
    state          TEXT NOT NULL,           -- active | upgrading | upgraded | finishing-upgrade | rolling-back
    failed         TEXT NOT NULL DEFAULT '',
    spec           TEXT NOT NULL,           -- JSON deployer.ServiceSpec
    deployment     TEXT NOT NULL,
    version        TEXT NOT NULL DEFAULT '',
    revision       INTEGER NOT NULL DEFAULT 0,
    old_spec       TEXT,                    -- JSON, set while an upgrade is held
    old_deployment TEXT NOT NULL DEFAULT '',
    old_version    TEXT NOT NULL DEFAULT '',
    old_revision   INTEGER NOT NULL DEFAULT 0,
    updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    PRIMARY KEY (environment, stack, service)
);
