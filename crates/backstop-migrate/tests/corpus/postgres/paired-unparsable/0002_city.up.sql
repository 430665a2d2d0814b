-- add the city

ALTER TABLE users ADD COLUMN city text;
CREATE TABLE cities (id bigint,, name text);
