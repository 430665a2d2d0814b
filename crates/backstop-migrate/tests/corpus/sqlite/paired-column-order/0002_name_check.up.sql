-- SQLite cannot add a CHECK constraint in place: rebuild the table.
CREATE TABLE users_new (
    id INTEGER PRIMARY KEY,
    email TEXT,
    name TEXT NOT NULL CHECK (length(name) > 0)
);
INSERT INTO users_new (id, email, name) SELECT id, email, name FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
