DROP EXTENSION IF EXISTS backstop_no_such_extension;
