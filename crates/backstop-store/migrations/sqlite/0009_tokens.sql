-- API tokens people hold, by name. Only the token's sha256 is kept; a revoked token keeps its
-- row (the audit names it, and its name is never handed out again).
CREATE TABLE tokens (
    name           TEXT PRIMARY KEY,
    role           TEXT NOT NULL,
    env            TEXT,
    hash           TEXT NOT NULL UNIQUE,
    created_at_ms  INTEGER NOT NULL,
    created_by     TEXT NOT NULL,
    expires_at_ms  INTEGER,
    revoked_at_ms  INTEGER,
    revoked_by     TEXT
);
