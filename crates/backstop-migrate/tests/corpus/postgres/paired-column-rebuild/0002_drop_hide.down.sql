-- hide comes back in its place: the columns after it are rebuilt behind it
ALTER TABLE site ADD COLUMN hide BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE site ADD COLUMN name_new TEXT;
UPDATE site SET name_new = name;
ALTER TABLE site DROP COLUMN name;
ALTER TABLE site RENAME COLUMN name_new TO name;
