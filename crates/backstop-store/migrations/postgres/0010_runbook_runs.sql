-- Runbook runs, stored whole in `record` (JSON) like incidents; `version` grows with every
-- change, and an update names the version it read.
CREATE TABLE runbook_runs (
    id             TEXT PRIMARY KEY,
    runbook        TEXT NOT NULL,
    env            TEXT NOT NULL,
    incident_id    TEXT,
    status         TEXT NOT NULL,
    started_at_ms  BIGINT NOT NULL,
    version        BIGINT NOT NULL,
    record         TEXT NOT NULL
);
CREATE INDEX runbook_runs_incident ON runbook_runs (incident_id);
