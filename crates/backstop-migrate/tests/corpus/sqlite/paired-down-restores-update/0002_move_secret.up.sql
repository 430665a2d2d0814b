CREATE TABLE secrets (user_id INTEGER PRIMARY KEY, data TEXT NOT NULL);
INSERT INTO secrets (user_id, data) SELECT id, secret FROM users WHERE secret IS NOT NULL;
UPDATE users SET secret = NULL;
