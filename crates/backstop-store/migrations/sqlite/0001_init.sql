-- Backstop state, SQLite backend. Times are epoch milliseconds UTC.

CREATE TABLE releases (
    id            TEXT PRIMARY KEY,             -- service@version
    service       TEXT NOT NULL,
    version       TEXT NOT NULL,
    artifact      TEXT NOT NULL,                -- JSON {kind, value}
    sha256        TEXT NOT NULL,
    env           TEXT NOT NULL,                -- JSON object
    status        TEXT NOT NULL,                -- ok | bad
    bad_reason    TEXT,
    created_at_ms INTEGER NOT NULL,
    UNIQUE (service, version)
);

CREATE TABLE environments (
    service                  TEXT NOT NULL,
    env                      TEXT NOT NULL,
    lkg_release_id           TEXT REFERENCES releases(id),
    stable_instance_id       TEXT,
    previous_lkg_release_id  TEXT REFERENCES releases(id),
    PRIMARY KEY (service, env)
);

CREATE TABLE instances (
    id            TEXT PRIMARY KEY,
    service       TEXT NOT NULL,
    env           TEXT NOT NULL,
    release_id    TEXT NOT NULL REFERENCES releases(id),
    pid           INTEGER NOT NULL,
    port          INTEGER NOT NULL,
    started_at_ms INTEGER NOT NULL,
    state         TEXT NOT NULL                 -- running | stopped
);

CREATE TABLE rollouts (
    id                  TEXT PRIMARY KEY,
    service             TEXT NOT NULL,
    env                 TEXT NOT NULL,
    from_release_id     TEXT REFERENCES releases(id),
    to_release_id       TEXT NOT NULL REFERENCES releases(id),
    phase               TEXT NOT NULL,
    step_index          INTEGER NOT NULL,
    step_started_at_ms  INTEGER,
    canary_weight       REAL NOT NULL,
    canary_instance_id  TEXT,
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL,
    actor               TEXT NOT NULL,
    reason              TEXT,
    verdict             TEXT                    -- JSON
);
-- At most one unfinished rollout per environment: the database, not the handler, enforces it.
CREATE UNIQUE INDEX rollouts_one_active ON rollouts (service, env)
    WHERE phase NOT IN ('promoted', 'recovered');
CREATE INDEX rollouts_by_created ON rollouts (created_at_ms);

CREATE TABLE rollout_intervals (
    rollout_id  TEXT NOT NULL REFERENCES rollouts(id),
    seq         INTEGER NOT NULL,
    interval    TEXT NOT NULL,                  -- JSON backstop_judge::Interval
    PRIMARY KEY (rollout_id, seq)
);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id  TEXT NOT NULL,
    at_ms       INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX events_by_rollout ON events (rollout_id, at_ms);

CREATE TABLE recoveries (
    id             TEXT PRIMARY KEY,
    rollout_id     TEXT,
    service        TEXT NOT NULL,
    env            TEXT NOT NULL,
    actor          TEXT NOT NULL,
    trigger        TEXT NOT NULL,
    reason         TEXT NOT NULL,
    status         TEXT NOT NULL,               -- running | done | failed
    created_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER
);
-- At most one running recovery per environment.
CREATE UNIQUE INDEX recoveries_one_running ON recoveries (service, env) WHERE status = 'running';

CREATE TABLE recovery_steps (
    recovery_id      TEXT NOT NULL REFERENCES recoveries(id),
    idx              INTEGER NOT NULL,
    idempotency_key  TEXT NOT NULL UNIQUE,
    step             TEXT NOT NULL,             -- JSON StepKind
    status           TEXT NOT NULL,             -- pending | started | done | failed
    attempts         INTEGER NOT NULL DEFAULT 0,
    started_at_ms    INTEGER,
    finished_at_ms   INTEGER,
    outcome          TEXT,
    PRIMARY KEY (recovery_id, idx)
);

CREATE TABLE audit (
    seq        INTEGER PRIMARY KEY,
    at_ms      INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    trigger    TEXT NOT NULL,
    evidence   TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
-- The chain's head, written in the same transaction as each record: truncating the tail of the
-- audit table no longer goes unnoticed.
CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  TEXT NOT NULL
);
