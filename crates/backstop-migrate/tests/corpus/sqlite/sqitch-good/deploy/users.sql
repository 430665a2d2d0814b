-- Deploy shop:users to sqlite

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL
);
