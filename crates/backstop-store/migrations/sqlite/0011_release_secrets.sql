-- Secrets a release's instances get, as references (`{"env": "VAR"}` or `{"file": "/path"}`)
-- resolved by the daemon when it starts an instance: the values are never stored.
ALTER TABLE releases ADD COLUMN secrets TEXT NOT NULL DEFAULT '{}';
