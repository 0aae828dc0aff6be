-- Metrics history (the PostgreSQL dialect; keep in step with ../sqlite/0002_metrics.sql).
-- One raw row per (host, sample time) with one column per metric, and two rollup
-- tables (1 minute, 1 hour) keeping the sample count and, per metric, the average and
-- the maximum. Rollups are written by Store::roll_up; nothing else writes them.

CREATE TABLE metric_samples (
    host_id           TEXT NOT NULL,
    ts_ms             BIGINT NOT NULL,
    cpu_percent       DOUBLE PRECISION NOT NULL,
    load1             DOUBLE PRECISION NOT NULL,
    load5             DOUBLE PRECISION NOT NULL,
    load15            DOUBLE PRECISION NOT NULL,
    memory_used       BIGINT NOT NULL,
    memory_available  BIGINT NOT NULL,
    memory_total      BIGINT NOT NULL,
    swap_used         BIGINT NOT NULL,
    swap_total        BIGINT NOT NULL,
    disk_used_percent DOUBLE PRECISION NOT NULL,
    disk_used         BIGINT NOT NULL,
    disk_total        BIGINT NOT NULL,
    net_rx_bps        DOUBLE PRECISION NOT NULL,
    net_tx_bps        DOUBLE PRECISION NOT NULL,
    uptime_s          BIGINT NOT NULL,
    processes         BIGINT NOT NULL,
    PRIMARY KEY (host_id, ts_ms)
);

-- Range scans by time for roll_up and prune.
CREATE INDEX metric_samples_ts ON metric_samples (ts_ms);

CREATE TABLE metric_rollups_1m (
    host_id   TEXT NOT NULL,
    bucket_ms BIGINT NOT NULL,
    samples   BIGINT NOT NULL,
    avg_cpu DOUBLE PRECISION,
    max_cpu DOUBLE PRECISION,
    avg_load1 DOUBLE PRECISION,
    max_load1 DOUBLE PRECISION,
    avg_load5 DOUBLE PRECISION,
    max_load5 DOUBLE PRECISION,
    avg_load15 DOUBLE PRECISION,
    max_load15 DOUBLE PRECISION,
    avg_memory_used DOUBLE PRECISION,
    max_memory_used DOUBLE PRECISION,
    avg_memory_available DOUBLE PRECISION,
    max_memory_available DOUBLE PRECISION,
    avg_memory_percent DOUBLE PRECISION,
    max_memory_percent DOUBLE PRECISION,
    avg_swap_used DOUBLE PRECISION,
    max_swap_used DOUBLE PRECISION,
    avg_disk_used_percent DOUBLE PRECISION,
    max_disk_used_percent DOUBLE PRECISION,
    avg_net_rx DOUBLE PRECISION,
    max_net_rx DOUBLE PRECISION,
    avg_net_tx DOUBLE PRECISION,
    max_net_tx DOUBLE PRECISION,
    avg_uptime DOUBLE PRECISION,
    max_uptime DOUBLE PRECISION,
    avg_processes DOUBLE PRECISION,
    max_processes DOUBLE PRECISION,
    PRIMARY KEY (host_id, bucket_ms)
);

CREATE INDEX metric_rollups_1m_bucket ON metric_rollups_1m (bucket_ms);

CREATE TABLE metric_rollups_1h (
    host_id   TEXT NOT NULL,
    bucket_ms BIGINT NOT NULL,
    samples   BIGINT NOT NULL,
    avg_cpu DOUBLE PRECISION,
    max_cpu DOUBLE PRECISION,
    avg_load1 DOUBLE PRECISION,
    max_load1 DOUBLE PRECISION,
    avg_load5 DOUBLE PRECISION,
    max_load5 DOUBLE PRECISION,
    avg_load15 DOUBLE PRECISION,
    max_load15 DOUBLE PRECISION,
    avg_memory_used DOUBLE PRECISION,
    max_memory_used DOUBLE PRECISION,
    avg_memory_available DOUBLE PRECISION,
    max_memory_available DOUBLE PRECISION,
    avg_memory_percent DOUBLE PRECISION,
    max_memory_percent DOUBLE PRECISION,
    avg_swap_used DOUBLE PRECISION,
    max_swap_used DOUBLE PRECISION,
    avg_disk_used_percent DOUBLE PRECISION,
    max_disk_used_percent DOUBLE PRECISION,
    avg_net_rx DOUBLE PRECISION,
    max_net_rx DOUBLE PRECISION,
    avg_net_tx DOUBLE PRECISION,
    max_net_tx DOUBLE PRECISION,
    avg_uptime DOUBLE PRECISION,
    max_uptime DOUBLE PRECISION,
    avg_processes DOUBLE PRECISION,
    max_processes DOUBLE PRECISION,
    PRIMARY KEY (host_id, bucket_ms)
);

CREATE INDEX metric_rollups_1h_bucket ON metric_rollups_1h (bucket_ms);

-- How far each rollup is complete: every bucket before done_until_ms has been rolled up.
-- The '1m' row is also the lock that orders roll_up against insert_samples.
CREATE TABLE metric_rollup_progress (
    resolution    TEXT PRIMARY KEY NOT NULL,
    done_until_ms BIGINT NOT NULL
);

INSERT INTO metric_rollup_progress (resolution, done_until_ms) VALUES ('1m', 0), ('1h', 0);

-- Minutes that received samples after they had been rolled up (late or resent samples);
-- the next roll_up recomputes them and the hours they belong to.
CREATE TABLE metric_rollup_pending (
    host_id   TEXT NOT NULL,
    bucket_ms BIGINT NOT NULL,
    PRIMARY KEY (host_id, bucket_ms)
);
