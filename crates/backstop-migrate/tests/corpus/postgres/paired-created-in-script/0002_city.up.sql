ALTER TABLE users ADD COLUMN city text;
UPDATE users SET city = 'unknown';
