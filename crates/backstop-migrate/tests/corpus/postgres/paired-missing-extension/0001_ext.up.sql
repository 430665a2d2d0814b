CREATE EXTENSION IF NOT EXISTS backstop_no_such_extension;
