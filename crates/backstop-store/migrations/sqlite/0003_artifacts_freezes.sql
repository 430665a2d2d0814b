-- Manual freezes: rollouts into the scope are refused by the gate while one is in effect.
-- (Artifact backups need no table: a release's sha256 names its object in <state>/blobs.)
CREATE TABLE freezes (
    id             TEXT PRIMARY KEY,
    service        TEXT,                       -- NULL = every service
    env            TEXT,                       -- NULL = every environment
    reason         TEXT NOT NULL,
    actor          TEXT NOT NULL,
    started_at_ms  INTEGER NOT NULL,
    until_ms       INTEGER,                    -- NULL = until ended by a person
    ended_at_ms    INTEGER,
    ended_by       TEXT,
    end_reason     TEXT
);
CREATE INDEX freezes_open ON freezes (ended_at_ms);
