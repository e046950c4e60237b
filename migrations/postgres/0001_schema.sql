-- The whole schema of Chronos auth on PostgreSQL: the SQLite schema as its
-- migrations left it (migrations/sqlite), without what only databases from
-- before existed for (chain refresh tokens). Times are Unix seconds unless
-- a name says ms. Secrets (codes, refresh tokens, flow ids, nonces) are
-- stored only as SHA-256 hashes; provider tokens only sealed.

CREATE TABLE users (
    id         TEXT PRIMARY KEY,                  -- UUID
    email      TEXT NOT NULL UNIQUE,              -- normalised: trimmed, lower case
    name       TEXT,
    avatar_url TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE password_credentials (
    user_id       TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    password_hash TEXT NOT NULL                   -- argon2id PHC string
);

-- Nonces of sign-in form tokens already posted, until they expire.
CREATE TABLE used_form_tokens (
    nonce      TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

-- Sign-in flows started by GET /auth/google/login (the PKCE verifier, the
-- OAuth state and OpenID nonce it sent).
CREATE TABLE auth_flows (
    id_hash       TEXT PRIMARY KEY,
    code_verifier TEXT NOT NULL,
    redirect_uri  TEXT NOT NULL,
    expires_at    BIGINT NOT NULL,
    state         TEXT NOT NULL DEFAULT '',
    nonce         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX auth_flows_by_expiry ON auth_flows(expires_at);

-- One-time authorization codes issued by the sign-in page.
CREATE TABLE auth_codes (
    code_hash      TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_challenge TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT,
    session_id     TEXT                           -- the session it was exchanged for
);
CREATE INDEX auth_codes_by_expiry ON auth_codes(expires_at);

-- One row per session; the refresh counter names the current token.
CREATE TABLE sessions (
    id                TEXT PRIMARY KEY,           -- UUID, the JWT's sid
    user_id           TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at        BIGINT NOT NULL,
    last_used_at      BIGINT NOT NULL,
    user_agent        TEXT,
    ip                TEXT,                       -- coarse: IPv4 /24, IPv6 /48
    revoked_at        BIGINT,
    refresh_counter   BIGINT NOT NULL DEFAULT 0,
    refresh_issued_at BIGINT NOT NULL,
    rotated_at_ms     BIGINT
);
CREATE INDEX sessions_by_user ON sessions(user_id);
CREATE INDEX sessions_by_last_used ON sessions(last_used_at);
CREATE INDEX sessions_by_revoked ON sessions(revoked_at) WHERE revoked_at IS NOT NULL;

-- Revoked sessions, append-only, followed by every server (rows newer than
-- the last seen; a sequence can commit out of order, which the follower's
-- gap handling covers).
CREATE TABLE revocations (
    seq         BIGSERIAL PRIMARY KEY,
    session_id  TEXT NOT NULL,
    revoked_at  BIGINT NOT NULL,
    by_operator BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX revocations_by_time ON revocations(revoked_at);

-- Accounts of people who sign in elsewhere: (issuer, sub) is the key.
CREATE TABLE identities (
    issuer  TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX identities_by_user ON identities(user_id);

-- What a provider told us about one of our sessions.
CREATE TABLE provider_sessions (
    session_id    TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    issuer        TEXT NOT NULL,
    subject       TEXT NOT NULL,
    provider_sid  TEXT,
    refresh_token TEXT,                           -- sealed
    created_at    BIGINT NOT NULL
);
CREATE INDEX provider_sessions_by_sid ON provider_sessions(issuer, provider_sid);

-- Calls to a provider kept until the provider confirms.
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,                -- sealed
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX outbox_due ON outbox(next_attempt_at);

-- Back-channel logout tokens already acted on (their jti), until expiry.
CREATE TABLE seen_logout_tokens (
    jti_hash   TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

-- Sessions begun with Supabase Auth as the session authority.
CREATE TABLE supabase_sessions (
    session_id      TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    user_created_at TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    last_used_at    BIGINT NOT NULL,
    user_agent      TEXT,
    ip              TEXT,
    refresh_hash    TEXT,
    tokens          TEXT,                         -- sealed {"access", "refresh"}
    ended_at        BIGINT
);
CREATE INDEX supabase_sessions_by_user ON supabase_sessions(user_id);
CREATE INDEX supabase_sessions_by_refresh ON supabase_sessions(refresh_hash);
