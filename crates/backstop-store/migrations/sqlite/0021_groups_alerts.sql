-- Release groups (members in order) and their runs, each stored whole in `record` (JSON) like
-- runbook runs; a run's `version` grows with every change and an update names the one it read.
CREATE TABLE release_groups (
    name           TEXT PRIMARY KEY,
    created_at_ms  INTEGER NOT NULL,
    record         TEXT NOT NULL
);
CREATE TABLE group_runs (
    id             TEXT PRIMARY KEY,
    group_name     TEXT NOT NULL,
    env            TEXT NOT NULL,
    phase          TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    record         TEXT NOT NULL
);
CREATE INDEX group_runs_group ON group_runs (group_name, created_at_ms);
-- Alerts received from monitoring (Alertmanager), one row per firing, stored whole in `record`.
CREATE TABLE alerts (
    id              TEXT PRIMARY KEY,
    action          TEXT NOT NULL,
    received_at_ms  INTEGER NOT NULL,
    record          TEXT NOT NULL
);
CREATE INDEX alerts_action ON alerts (action);
