-- +goose Up
ALTER TABLE users ADD COLUMN city text;

-- +goose Down
