-- Verify shop:users on sqlite

SELECT 1;
