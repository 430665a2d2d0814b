CREATE TABLE posts (id INTEGER PRIMARY KEY, account_id INTEGER REFERENCES accounts (id));
