-- Rebuild without the CHECK, but the columns come back in another order.
CREATE TABLE users_old (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT
);
INSERT INTO users_old (id, name, email) SELECT id, name, email FROM users;
DROP TABLE users;
ALTER TABLE users_old RENAME TO users;
