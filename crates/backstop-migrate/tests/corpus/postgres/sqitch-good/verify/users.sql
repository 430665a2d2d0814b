-- Verify shop:users on postgres

SELECT 1;
