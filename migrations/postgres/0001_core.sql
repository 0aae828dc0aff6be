-- Argosy core tables (PostgreSQL dialect; keep in step with ../sqlite/0001_core.sql).
-- Times are unix milliseconds (BIGINT); booleans are not used.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    secret_hash   TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT,
    revoked_at_ms BIGINT,
    created_by    TEXT NOT NULL,
    last_used_ms  BIGINT
);

CREATE TABLE join_tokens (
    id            TEXT PRIMARY KEY NOT NULL,
    secret_hash   TEXT NOT NULL,
    region        TEXT NOT NULL,
    labels_json   TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    max_uses      BIGINT NOT NULL CHECK (max_uses >= 0),
    uses          BIGINT NOT NULL DEFAULT 0 CHECK (uses >= 0),
    revoked_at_ms BIGINT,
    created_by    TEXT NOT NULL
);

CREATE TABLE hosts (
    id                TEXT PRIMARY KEY NOT NULL,
    hostname          TEXT NOT NULL,
    region            TEXT NOT NULL,
    labels_json       TEXT NOT NULL,
    enrolled_at_ms    BIGINT NOT NULL,
    last_seen_ms      BIGINT,
    inventory         BYTEA NOT NULL,
    interval_seconds  BIGINT NOT NULL CHECK (interval_seconds >= 0),
    cert_serial       TEXT NOT NULL,
    cert_not_after_ms BIGINT NOT NULL,
    revoked_at_ms     BIGINT,
    join_token_id     TEXT NOT NULL
);

CREATE INDEX hosts_region ON hosts (region);
