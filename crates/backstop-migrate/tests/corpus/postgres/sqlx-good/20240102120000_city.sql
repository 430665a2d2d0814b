ALTER TABLE users ADD COLUMN city text;
CREATE INDEX users_city ON users (city);
