-- Sign-in through another identity provider (OpenID Connect).

-- Every flow also carries the OAuth `state` and the OpenID `nonce` it sent.
ALTER TABLE auth_flows ADD COLUMN state TEXT NOT NULL DEFAULT '';
ALTER TABLE auth_flows ADD COLUMN nonce TEXT NOT NULL DEFAULT '';

-- Accounts of people who sign in elsewhere: the provider's (issuer, sub)
-- is the key, never the email.
CREATE TABLE identities (
    issuer  TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX identities_by_user ON identities(user_id);

-- What a provider told us about one of our sessions: its own session id
-- (for back-channel logout) and its refresh token, sealed (AES-256-GCM,
-- key in DATA_DIR), to revoke at logout.
CREATE TABLE provider_sessions (
    session_id    TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    issuer        TEXT NOT NULL,
    subject       TEXT NOT NULL,
    provider_sid  TEXT,
    refresh_token TEXT,
    created_at    INTEGER NOT NULL
);
CREATE INDEX provider_sessions_by_sid ON provider_sessions(issuer, provider_sid);

-- Calls to a provider that must happen but not on a request's path
-- (revoking a token, a remote logout), kept until the provider confirms.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,               -- sealed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX outbox_due ON outbox(next_attempt_at);

-- Back-channel logout tokens already acted on (their jti), until expiry.
CREATE TABLE seen_logout_tokens (
    jti_hash   TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
