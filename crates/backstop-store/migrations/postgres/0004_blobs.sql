-- Artifact backups, so every replica on every host can run any release: an object's chunks,
-- and the object listed once all of them are in (one transaction).
CREATE TABLE blob_chunks (
    sha256  TEXT NOT NULL,
    idx     BIGINT NOT NULL,
    data    BYTEA NOT NULL,
    PRIMARY KEY (sha256, idx)
);

CREATE TABLE blobs (
    sha256  TEXT PRIMARY KEY,
    size    BIGINT NOT NULL,
    chunks  BIGINT NOT NULL
);
