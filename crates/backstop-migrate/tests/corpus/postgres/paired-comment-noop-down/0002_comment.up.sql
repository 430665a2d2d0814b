COMMENT ON TABLE users IS 'people who sign in';
GRANT SELECT ON users TO PUBLIC;
