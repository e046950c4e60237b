-- Passkeys (WebAuthn credentials) of embedded accounts. A credential id is
-- globally unique: it never signs in another account.
CREATE TABLE passkeys (
    credential_id TEXT PRIMARY KEY,           -- base64url
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    credential    TEXT NOT NULL,              -- webauthn-rs Passkey, JSON: public key, sign counter, backup flags
    created_at    BIGINT NOT NULL,            -- Unix s
    last_used_at  BIGINT                      -- Unix s
);
CREATE INDEX passkeys_by_user ON passkeys(user_id);

-- WebAuthn ceremonies under way: the server half of a challenge, taken
-- (deleted) by the one answer it gets, refused after expires_at.
CREATE TABLE webauthn_ceremonies (
    id_hash    TEXT PRIMARY KEY,              -- SHA-256 of the ceremony id the browser holds
    purpose    TEXT NOT NULL,                 -- register | signin | signup
    binding    TEXT NOT NULL,                 -- the user (register) or the sign-in flow's PKCE challenge
    state      TEXT NOT NULL,                 -- webauthn-rs state, JSON
    expires_at BIGINT NOT NULL
);
CREATE INDEX webauthn_ceremonies_by_expiry ON webauthn_ceremonies(expires_at);

-- TOTP (RFC 6238) second factors: one per account, sealed at rest.
CREATE TABLE totp_factors (
    user_id      TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    secret       TEXT NOT NULL,               -- sealed (AES-256-GCM)
    confirmed_at BIGINT,                      -- NULL while enrolment awaits its first code
    last_step    BIGINT NOT NULL DEFAULT 0,   -- the last time step accepted: a code is good once
    created_at   BIGINT NOT NULL
);

-- Recovery codes: SHA-256 of each, deleted when used.
CREATE TABLE recovery_codes (
    code_hash  TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL
);
CREATE INDEX recovery_codes_by_user ON recovery_codes(user_id);

-- Failed second-factor attempts per account, in the current window.
CREATE TABLE mfa_failures (
    user_id      TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    failures     BIGINT NOT NULL,
    window_start BIGINT NOT NULL              -- Unix s
);
