CREATE MATERIALIZED VIEW user_stats AS SELECT id, length(name) AS n FROM users;
CREATE UNIQUE INDEX user_stats_id ON user_stats (id);
