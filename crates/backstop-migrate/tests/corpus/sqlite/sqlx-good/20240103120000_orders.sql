CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    total_cents INTEGER NOT NULL DEFAULT 0
);
CREATE VIEW order_totals AS SELECT user_id, sum(total_cents) AS cents FROM orders GROUP BY user_id;
