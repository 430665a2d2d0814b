DROP TABLE users;
ALTER TABLE customers RENAME TO users;
