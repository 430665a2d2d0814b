-- migrate:up
CREATE TABLE archive (id bigint PRIMARY KEY, note text);

-- migrate:down
DROP TABLE archive;
DROP TABLE users;
