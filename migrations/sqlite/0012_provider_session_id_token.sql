-- RP-initiated logout (GET /auth/logout/provider): the ID token the
-- provider issued at sign-in, sealed, sent back as id_token_hint.
ALTER TABLE provider_sessions ADD COLUMN id_token TEXT;
