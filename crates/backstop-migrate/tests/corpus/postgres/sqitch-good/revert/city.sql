-- Revert shop:city from postgres

DROP INDEX users_city;
ALTER TABLE users DROP COLUMN city;
