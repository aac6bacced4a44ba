-- Pipeline: runs (one per push that matches an app), their stages, and
-- deployment tickets. The engine reads webhook events through its cursor.
CREATE TABLE engine_cursor (
    name     TEXT PRIMARY KEY,
    event_id INTEGER NOT NULL
);

CREATE TABLE runs (
    id           INTEGER PRIMARY KEY,
    app          TEXT NOT NULL,
    repo         TEXT NOT NULL,      -- clone URL
    ref          TEXT NOT NULL,
    branch       TEXT NOT NULL DEFAULT '',
    tag          TEXT NOT NULL DEFAULT '',
    commit_sha   TEXT NOT NULL,
    message      TEXT NOT NULL DEFAULT '',
    pusher       TEXT NOT NULL DEFAULT '',
    version      TEXT NOT NULL,
    environment  TEXT NOT NULL,      -- where its ticket goes
    event_id     INTEGER,            -- the webhook event that started it
    state        TEXT NOT NULL,      -- pending testing building ticketing ticketed failed canceled superseded
    reason       TEXT NOT NULL DEFAULT '',
    image        TEXT NOT NULL DEFAULT '', -- registry/name:version
    digest       TEXT NOT NULL DEFAULT '',
    attempt      INTEGER NOT NULL DEFAULT 1,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    UNIQUE (event_id, app)
);
CREATE INDEX runs_active ON runs(state) WHERE state IN ('pending','testing','building','ticketing');
CREATE INDEX runs_app_branch ON runs(app, branch, id);

CREATE TABLE stages (
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,       -- test, build, ticket
    attempt     INTEGER NOT NULL,
    executor    TEXT NOT NULL,       -- none, jenkins, command, docker, builtin
    state       TEXT NOT NULL,       -- pending running succeeded failed skipped canceled
    started_at  TEXT,
    finished_at TEXT,
    reason      TEXT NOT NULL DEFAULT '',
    external    TEXT NOT NULL DEFAULT '{}', -- executor bookkeeping (queue item, build number), JSON
    links       TEXT NOT NULL DEFAULT '{}', -- name -> URL, JSON
    log         TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, name, attempt)
);

CREATE TABLE ticket_counters (
    prefix TEXT PRIMARY KEY,
    next   INTEGER NOT NULL
);

CREATE TABLE tickets (
    id          INTEGER PRIMARY KEY,
    key         TEXT NOT NULL UNIQUE,   -- DEPLOY-111
    app         TEXT NOT NULL,
    branch      TEXT NOT NULL DEFAULT '',
    commit_sha  TEXT NOT NULL DEFAULT '',
    version     TEXT NOT NULL,
    image       TEXT NOT NULL DEFAULT '',
    digest      TEXT NOT NULL DEFAULT '',
    environment TEXT NOT NULL,
    pusher      TEXT NOT NULL DEFAULT '',
    run_id      INTEGER REFERENCES runs(id),
    state       TEXT NOT NULL,          -- open scheduled deploying awaiting-confirmation done rolled-back failed canceled expired
    reason      TEXT NOT NULL DEFAULT '',
    links       TEXT NOT NULL DEFAULT '{}',
    created_by  TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
-- One ticket per run and environment: a crash during ticket creation cannot make two.
CREATE UNIQUE INDEX tickets_run_env ON tickets(run_id, environment) WHERE run_id IS NOT NULL;
CREATE INDEX tickets_app_env ON tickets(app, environment, id);
