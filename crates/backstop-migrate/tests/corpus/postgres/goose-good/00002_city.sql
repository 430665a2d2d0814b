-- +goose Up
ALTER TABLE users ADD COLUMN city text;
CREATE INDEX users_city ON users (city);

-- +goose Down
DROP INDEX users_city;
ALTER TABLE users DROP COLUMN city;
