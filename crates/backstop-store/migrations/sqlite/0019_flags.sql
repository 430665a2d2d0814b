-- Feature flags, one row per flag and environment, stored whole in `record` (JSON: the
-- percentage, its history and the staged re-enable); `version` grows with every change and
-- an update names the version it read.
CREATE TABLE flags (
    key         TEXT NOT NULL,
    env         TEXT NOT NULL,
    service     TEXT NOT NULL,
    percentage  INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    record      TEXT NOT NULL,
    PRIMARY KEY (key, env)
);
