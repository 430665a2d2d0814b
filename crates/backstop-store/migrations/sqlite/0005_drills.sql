-- Drills: a known-bad variant deployed under load in a non-production environment, and how fast
-- Backstop detected and undid it. `record` is the whole drill as JSON (results included); the
-- other columns are what lists filter and sort on.
CREATE TABLE drills (
    id             TEXT PRIMARY KEY,
    service        TEXT NOT NULL,
    env            TEXT NOT NULL,
    rollout_id     TEXT NOT NULL,
    status         TEXT NOT NULL,              -- running | passed | failed
    started_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER,
    record         TEXT NOT NULL
);
CREATE INDEX drills_by_service ON drills (service, started_at_ms);
