DROP INDEX users_city;
ALTER TABLE users DROP COLUMN city;
