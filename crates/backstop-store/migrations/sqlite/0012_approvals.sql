-- The two-person rule: a request one person made and another approves before it runs (an
-- override in a regulated environment) or reviews after it ran (a break-glass rollback).
CREATE TABLE approvals (
    id             TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,
    service        TEXT NOT NULL,
    env            TEXT NOT NULL,
    request        TEXT NOT NULL,
    requester      TEXT NOT NULL,
    reason         TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    expires_at_ms  INTEGER,
    status         TEXT NOT NULL,
    decided_by     TEXT,
    decided_at_ms  INTEGER,
    note           TEXT,
    result         TEXT
);
CREATE INDEX approvals_open ON approvals (status) WHERE status IN ('pending', 'to_review');
