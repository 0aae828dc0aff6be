-- Alerting (the PostgreSQL dialect; keep in step with ../sqlite/0008_alerts.sql).
-- Rules (built-in and custom), the evaluation state of every alert series, alert
-- instances with their history, silences, notification channels and the delivery
-- outbox. Rule definitions and series state are JSON the alerting code owns; the
-- store does not look inside. Flags are BIGINT 0/1 (booleans are not used).

CREATE TABLE alert_rules (
    name          TEXT PRIMARY KEY NOT NULL,
    builtin       BIGINT NOT NULL CHECK (builtin IN (0, 1)),
    rule_json     TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    updated_by    TEXT NOT NULL
);

-- One row per series (rule × subject) the evaluator remembers; restored at start so a
-- restart neither loses a pending `for` nor notifies twice.
CREATE TABLE alert_series (
    fingerprint   TEXT PRIMARY KEY NOT NULL,
    rule          TEXT NOT NULL,
    state_json    TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- Alert instances: one per time a series went pending or firing. The acked_* columns
-- are written only by people (acknowledge), everything else only by the evaluator.
CREATE TABLE alerts (
    id              TEXT PRIMARY KEY NOT NULL,
    fingerprint     TEXT NOT NULL,
    rule            TEXT NOT NULL,
    severity        TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    labels_json     TEXT NOT NULL,
    summary         TEXT NOT NULL,
    condition_text  TEXT NOT NULL,
    value           DOUBLE PRECISION NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
    started_at_ms   BIGINT NOT NULL,
    firing_since_ms BIGINT,
    resolved_at_ms  BIGINT,
    acked_at_ms     BIGINT,
    acked_by        TEXT,
    ack_comment     TEXT,
    updated_at_ms   BIGINT NOT NULL
);

CREATE INDEX alerts_state_started ON alerts (state, started_at_ms);
CREATE INDEX alerts_started ON alerts (started_at_ms);

CREATE TABLE alert_events (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id TEXT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    at_ms    BIGINT NOT NULL,
    message  TEXT NOT NULL
);

CREATE INDEX alert_events_alert_seq ON alert_events (alert_id, seq);

-- A silence ended early keeps its row with ends_at_ms moved to when, and who ended it.
CREATE TABLE alert_silences (
    id            TEXT PRIMARY KEY NOT NULL,
    matchers_json TEXT NOT NULL,
    starts_at_ms  BIGINT NOT NULL,
    ends_at_ms    BIGINT NOT NULL,
    comment       TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expired_by    TEXT
);

CREATE INDEX alert_silences_ends ON alert_silences (ends_at_ms);

-- The URL may carry a credential (Slack webhook URLs do): the API shows it redacted.
CREATE TABLE alert_channels (
    name            TEXT PRIMARY KEY NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('webhook', 'slack', 'alertmanager')),
    url             TEXT NOT NULL,
    min_severity    TEXT NOT NULL CHECK (min_severity IN ('info', 'warning', 'critical')),
    created_at_ms   BIGINT NOT NULL,
    created_by      TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    failures        BIGINT NOT NULL DEFAULT 0 CHECK (failures >= 0),
    delivered       BIGINT NOT NULL DEFAULT 0 CHECK (delivered >= 0),
    last_success_ms BIGINT,
    last_error      TEXT,
    last_error_ms   BIGINT,
    last_refresh_ms BIGINT
);

-- The outbox: a notification is stored with the evaluation that decided it, then
-- delivered (and retried) from here, so none is lost to a crash or a failing receiver.
-- An identity never hands out a number twice.
CREATE TABLE alert_deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel         TEXT NOT NULL REFERENCES alert_channels (name) ON DELETE CASCADE,
    kind            TEXT NOT NULL CHECK (kind IN ('firing', 'repeat', 'resolved', 'refresh')),
    payload_json    TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_ms BIGINT NOT NULL,
    last_error      TEXT,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL
);

CREATE INDEX alert_deliveries_due ON alert_deliveries (state, next_attempt_ms);
CREATE INDEX alert_deliveries_channel ON alert_deliveries (channel, state);
