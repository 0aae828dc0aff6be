-- Argosy core tables (SQLite dialect; keep in step with ../postgres/0001_core.sql).
-- Times are unix milliseconds (INTEGER); booleans are not used.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    secret_hash   TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER,
    revoked_at_ms INTEGER,
    created_by    TEXT NOT NULL,
    last_used_ms  INTEGER
);

CREATE TABLE join_tokens (
    id            TEXT PRIMARY KEY NOT NULL,
    secret_hash   TEXT NOT NULL,
    region        TEXT NOT NULL,
    labels_json   TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    max_uses      INTEGER NOT NULL CHECK (max_uses >= 0),
    uses          INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0),
    revoked_at_ms INTEGER,
    created_by    TEXT NOT NULL
);

CREATE TABLE hosts (
    id                TEXT PRIMARY KEY NOT NULL,
    hostname          TEXT NOT NULL,
    region            TEXT NOT NULL,
    labels_json       TEXT NOT NULL,
    enrolled_at_ms    INTEGER NOT NULL,
    last_seen_ms      INTEGER,
    inventory         BLOB NOT NULL,
    interval_seconds  INTEGER NOT NULL CHECK (interval_seconds >= 0),
    cert_serial       TEXT NOT NULL,
    cert_not_after_ms INTEGER NOT NULL,
    revoked_at_ms     INTEGER,
    join_token_id     TEXT NOT NULL
);

CREATE INDEX hosts_region ON hosts (region);
