-- Verify shop:city on postgres

SELECT 1;
