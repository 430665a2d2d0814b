-- Revert shop:users from sqlite

DROP TABLE users;
