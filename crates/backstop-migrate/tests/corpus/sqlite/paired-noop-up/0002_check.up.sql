-- only an assertion that the table is there
SELECT 1;
DROP INDEX IF EXISTS no_such_index;
