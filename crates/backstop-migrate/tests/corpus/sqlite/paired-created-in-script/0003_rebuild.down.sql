ALTER TABLE users RENAME TO users_new;
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, city TEXT);
INSERT INTO users (id, name, city) SELECT id, name, city FROM users_new;
DROP TABLE users_new;
