-- add the city

ALTER TABLE users ADD COLUMN city TEXT;
ALTER TABLE users ADD COLUMN;
