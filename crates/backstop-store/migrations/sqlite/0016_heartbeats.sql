-- The last ping of each batch job's heartbeat.
CREATE TABLE heartbeats (
    name        TEXT PRIMARY KEY,
    last_at_ms  INTEGER NOT NULL,
    last_by     TEXT NOT NULL,
    count       INTEGER NOT NULL
);
