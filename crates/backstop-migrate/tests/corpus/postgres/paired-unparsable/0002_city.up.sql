-- add the city

ALTER TABLE users ADD COLUMN city text;
ALTER TABLE users ADD COLUMN;
