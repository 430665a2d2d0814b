-- What people said each verdict really was; a later label replaces an earlier one.
CREATE TABLE verdict_labels (
    rollout_id  TEXT PRIMARY KEY,
    service     TEXT NOT NULL,
    env         TEXT NOT NULL,
    label       TEXT NOT NULL,
    by_actor    TEXT NOT NULL,
    at_ms       BIGINT NOT NULL,
    note        TEXT NOT NULL
);
