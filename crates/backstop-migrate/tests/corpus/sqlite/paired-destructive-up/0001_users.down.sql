DROP TABLE audit;
DROP TABLE users;
