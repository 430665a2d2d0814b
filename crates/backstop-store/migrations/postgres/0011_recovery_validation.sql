-- The post-recovery suite of a done recovery (JSON), and its status to find pending ones.
ALTER TABLE recoveries ADD COLUMN validation TEXT;
ALTER TABLE recoveries ADD COLUMN validation_status TEXT;
