-- Backups (the SQLite dialect; keep in step with ../postgres/0009_backups.sql).
-- Policies (the spec as written, plus the fields the scheduler reads), backups (one row
-- per backup taken or attempted, with its manifest and its newest verification) and
-- jobs (backup, verify, restore, prune: what was sent to which host, its progress and
-- its result). Manifests, tasks and results are protobuf messages stored as base64
-- text, owned by `crate::backup`; the store does not look inside.

CREATE TABLE backup_policies (
    name                     TEXT PRIMARY KEY NOT NULL,
    spec                     TEXT NOT NULL,
    format                   TEXT NOT NULL,
    source_kind              TEXT NOT NULL,
    schedule                 TEXT NOT NULL,
    verify_schedule          TEXT NOT NULL,
    rpo_seconds              INTEGER NOT NULL,
    created_at_ms            INTEGER NOT NULL,
    updated_at_ms            INTEGER NOT NULL,
    updated_by               TEXT NOT NULL,
    -- The newest scheduled time already acted on (backup and verification).
    last_scheduled_ms        INTEGER,
    last_verify_scheduled_ms INTEGER
);

CREATE TABLE backups (
    id             TEXT PRIMARY KEY NOT NULL,
    policy         TEXT NOT NULL,
    host_id        TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('running', 'ok', 'failed', 'pruned')),
    trigger_kind   TEXT NOT NULL,
    started_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER,
    error          TEXT,
    manifest_pb    TEXT,
    sha256         TEXT,
    artifact_bytes INTEGER,
    verify_state   TEXT NOT NULL CHECK (verify_state IN ('not-verified', 'running', 'ok', 'failed')),
    verified_at_ms INTEGER,
    verify_error   TEXT,
    restore_ms     INTEGER,
    checks_pb      TEXT,
    created_by     TEXT NOT NULL
);
CREATE INDEX backups_by_policy ON backups (policy, started_at_ms);

CREATE TABLE backup_jobs (
    id             TEXT PRIMARY KEY NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('backup', 'verify', 'restore', 'prune')),
    policy         TEXT NOT NULL,
    backup_id      TEXT NOT NULL,
    host_id        TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'running', 'ok', 'failed')),
    trigger_kind   TEXT NOT NULL,
    task_pb        TEXT NOT NULL,
    progress_stage TEXT NOT NULL,
    progress_bytes INTEGER NOT NULL,
    progress_total INTEGER NOT NULL,
    result_pb      TEXT,
    error          TEXT,
    deployment_id  TEXT,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER,
    created_by     TEXT NOT NULL
);
CREATE INDEX backup_jobs_by_host ON backup_jobs (host_id, state);
CREATE INDEX backup_jobs_by_policy ON backup_jobs (policy, created_at_ms);
