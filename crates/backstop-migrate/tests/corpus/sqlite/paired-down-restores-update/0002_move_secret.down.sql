UPDATE users SET secret = (SELECT data FROM secrets WHERE secrets.user_id = users.id);
DROP TABLE secrets;
