-- add the city

ALTER TABLE users ADD COLUMN city TEXT;
CREATE TABLE cities (id INTEGER,, name TEXT);
