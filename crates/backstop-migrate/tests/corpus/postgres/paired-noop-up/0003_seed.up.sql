UPDATE users SET name = 'admin' WHERE id = 1;
