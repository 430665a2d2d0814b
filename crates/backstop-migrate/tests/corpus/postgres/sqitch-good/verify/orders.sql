-- Verify shop:orders on postgres

SELECT 1;
