ALTER TABLE users ADD COLUMN city TEXT;
CREATE INDEX users_name ON users (name);
