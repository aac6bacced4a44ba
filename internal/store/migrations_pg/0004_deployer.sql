-- PostgreSQL translation of migrations/0004_deployer.sql: same tables and columns;
-- BIGINT for integers, BOOLEAN for flags, BYTEA for blobs.
-- Deployer: stack revisions (history, redeploys) and per-service upgrade state.
CREATE TABLE deployer_revisions (
    environment TEXT NOT NULL,
    stack       TEXT NOT NULL,
    number      BIGINT NOT NULL,
    version     TEXT NOT NULL DEFAULT '',
    spec        TEXT NOT NULL,              -- JSON deployer.StackSpec
    compose     TEXT NOT NULL DEFAULT '',
    rancher     TEXT NOT NULL DEFAULT '',
    variables   TEXT NOT NULL DEFAULT '{}', -- JSON object
    created_at  TEXT NOT NULL DEFAULT (to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
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
    revision       BIGINT NOT NULL DEFAULT 0,
    old_spec       TEXT,                    -- JSON, set while an upgrade is held
    old_deployment TEXT NOT NULL DEFAULT '',
    old_version    TEXT NOT NULL DEFAULT '',
    old_revision   BIGINT NOT NULL DEFAULT 0,
    updated_at     TEXT NOT NULL DEFAULT (to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
    PRIMARY KEY (environment, stack, service)
);
