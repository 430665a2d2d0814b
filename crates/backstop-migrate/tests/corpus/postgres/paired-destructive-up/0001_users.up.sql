CREATE TABLE users (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    nickname text
);
CREATE TABLE audit (id bigint PRIMARY KEY, note text);
