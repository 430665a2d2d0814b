ALTER TABLE site ADD COLUMN name_old TEXT;
UPDATE site SET name_old = name;
ALTER TABLE site DROP COLUMN name;
ALTER TABLE site RENAME COLUMN name_old TO name;
