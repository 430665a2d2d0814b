UPDATE users SET role = 'member';
