-- backstop:allow breaking-rename-table the old name is read by no released version
ALTER TABLE mod_sticky ADD COLUMN local INTEGER NOT NULL DEFAULT 1;
ALTER TABLE mod_sticky RENAME TO mod_feature;
