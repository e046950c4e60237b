-- When a refresh token was rotated, in milliseconds: the reuse grace window
-- is compared at this precision, so REFRESH_REUSE_INTERVAL_SECONDS=0 means
-- "no grace at all" rather than "the rest of the current second".
ALTER TABLE refresh_tokens ADD COLUMN rotated_at_ms INTEGER;
