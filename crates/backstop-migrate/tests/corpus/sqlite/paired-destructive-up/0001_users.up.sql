CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    nickname TEXT
);
CREATE TABLE audit (id INTEGER PRIMARY KEY, note TEXT);
