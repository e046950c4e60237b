-- Connected accounts (PROVIDER_TOKENS=keep): a person's accounts at the
-- provider and the tokens they granted, sealed. One provider account
-- belongs to at most one person.
CREATE TABLE connected_accounts (
    id                TEXT PRIMARY KEY,            -- UUID: what the API and services call it
    user_id           TEXT NOT NULL,               -- the person (ours, or Supabase's user id)
    provider          TEXT NOT NULL,               -- PROVIDER_NAME
    issuer            TEXT NOT NULL,
    subject           TEXT NOT NULL,
    email             TEXT,
    name              TEXT,
    scopes            TEXT NOT NULL DEFAULT '',    -- granted, space-separated
    access_token      TEXT,                        -- sealed
    access_expires_at INTEGER,                     -- Unix s
    refresh_token     TEXT,                        -- sealed
    needs_reauth      INTEGER NOT NULL DEFAULT 0,  -- the provider refused the refresh token
    signs_in          INTEGER NOT NULL DEFAULT 0,  -- the account the person signs in with
    connected_at      INTEGER NOT NULL,
    refreshing_until  INTEGER,                     -- a process is refreshing it (or backing off) until then
    refresh_failures  INTEGER NOT NULL DEFAULT 0,
    UNIQUE (issuer, subject)
);
CREATE INDEX connected_accounts_by_user ON connected_accounts(user_id);

-- Sign-in flows that connect an account to a signed-in person.
ALTER TABLE auth_flows ADD COLUMN connect_user_id TEXT;
ALTER TABLE auth_flows ADD COLUMN connect_session_id TEXT;

-- Security Event Tokens already acted on (their jti), until expiry.
CREATE TABLE seen_security_events (
    jti_hash   TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
