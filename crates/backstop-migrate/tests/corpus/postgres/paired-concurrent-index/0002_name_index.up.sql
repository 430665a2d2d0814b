-- no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_name ON users (name);
