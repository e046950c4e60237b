-- The embedded identity provider and the session state of Chronos auth.
-- Times are Unix seconds. Secrets (codes, refresh tokens, flow ids) are
-- stored only as SHA-256 hashes.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,               -- UUID
    email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name          TEXT,
    avatar_url    TEXT,
    password_hash TEXT NOT NULL,                  -- argon2id PHC string
    created_at    INTEGER NOT NULL
);

-- Sign-in flows started by GET /auth/google/login (the BFF side): the flow
-- cookie holds the id, the PKCE verifier stays here.
CREATE TABLE auth_flows (
    id_hash       TEXT PRIMARY KEY,
    code_verifier TEXT NOT NULL,
    redirect_uri  TEXT NOT NULL,
    expires_at    INTEGER NOT NULL
);

-- One-time authorization codes issued by the sign-in page (the IdP side).
CREATE TABLE auth_codes (
    code_hash      TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_challenge TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER,
    session_id     TEXT                           -- the session it was exchanged for
);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,                -- UUID, the JWT's sid
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    user_agent   TEXT,
    ip           TEXT,                            -- coarse: IPv4 /24, IPv6 /48
    revoked_at   INTEGER
);
CREATE INDEX sessions_by_user ON sessions(user_id);

-- Refresh tokens, a chain per session: each use rotates to a successor.
CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    rotated_at  INTEGER                           -- set when exchanged for its successor
);
CREATE INDEX refresh_tokens_by_session ON refresh_tokens(session_id);

-- Revoked sessions, append-only, read by every server process (a running
-- server polls for rows newer than the last it saw). Rows outlive the
-- session they name: an access token can still be presented after its
-- session row is gone.
CREATE TABLE revocations (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    revoked_at INTEGER NOT NULL
);
CREATE INDEX revocations_by_time ON revocations(revoked_at);
