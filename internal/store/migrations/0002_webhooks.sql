-- Webhook deliveries as received (idempotent by provider delivery id) and
-- the normalized events the pipeline engine consumes in id order.
CREATE TABLE deliveries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    provider      TEXT NOT NULL,
    delivery_id   TEXT NOT NULL,            -- the provider's id, or sha256:<body hash>
    event_name    TEXT NOT NULL DEFAULT '', -- the provider's own event name
    repository    TEXT NOT NULL DEFAULT '', -- repository / job / image repository
    verdict       TEXT NOT NULL,            -- accepted | ignored | ping
    reason        TEXT NOT NULL DEFAULT '',
    headers       TEXT NOT NULL DEFAULT '{}', -- JSON, secrets redacted
    body          BLOB NOT NULL,
    event_kind    TEXT NOT NULL DEFAULT '',
    event         TEXT,                     -- JSON webhooks.Event when not actionable (else in events.payload)
    actionable    INTEGER NOT NULL DEFAULT 0,
    duplicates    INTEGER NOT NULL DEFAULT 0, -- later copies answered "duplicate"
    replays       INTEGER NOT NULL DEFAULT 0,
    received_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    UNIQUE (provider, delivery_id)
);
CREATE INDEX deliveries_repository ON deliveries(repository, id);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery    INTEGER NOT NULL REFERENCES deliveries(id),
    kind        TEXT NOT NULL,              -- push | tag | build | image
    payload     TEXT NOT NULL,              -- JSON webhooks.Event
    source      TEXT NOT NULL DEFAULT 'hook', -- hook | replay
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE INDEX events_delivery ON events(delivery);
