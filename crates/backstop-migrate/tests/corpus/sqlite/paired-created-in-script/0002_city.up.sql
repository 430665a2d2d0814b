ALTER TABLE users ADD COLUMN city TEXT;
UPDATE users SET city = 'unknown';
