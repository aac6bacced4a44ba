-- Host registration tokens, as Rancher's registrationtokens: an owner asks
-- for one, a host registers itself with it. The token is looked up by its
-- sha256 and kept sealed (AES-GCM, key from config) only so that the
-- ready-to-run command can be shown again.
CREATE TABLE registration_tokens (
    id           INTEGER PRIMARY KEY,
    environment  TEXT NOT NULL REFERENCES environments(name) ON DELETE CASCADE,
    token_hash   BLOB NOT NULL UNIQUE,
    token_sealed BLOB NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    expires_at   TEXT NOT NULL,
    revoked_at   TEXT
);
CREATE INDEX registration_tokens_env ON registration_tokens(environment, expires_at);

-- Users who log in through single sign-on: the identity provider's issuer
-- and subject (stable, unlike names and e-mail addresses). Empty for
-- local users.
ALTER TABLE users ADD COLUMN sso_issuer TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN sso_subject TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX users_sso ON users(sso_issuer, sso_subject) WHERE sso_subject != '';
