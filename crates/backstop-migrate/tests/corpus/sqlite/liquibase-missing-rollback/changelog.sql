--liquibase formatted sql

--changeset ada:1
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL
);
--rollback DROP TABLE users;

--changeset ada:2
ALTER TABLE users ADD COLUMN city TEXT;
