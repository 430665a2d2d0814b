ALTER TABLE users ADD COLUMN city TEXT;
CREATE INDEX users_city ON users (city);
