-- no-transaction
DROP INDEX CONCURRENTLY IF EXISTS users_name;
