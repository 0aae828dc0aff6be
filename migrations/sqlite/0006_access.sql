-- Users, login sessions and scoped API tokens (SQLite dialect; keep in step with
-- ../postgres/0006_access.sql). Times are unix milliseconds (INTEGER).

-- People who log in with a password. Only an argon2id PHC string of the password is stored.
-- The role and scope are read at every request of the user's sessions, so a change or a
-- removal takes effect at once.
CREATE TABLE users (
    id                     TEXT PRIMARY KEY NOT NULL,
    name                   TEXT NOT NULL UNIQUE,
    password_hash          TEXT NOT NULL,
    role                   TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    scope_json             TEXT NOT NULL DEFAULT '{}',
    created_at_ms          INTEGER NOT NULL,
    created_by             TEXT NOT NULL,
    updated_at_ms          INTEGER NOT NULL,
    password_changed_at_ms INTEGER NOT NULL
);

-- An API token's scope (`{}`: the whole fleet). A row with a user_id is a login session of
-- that user: it carries the user's current role and scope, not its own. There is no foreign
-- key on purpose: a removed user's sessions keep pointing at the id that no longer exists,
-- which is how they are refused with a clear message (and they are revoked too).
ALTER TABLE api_tokens ADD COLUMN scope_json TEXT NOT NULL DEFAULT '{}';
ALTER TABLE api_tokens ADD COLUMN user_id TEXT;

CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- Failed logins per requested user name (known or not), for the lockout rule. Kept for an
-- hour; a successful login clears the name's failures.
CREATE TABLE login_failures (
    user_name TEXT NOT NULL,
    at_ms     INTEGER NOT NULL
);

CREATE INDEX login_failures_name ON login_failures (user_name, at_ms);
