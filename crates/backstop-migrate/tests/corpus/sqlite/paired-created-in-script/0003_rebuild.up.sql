ALTER TABLE users RENAME TO users_old;
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT '', city TEXT);
INSERT INTO users (id, name, city) SELECT id, coalesce(name, ''), city FROM users_old;
DROP TABLE users_old;
