-- Verify shop:orders on sqlite

SELECT 1;
