DELETE FROM users WHERE name IN ('ada', 'grace');
