-- safety-assured:start
DELETE FROM users;
-- safety-assured:end
ALTER TABLE users ADD COLUMN city TEXT;
