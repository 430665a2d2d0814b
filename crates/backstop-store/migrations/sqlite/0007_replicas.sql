-- The daemons sharing this store (replicas), each with its last heartbeat.
CREATE TABLE replicas (
    id                 TEXT PRIMARY KEY,
    address            TEXT NOT NULL,
    host               TEXT NOT NULL,
    pid                INTEGER NOT NULL,
    started_at_ms      INTEGER NOT NULL,
    last_heartbeat_ms  INTEGER NOT NULL
);
