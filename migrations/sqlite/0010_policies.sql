-- Policies (the SQLite dialect; keep in step with ../postgres/0010_policies.sql).
-- Wasm modules are stored once per sha256 (their version id); a policy names the module
-- and configuration of its current version, and every version it had is kept in
-- policy_versions until the policy is removed. Flags are INTEGER 0/1 (booleans are not used).

CREATE TABLE policy_modules (
    sha256        TEXT PRIMARY KEY NOT NULL,
    wasm          BLOB NOT NULL,
    size_bytes    INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE policies (
    name          TEXT PRIMARY KEY NOT NULL,
    hook          TEXT NOT NULL
                  CHECK (hook IN ('deployment.admit', 'placement.filter', 'rollout.analyze')),
    version       INTEGER NOT NULL CHECK (version >= 1),
    sha256        TEXT NOT NULL REFERENCES policy_modules (sha256),
    config_json   TEXT NOT NULL,
    enabled       INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    created_at_ms INTEGER NOT NULL,
    created_by    TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    updated_by    TEXT NOT NULL
);

CREATE INDEX policies_by_hook ON policies (hook, enabled);

CREATE TABLE policy_versions (
    name          TEXT NOT NULL REFERENCES policies (name) ON DELETE CASCADE,
    version       INTEGER NOT NULL CHECK (version >= 1),
    sha256        TEXT NOT NULL REFERENCES policy_modules (sha256),
    size_bytes    INTEGER NOT NULL,
    config_json   TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    created_by    TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
