CREATE TABLE posts (id bigint PRIMARY KEY, user_id bigint REFERENCES users (id));
CREATE VIEW recent_posts AS SELECT id FROM posts;
