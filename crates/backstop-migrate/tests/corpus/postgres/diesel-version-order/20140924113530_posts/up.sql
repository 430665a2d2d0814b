CREATE TABLE posts (id bigint PRIMARY KEY, account_id bigint REFERENCES accounts (id));
