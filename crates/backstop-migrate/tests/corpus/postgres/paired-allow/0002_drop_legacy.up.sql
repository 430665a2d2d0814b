-- backstop:allow destructive-drop-column nothing reads legacy since 2.3
ALTER TABLE users DROP COLUMN legacy;
