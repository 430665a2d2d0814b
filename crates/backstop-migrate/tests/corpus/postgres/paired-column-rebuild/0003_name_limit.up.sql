ALTER TABLE site ADD COLUMN name_new VARCHAR(200);
UPDATE site SET name_new = name;
ALTER TABLE site DROP COLUMN name;
ALTER TABLE site RENAME COLUMN name_new TO name;
