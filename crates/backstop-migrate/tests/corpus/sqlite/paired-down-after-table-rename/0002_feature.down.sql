ALTER TABLE mod_feature DROP COLUMN local;
ALTER TABLE mod_feature RENAME TO mod_sticky;
