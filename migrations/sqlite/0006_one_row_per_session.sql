-- Refresh tokens that describe themselves: the session id and a counter
-- under a MAC. A session keeps one row; the counter tells the current
-- token, the previous one within the reuse interval, and any older one
-- (reuse: the family ends) apart. Sessions from before keep their chain in
-- refresh_tokens until their next refresh moves them over.
ALTER TABLE sessions ADD COLUMN refresh_counter INTEGER;     -- NULL: a session still on chain tokens
ALTER TABLE sessions ADD COLUMN refresh_issued_at INTEGER;   -- when the current pair was issued (Unix s)
ALTER TABLE sessions ADD COLUMN rotated_at_ms INTEGER;       -- when the previous token was rotated (ms)

-- Purging in small batches, by age.
CREATE INDEX sessions_by_last_used ON sessions(last_used_at);
CREATE INDEX sessions_by_revoked ON sessions(revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX auth_codes_by_expiry ON auth_codes(expires_at);
CREATE INDEX auth_flows_by_expiry ON auth_flows(expires_at);
