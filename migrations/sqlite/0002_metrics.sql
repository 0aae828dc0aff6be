-- Metrics history (the SQLite dialect; keep in step with ../postgres/0002_metrics.sql).
-- One raw row per (host, sample time) with one column per metric, and two rollup
-- tables (1 minute, 1 hour) keeping the sample count and, per metric, the average and
-- the maximum. Rollups are written by Store::roll_up; nothing else writes them.

CREATE TABLE metric_samples (
    host_id           TEXT NOT NULL,
    ts_ms             INTEGER NOT NULL,
    cpu_percent       REAL NOT NULL,
    load1             REAL NOT NULL,
    load5             REAL NOT NULL,
    load15            REAL NOT NULL,
    memory_used       INTEGER NOT NULL,
    memory_available  INTEGER NOT NULL,
    memory_total      INTEGER NOT NULL,
    swap_used         INTEGER NOT NULL,
    swap_total        INTEGER NOT NULL,
    disk_used_percent REAL NOT NULL,
    disk_used         INTEGER NOT NULL,
    disk_total        INTEGER NOT NULL,
    net_rx_bps        REAL NOT NULL,
    net_tx_bps        REAL NOT NULL,
    uptime_s          INTEGER NOT NULL,
    processes         INTEGER NOT NULL,
    PRIMARY KEY (host_id, ts_ms)
) WITHOUT ROWID;

-- Range scans by time for roll_up and prune.
CREATE INDEX metric_samples_ts ON metric_samples (ts_ms);

CREATE TABLE metric_rollups_1m (
    host_id   TEXT NOT NULL,
    bucket_ms INTEGER NOT NULL,
    samples   INTEGER NOT NULL,
    avg_cpu REAL,
    max_cpu REAL,
    avg_load1 REAL,
    max_load1 REAL,
    avg_load5 REAL,
    max_load5 REAL,
    avg_load15 REAL,
    max_load15 REAL,
    avg_memory_used REAL,
    max_memory_used REAL,
    avg_memory_available REAL,
    max_memory_available REAL,
    avg_memory_percent REAL,
    max_memory_percent REAL,
    avg_swap_used REAL,
    max_swap_used REAL,
    avg_disk_used_percent REAL,
    max_disk_used_percent REAL,
    avg_net_rx REAL,
    max_net_rx REAL,
    avg_net_tx REAL,
    max_net_tx REAL,
    avg_uptime REAL,
    max_uptime REAL,
    avg_processes REAL,
    max_processes REAL,
    PRIMARY KEY (host_id, bucket_ms)
) WITHOUT ROWID;

CREATE INDEX metric_rollups_1m_bucket ON metric_rollups_1m (bucket_ms);

CREATE TABLE metric_rollups_1h (
    host_id   TEXT NOT NULL,
    bucket_ms INTEGER NOT NULL,
    samples   INTEGER NOT NULL,
    avg_cpu REAL,
    max_cpu REAL,
    avg_load1 REAL,
    max_load1 REAL,
    avg_load5 REAL,
    max_load5 REAL,
    avg_load15 REAL,
    max_load15 REAL,
    avg_memory_used REAL,
    max_memory_used REAL,
    avg_memory_available REAL,
    max_memory_available REAL,
    avg_memory_percent REAL,
    max_memory_percent REAL,
    avg_swap_used REAL,
    max_swap_used REAL,
    avg_disk_used_percent REAL,
    max_disk_used_percent REAL,
    avg_net_rx REAL,
    max_net_rx REAL,
    avg_net_tx REAL,
    max_net_tx REAL,
    avg_uptime REAL,
    max_uptime REAL,
    avg_processes REAL,
    max_processes REAL,
    PRIMARY KEY (host_id, bucket_ms)
) WITHOUT ROWID;

CREATE INDEX metric_rollups_1h_bucket ON metric_rollups_1h (bucket_ms);

-- How far each rollup is complete: every bucket before done_until_ms has been rolled up.
-- The '1m' row is also the lock that orders roll_up against insert_samples.
CREATE TABLE metric_rollup_progress (
    resolution    TEXT PRIMARY KEY NOT NULL,
    done_until_ms INTEGER NOT NULL
);

INSERT INTO metric_rollup_progress (resolution, done_until_ms) VALUES ('1m', 0), ('1h', 0);

-- Minutes that received samples after they had been rolled up (late or resent samples);
-- the next roll_up recomputes them and the hours they belong to.
CREATE TABLE metric_rollup_pending (
    host_id   TEXT NOT NULL,
    bucket_ms INTEGER NOT NULL,
    PRIMARY KEY (host_id, bucket_ms)
) WITHOUT ROWID;
