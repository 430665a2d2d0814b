-- +goose Up
ALTER TABLE users ADD COLUMN city TEXT;

-- +goose Down
