CREATE TABLE users (id INTEGER PRIMARY KEY);
-- backstop:allow destructive-drop-colum typo
