-- Revert shop:orders from postgres

DROP VIEW order_totals;
DROP TABLE orders;
