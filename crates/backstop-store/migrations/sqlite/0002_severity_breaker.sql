-- Severity workflows: how bad a failure was, and a deadline by which a person must acknowledge
-- a held rollout before it is rolled back anyway.
ALTER TABLE rollouts ADD COLUMN severity TEXT;
ALTER TABLE rollouts ADD COLUMN escalation_deadline_ms INTEGER;
ALTER TABLE rollouts ADD COLUMN acknowledged_by TEXT;

-- Global circuit breaker trips: open until reset by a person.
CREATE TABLE breaker_trips (
    id             TEXT PRIMARY KEY,
    scope          TEXT NOT NULL,              -- env:<name> | all
    tripped_at_ms  INTEGER NOT NULL,
    failures       TEXT NOT NULL,              -- JSON: the failed rollouts that tripped it
    reset_at_ms    INTEGER,
    reset_by       TEXT,
    reset_reason   TEXT
);
CREATE UNIQUE INDEX breaker_one_open_per_scope ON breaker_trips (scope) WHERE reset_at_ms IS NULL;
