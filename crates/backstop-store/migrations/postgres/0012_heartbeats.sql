-- The last ping of each batch job's heartbeat.
CREATE TABLE heartbeats (
    name        TEXT PRIMARY KEY,
    last_at_ms  BIGINT NOT NULL,
    last_by     TEXT NOT NULL,
    count       BIGINT NOT NULL
);
