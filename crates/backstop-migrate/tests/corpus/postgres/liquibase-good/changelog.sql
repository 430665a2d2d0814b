--liquibase formatted sql

--changeset ada:1
CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL
);
--rollback DROP TABLE users;

--changeset ada:2
ALTER TABLE users ADD COLUMN city text;
CREATE INDEX users_city ON users (city);
--rollback DROP INDEX users_city;
--rollback ALTER TABLE users DROP COLUMN city;

--changeset ada:3
CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id),
    total_cents bigint NOT NULL DEFAULT 0
);
CREATE VIEW order_totals AS SELECT user_id, sum(total_cents) AS cents FROM orders GROUP BY user_id;
--rollback DROP VIEW order_totals;
--rollback DROP TABLE orders;

--changeset ada:4
--comment: normalise names (a data fix that cannot be undone)
UPDATE users SET name = trim(name) WHERE name <> trim(name);
--rollback not required
