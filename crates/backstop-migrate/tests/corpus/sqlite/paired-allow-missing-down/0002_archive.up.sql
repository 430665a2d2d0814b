-- backstop:allow missing-down archives are never rolled back
CREATE TABLE archive (id INTEGER PRIMARY KEY);
