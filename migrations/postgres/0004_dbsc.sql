-- Device Bound Session Credentials (DBSC=on): the public key a session is
-- bound to. One row per bound session; a session is bound once. The
-- challenges are stateless (MAC'd) and single-use through
-- used_dbsc_challenges.
CREATE TABLE dbsc_bindings (
    session_id   TEXT PRIMARY KEY,            -- the session's sid (ours or Supabase's)
    algorithm    TEXT NOT NULL,               -- ES256 or RS256
    thumbprint   TEXT NOT NULL,               -- RFC 7638 JWK thumbprint, base64url
    public_jwk   TEXT NOT NULL,               -- the public key, JSON
    bound_at     BIGINT NOT NULL,            -- Unix s
    refreshed_at BIGINT NOT NULL             -- Unix s: the last proof
);
CREATE INDEX dbsc_bindings_by_bound_at ON dbsc_bindings(bound_at);
CREATE INDEX dbsc_bindings_by_refreshed_at ON dbsc_bindings(refreshed_at);

-- Challenges already answered (their hashes), until they expire.
CREATE TABLE used_dbsc_challenges (
    jti_hash   TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
