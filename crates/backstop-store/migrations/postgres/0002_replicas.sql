-- The daemons sharing this store (replicas), each with its last heartbeat.
CREATE TABLE replicas (
    id                 TEXT PRIMARY KEY,
    address            TEXT NOT NULL,
    host               TEXT NOT NULL,
    pid                BIGINT NOT NULL,
    started_at_ms      BIGINT NOT NULL,
    last_heartbeat_ms  BIGINT NOT NULL
);
