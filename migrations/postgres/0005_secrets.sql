-- Secrets encrypted at rest (the PostgreSQL dialect; keep in step with ../sqlite/0005_secrets.sql).
-- Envelope encryption (control-plane/src/crypto/envelope.rs): every version has its own
-- random data key; the value is sealed with it (XChaCha20-Poly1305, associated data binding
-- the secret's name and version), and the data key is sealed with the master key named by
-- master_key_id. No column ever holds a plaintext value or an unwrapped key.
-- The newest versions are kept (--secret-versions-kept); older ones are pruned on write.

CREATE TABLE secrets (
    name           TEXT PRIMARY KEY NOT NULL,
    latest_version BIGINT NOT NULL CHECK (latest_version >= 1),
    created_at_ms  BIGINT NOT NULL,
    created_by     TEXT NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    updated_by     TEXT NOT NULL
);

CREATE TABLE secret_versions (
    name          TEXT NOT NULL REFERENCES secrets (name) ON DELETE CASCADE,
    version       BIGINT NOT NULL CHECK (version >= 1),
    ciphertext    BYTEA NOT NULL,
    nonce         BYTEA NOT NULL,
    wrapped_key   BYTEA NOT NULL,
    key_nonce     BYTEA NOT NULL,
    master_key_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
