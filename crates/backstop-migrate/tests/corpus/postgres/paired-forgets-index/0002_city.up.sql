ALTER TABLE users ADD COLUMN city text;
CREATE INDEX users_name ON users (name);
