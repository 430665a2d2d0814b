-- migrate:up
ALTER TABLE users ADD COLUMN city text;
CREATE INDEX users_city ON users (city);

-- migrate:down
DROP INDEX users_city;
ALTER TABLE users DROP COLUMN city;
