CREATE TABLE users (
    id bigint PRIMARY KEY,
    name varchar(200) NOT NULL
);
