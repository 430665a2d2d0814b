-- backstop:allow destructive-drop-column nothing has read hide since 0.19
ALTER TABLE site DROP COLUMN hide;
