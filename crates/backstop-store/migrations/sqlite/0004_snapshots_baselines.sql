-- Config snapshots: versioned per (service, environment); the manifest (files by sha256, env
-- values, secrets by reference + keyed HMAC) is a blob named by its digest.
CREATE TABLE config_snapshots (
    service        TEXT NOT NULL,
    env            TEXT NOT NULL,
    version        INTEGER NOT NULL,
    manifest       TEXT NOT NULL,              -- sha256 of the manifest blob
    created_at_ms  INTEGER NOT NULL,
    actor          TEXT NOT NULL,
    reason         TEXT NOT NULL,
    rollout_id     TEXT,
    PRIMARY KEY (service, env, version)
);

-- What was captured before a rollout started: its config snapshot and the stable version's
-- baseline window of the analysis signals (JSON). Written once per rollout.
CREATE TABLE rollout_safeguards (
    rollout_id       TEXT PRIMARY KEY REFERENCES rollouts(id),
    config_snapshot  INTEGER,
    baseline         TEXT,
    captured_at_ms   INTEGER NOT NULL
);
