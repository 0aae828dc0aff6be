-- The audit log (sqlite dialect; keep in step with ../postgres/0004_audit.sql).
-- Append-only and hash-chained: each row's hash is an HMAC over the previous row's hash and
-- its own fields (control-plane/src/audit.rs). seq is assigned by the writer (last + 1), not
-- by the database, so a gap is a deleted record; the primary key stops two writers from
-- taking the same number.
CREATE TABLE audit_events (
    seq       INTEGER PRIMARY KEY NOT NULL CHECK (seq >= 1),
    at_ms     INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    source    TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);

CREATE INDEX audit_events_at ON audit_events (at_ms);
CREATE INDEX audit_events_actor ON audit_events (actor, seq);
CREATE INDEX audit_events_action ON audit_events (action, seq);
