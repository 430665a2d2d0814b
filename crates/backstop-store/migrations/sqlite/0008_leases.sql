-- Work split between replicas: whoever holds a lease drives what it names (a rollout, a
-- recovery, an environment's supervision). The epoch grows each time the lease changes hands
-- and never goes back (a released lease keeps its row), so a write carrying an older epoch is
-- recognised as stale.
CREATE TABLE leases (
    key            TEXT PRIMARY KEY,
    holder         TEXT NOT NULL,
    epoch          INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL
);

-- Commands (promote, abort, roll back, ...) a replica received for work another replica
-- holds: the holder claims one (so its sender can no longer withdraw it), runs it and writes
-- the answer, which the receiving replica returns.
CREATE TABLE commands (
    id              TEXT PRIMARY KEY,
    lease_key       TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    claimed_by      TEXT,
    answered_at_ms  INTEGER,
    answer          TEXT
);
CREATE INDEX commands_unanswered ON commands (lease_key) WHERE answered_at_ms IS NULL;
