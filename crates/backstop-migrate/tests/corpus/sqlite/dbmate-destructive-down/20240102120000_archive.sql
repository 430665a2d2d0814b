-- migrate:up
CREATE TABLE archive (id INTEGER PRIMARY KEY, note TEXT);

-- migrate:down
DROP TABLE archive;
DROP TABLE users;
