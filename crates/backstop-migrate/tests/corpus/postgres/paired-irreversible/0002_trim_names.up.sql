-- backstop:irreversible reason="names are normalised; the old spelling is not kept"
-- backstop:forward-only
-- backstop:phase backfill
UPDATE users SET name = trim(name) WHERE name <> trim(name);
