-- Ships: one release taken through its service's environment waves, stored whole in `record`
-- and changed by compare-and-set on `version`.
CREATE TABLE ships (
    id             TEXT PRIMARY KEY,
    service        TEXT NOT NULL,
    phase          TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    record         TEXT NOT NULL
);
CREATE INDEX ships_service ON ships (service, created_at_ms);
-- One ship of a service moves at a time, also when two replicas start one at once.
CREATE UNIQUE INDEX ships_one_moving ON ships (service) WHERE phase IN ('shipping', 'rolling_back');
