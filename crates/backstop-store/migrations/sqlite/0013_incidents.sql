-- Incidents, stored whole in `record` (JSON); the other columns index it. `version` grows with
-- every change: an update names the version it read, so two people's changes never overwrite
-- each other.
CREATE TABLE incidents (
    id             TEXT PRIMARY KEY,
    service        TEXT NOT NULL,
    env            TEXT NOT NULL,
    status         TEXT NOT NULL,
    opened_at_ms   INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    record         TEXT NOT NULL
);
CREATE INDEX incidents_open ON incidents (env) WHERE status <> 'resolved';
