-- Deploys: tickets waiting for their window, approval votes, held
-- upgrades (approval requests), used links and blocked versions. Times are
-- fixed-width UTC text so they compare as text.
CREATE TABLE deploy_schedules (
    ticket      TEXT PRIMARY KEY,
    environment TEXT NOT NULL,
    due_at      TEXT NOT NULL,
    window_end  TEXT NOT NULL,
    next_label  TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL,          -- waiting, claimed
    claimed_by  TEXT NOT NULL DEFAULT '',
    updated_at  TEXT NOT NULL
);
CREATE INDEX deploy_schedules_due ON deploy_schedules(due_at) WHERE state = 'waiting';

CREATE TABLE deploy_votes (
    ticket  TEXT NOT NULL,
    stage   TEXT NOT NULL,              -- deploy, finish
    voter   TEXT NOT NULL,              -- authenticated user, never a body field
    approve INTEGER NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    source  TEXT NOT NULL DEFAULT '',
    at      TEXT NOT NULL,
    PRIMARY KEY (ticket, stage, voter)
);

CREATE TABLE deploy_holds (
    id             INTEGER PRIMARY KEY,
    ticket         TEXT NOT NULL UNIQUE,
    app            TEXT NOT NULL,
    environment    TEXT NOT NULL,
    from_version   TEXT NOT NULL DEFAULT '',
    to_version     TEXT NOT NULL,
    state          TEXT NOT NULL,       -- open, finished, rolled-back
    finish_nonce   TEXT NOT NULL,
    rollback_nonce TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    reminded_at    TEXT NOT NULL DEFAULT '',
    decided_by     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX deploy_holds_open ON deploy_holds(state) WHERE state = 'open';

CREATE TABLE deploy_link_uses (
    nonce TEXT NOT NULL,
    who   TEXT NOT NULL,
    at    TEXT NOT NULL,
    PRIMARY KEY (nonce, who)
);

CREATE TABLE deploy_blocks (
    app         TEXT NOT NULL,
    environment TEXT NOT NULL,
    version     TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    by_actor    TEXT NOT NULL DEFAULT '',
    at          TEXT NOT NULL,
    PRIMARY KEY (app, environment, version)
);
