-- Users, their roles per environment, API keys and login sessions.
-- Secrets are never stored: passwords as bcrypt, key secrets and session
-- ids as sha256 (they are 256-bit random, so a plain hash is enough).
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL DEFAULT '',  -- bcrypt; '' = no password login
    admin         INTEGER NOT NULL DEFAULT 0,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

CREATE TABLE memberships (
    environment TEXT NOT NULL REFERENCES environments(name) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'member', 'read-only', 'restricted')),
    PRIMARY KEY (environment, user_id)
);
CREATE INDEX memberships_user ON memberships(user_id);

-- An account key acts as its user (user_id set, environment NULL); an
-- environment key carries one role on one environment (environment set,
-- user_id NULL).
CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY,
    access_key  TEXT NOT NULL UNIQUE,
    secret_hash BLOB NOT NULL,
    user_id     INTEGER REFERENCES users(id) ON DELETE CASCADE,
    environment TEXT REFERENCES environments(name) ON DELETE CASCADE,
    role        TEXT NOT NULL DEFAULT '' CHECK (role IN ('', 'owner', 'member', 'read-only', 'restricted')),
    description TEXT NOT NULL DEFAULT '',
    created_by  TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    CHECK ((user_id IS NULL) != (environment IS NULL)),
    CHECK ((environment IS NULL) = (role = ''))
);

CREATE TABLE sessions (
    id_hash    BLOB PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    source     TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    expires_at TEXT NOT NULL
);
CREATE INDEX sessions_expiry ON sessions(expires_at);
CREATE INDEX audit_log_actor ON audit_log(actor, at);
