CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id),
    total_cents bigint NOT NULL DEFAULT 0
);
CREATE VIEW order_totals AS SELECT user_id, sum(total_cents) AS cents FROM orders GROUP BY user_id;
