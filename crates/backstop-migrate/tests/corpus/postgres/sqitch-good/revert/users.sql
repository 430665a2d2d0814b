-- Revert shop:users from postgres

DROP TABLE users;
