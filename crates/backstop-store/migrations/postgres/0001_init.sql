-- Backstop state, PostgreSQL backend: the SQLite schema as of its migration 0006, in one step.
-- Times are epoch milliseconds UTC (BIGINT). JSON is stored as text, as on SQLite: the bytes
-- written are the bytes read back (an audit record's evidence is stored exactly as hashed).

CREATE TABLE releases (
    id            TEXT PRIMARY KEY,             -- service@version
    service       TEXT NOT NULL,
    version       TEXT NOT NULL,
    artifact      TEXT NOT NULL,                -- JSON {kind, value}
    sha256        TEXT NOT NULL,
    env           TEXT NOT NULL,                -- JSON object
    status        TEXT NOT NULL,                -- ok | bad
    bad_reason    TEXT,
    created_at_ms BIGINT NOT NULL,
    schema_range  TEXT,                         -- JSON {"min","max"}: the schema it runs on
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
    pid           BIGINT NOT NULL,
    port          BIGINT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    state         TEXT NOT NULL                 -- running | stopped
);

CREATE TABLE rollouts (
    id                      TEXT PRIMARY KEY,
    service                 TEXT NOT NULL,
    env                     TEXT NOT NULL,
    from_release_id         TEXT REFERENCES releases(id),
    to_release_id           TEXT NOT NULL REFERENCES releases(id),
    phase                   TEXT NOT NULL,
    step_index              BIGINT NOT NULL,
    step_started_at_ms      BIGINT,
    canary_weight           DOUBLE PRECISION NOT NULL,
    canary_instance_id      TEXT,
    created_at_ms           BIGINT NOT NULL,
    updated_at_ms           BIGINT NOT NULL,
    actor                   TEXT NOT NULL,
    reason                  TEXT,
    verdict                 TEXT,               -- JSON
    severity                TEXT,
    escalation_deadline_ms  BIGINT,
    acknowledged_by         TEXT
);
-- At most one unfinished rollout per environment: the database, not the handler, enforces it.
CREATE UNIQUE INDEX rollouts_one_active ON rollouts (service, env)
    WHERE phase NOT IN ('promoted', 'recovered');
CREATE INDEX rollouts_by_created ON rollouts (created_at_ms);

CREATE TABLE rollout_intervals (
    rollout_id  TEXT NOT NULL REFERENCES rollouts(id),
    seq         BIGINT NOT NULL,
    "interval"  TEXT NOT NULL,                  -- JSON backstop_judge::Interval
    PRIMARY KEY (rollout_id, seq)
);

CREATE TABLE events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rollout_id  TEXT NOT NULL,
    at_ms       BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    detail      TEXT NOT NULL                   -- JSON
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
    created_at_ms  BIGINT NOT NULL,
    finished_at_ms BIGINT
);
-- At most one running recovery per environment.
CREATE UNIQUE INDEX recoveries_one_running ON recoveries (service, env) WHERE status = 'running';

CREATE TABLE recovery_steps (
    recovery_id      TEXT NOT NULL REFERENCES recoveries(id),
    idx              BIGINT NOT NULL,
    idempotency_key  TEXT NOT NULL UNIQUE,
    step             TEXT NOT NULL,             -- JSON StepKind
    status           TEXT NOT NULL,             -- pending | started | done | failed
    attempts         BIGINT NOT NULL DEFAULT 0,
    started_at_ms    BIGINT,
    finished_at_ms   BIGINT,
    outcome          TEXT,                      -- JSON
    PRIMARY KEY (recovery_id, idx)
);

CREATE TABLE audit (
    seq        BIGINT PRIMARY KEY,
    at_ms      BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    trigger    TEXT NOT NULL,
    evidence   TEXT NOT NULL,                   -- canonical JSON, as hashed
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
-- The chain's head, written in the same transaction as each record: truncating the tail of the
-- audit table does not go unnoticed.
CREATE TABLE audit_head (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);

-- Global circuit breaker trips: open until reset by a person.
CREATE TABLE breaker_trips (
    id             TEXT PRIMARY KEY,
    scope          TEXT NOT NULL,              -- env:<name> | all
    tripped_at_ms  BIGINT NOT NULL,
    failures       TEXT NOT NULL,              -- JSON: the failed rollouts that tripped it
    reset_at_ms    BIGINT,
    reset_by       TEXT,
    reset_reason   TEXT
);
CREATE UNIQUE INDEX breaker_one_open_per_scope ON breaker_trips (scope) WHERE reset_at_ms IS NULL;

-- Manual freezes: rollouts into the scope are refused by the gate while one is in effect.
CREATE TABLE freezes (
    id             TEXT PRIMARY KEY,
    service        TEXT,                       -- NULL = every service
    env            TEXT,                       -- NULL = every environment
    reason         TEXT NOT NULL,
    actor          TEXT NOT NULL,
    started_at_ms  BIGINT NOT NULL,
    until_ms       BIGINT,                     -- NULL = until ended by a person
    ended_at_ms    BIGINT,
    ended_by       TEXT,
    end_reason     TEXT
);
CREATE INDEX freezes_open ON freezes (ended_at_ms);

-- Config snapshots: versioned per (service, environment); the manifest is a blob named by its
-- digest.
CREATE TABLE config_snapshots (
    service        TEXT NOT NULL,
    env            TEXT NOT NULL,
    version        BIGINT NOT NULL,
    manifest       TEXT NOT NULL,              -- sha256 of the manifest blob
    created_at_ms  BIGINT NOT NULL,
    actor          TEXT NOT NULL,
    reason         TEXT NOT NULL,
    rollout_id     TEXT,
    PRIMARY KEY (service, env, version)
);

-- What was captured before a rollout started. Written once per rollout.
CREATE TABLE rollout_safeguards (
    rollout_id       TEXT PRIMARY KEY REFERENCES rollouts(id),
    config_snapshot  BIGINT,
    baseline         TEXT,                     -- JSON
    captured_at_ms   BIGINT NOT NULL
);

-- Drills: `record` is the whole drill as JSON; the other columns are what lists filter on.
CREATE TABLE drills (
    id             TEXT PRIMARY KEY,
    service        TEXT NOT NULL,
    env            TEXT NOT NULL,
    rollout_id     TEXT NOT NULL,
    status         TEXT NOT NULL,              -- running | passed | failed
    started_at_ms  BIGINT NOT NULL,
    finished_at_ms BIGINT,
    record         TEXT NOT NULL
);
CREATE INDEX drills_by_service ON drills (service, started_at_ms);

-- Who holds the database's daemon lock (a session advisory lock): read by a second daemon for
-- its refusal message. Only PostgreSQL has it: one state folder already has one daemon.
CREATE TABLE daemon_holder (
    id        BIGINT PRIMARY KEY CHECK (id = 1),
    holder    TEXT NOT NULL,
    since_ms  BIGINT NOT NULL
);
