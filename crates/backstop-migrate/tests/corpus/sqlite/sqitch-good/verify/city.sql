-- Verify shop:city on sqlite

SELECT 1;
