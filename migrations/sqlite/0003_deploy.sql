-- Deployments (the SQLite dialect; keep in step with ../postgres/0003_deploy.sql).
-- Services with immutable, numbered revisions; deployments moving a service from one
-- revision to another, each with an append-only event history; allocations (replicas
-- placed on hosts); and a per-host desired-state version for pushing snapshots to agents.
-- Spec text, rollout state and agent reports are opaque text to the store.
-- Flags are INTEGER 0/1 (booleans are not used).

-- The revision references are declared here although `revisions` comes later: SQLite
-- resolves foreign keys when rows are written, not when tables are created.
CREATE TABLE services (
    name             TEXT PRIMARY KEY NOT NULL,
    current_revision INTEGER,
    stable_revision  INTEGER,
    replicas         INTEGER NOT NULL CHECK (replicas >= 0),
    stopped          INTEGER NOT NULL CHECK (stopped IN (0, 1)),
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL,
    FOREIGN KEY (name, current_revision) REFERENCES revisions (service, number),
    FOREIGN KEY (name, stable_revision) REFERENCES revisions (service, number)
);

-- Numbers count from 1 per service; UNIQUE (service, number) keeps concurrent appliers
-- from both taking the same number.
CREATE TABLE revisions (
    id            TEXT PRIMARY KEY NOT NULL,
    service       TEXT NOT NULL REFERENCES services (name),
    number        INTEGER NOT NULL CHECK (number >= 1),
    spec_text     TEXT NOT NULL,
    spec_format   TEXT NOT NULL CHECK (spec_format IN ('yaml', 'toml')),
    spec_hash     TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    created_by    TEXT NOT NULL,
    UNIQUE (service, number)
);

CREATE TABLE deployments (
    id             TEXT PRIMARY KEY NOT NULL,
    service        TEXT NOT NULL REFERENCES services (name),
    from_revision  INTEGER,
    to_revision    INTEGER NOT NULL,
    phase          TEXT NOT NULL,
    state_json     TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER,
    created_by     TEXT NOT NULL,
    FOREIGN KEY (service, from_revision) REFERENCES revisions (service, number),
    FOREIGN KEY (service, to_revision) REFERENCES revisions (service, number)
);

CREATE INDEX deployments_service_created ON deployments (service, created_at_ms);

-- AUTOINCREMENT: a sequence number is never reused, so `after_seq` cursors stay valid.
CREATE TABLE deployment_events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    at_ms         INTEGER NOT NULL,
    message       TEXT NOT NULL
);

CREATE INDEX deployment_events_deployment_seq ON deployment_events (deployment_id, seq);

CREATE TABLE allocations (
    id             TEXT PRIMARY KEY NOT NULL,
    service        TEXT NOT NULL,
    revision       INTEGER NOT NULL,
    deployment_id  TEXT REFERENCES deployments (id) ON DELETE SET NULL,
    host_id        TEXT REFERENCES hosts (id) ON DELETE SET NULL,
    desired_run    INTEGER NOT NULL CHECK (desired_run IN (0, 1)),
    state          TEXT NOT NULL,
    health         TEXT NOT NULL,
    status_json    TEXT NOT NULL,
    pending_reason TEXT,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    FOREIGN KEY (service, revision) REFERENCES revisions (service, number)
);

CREATE INDEX allocations_service ON allocations (service);
CREATE INDEX allocations_host ON allocations (host_id);

-- No foreign key to hosts: a counter for an unknown host is harmless, and it must never
-- go backwards, so it is not removed with its host.
CREATE TABLE host_desired_versions (
    host_id TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL CHECK (version >= 0)
);
