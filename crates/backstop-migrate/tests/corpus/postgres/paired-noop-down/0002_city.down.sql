-- nothing to undo
SELECT 1;
