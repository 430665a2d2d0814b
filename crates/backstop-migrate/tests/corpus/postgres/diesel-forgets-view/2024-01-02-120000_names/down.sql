-- the view is harmless
SELECT 1;
