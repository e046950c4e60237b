-- Sessions begun through this server with Supabase Auth as the session
-- authority: Supabase has no API to list a person's sessions or end one by
-- id, so we keep our own record. The latest token pair is kept sealed
-- (AES-256-GCM, key in DATA_DIR) to log the session out at Supabase.
CREATE TABLE supabase_sessions (
    session_id      TEXT PRIMARY KEY,        -- the JWT's session_id
    user_id         TEXT NOT NULL,           -- the JWT's sub
    user_created_at TEXT NOT NULL,           -- RFC 3339, from Supabase's user object
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER NOT NULL,
    user_agent      TEXT,
    ip              TEXT,                    -- coarse: IPv4 /24, IPv6 /48
    refresh_hash    TEXT,                    -- SHA-256 of the current refresh token
    tokens          TEXT,                    -- sealed {"access", "refresh"}
    ended_at        INTEGER
);
CREATE INDEX supabase_sessions_by_user ON supabase_sessions(user_id);
CREATE INDEX supabase_sessions_by_refresh ON supabase_sessions(refresh_hash);
