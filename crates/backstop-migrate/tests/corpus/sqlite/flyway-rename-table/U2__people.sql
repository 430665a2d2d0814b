ALTER TABLE people RENAME TO users;
