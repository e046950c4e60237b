-- Passwords belong to the password sign-in method, not to every account:
-- people who sign in through another identity provider have none.
CREATE TABLE password_credentials (
    user_id       TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    password_hash TEXT NOT NULL                   -- argon2id PHC string
);
INSERT INTO password_credentials (user_id, password_hash) SELECT id, password_hash FROM users;
ALTER TABLE users DROP COLUMN password_hash;

-- Nonces of sign-in form tokens already posted, until they expire: a form
-- token is good for one post.
CREATE TABLE used_form_tokens (
    nonce      TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
