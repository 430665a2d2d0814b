--liquibase formatted sql

--changeset ada:1
CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL
);
--rollback DROP TABLE users;

--changeset ada:2
ALTER TABLE users ADD COLUMN city text;
