DROP TABLE mod_sticky;
