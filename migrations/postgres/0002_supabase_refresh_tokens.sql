-- Every refresh token Supabase issued for a session begun here (hashed),
-- so that an old one presented again is traced to its session: when
-- Supabase refuses it (a replay after the reuse interval), the session
-- ends here too, its newest token with it.
CREATE TABLE supabase_refresh_tokens (
    refresh_hash TEXT PRIMARY KEY,
    session_id   TEXT NOT NULL REFERENCES supabase_sessions(session_id) ON DELETE CASCADE,
    issued_at    BIGINT NOT NULL
);
CREATE INDEX supabase_refresh_tokens_by_session ON supabase_refresh_tokens(session_id);
INSERT INTO supabase_refresh_tokens (refresh_hash, session_id, issued_at)
    SELECT refresh_hash, session_id, last_used_at FROM supabase_sessions WHERE refresh_hash IS NOT NULL;
