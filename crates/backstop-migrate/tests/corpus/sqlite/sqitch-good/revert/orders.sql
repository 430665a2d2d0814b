-- Revert shop:orders from sqlite

DROP VIEW order_totals;
DROP TABLE orders;
