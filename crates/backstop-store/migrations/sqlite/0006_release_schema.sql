-- The schema range a release declares it runs on (JSON {"min","max"}), for schema-aware rollbacks.
ALTER TABLE releases ADD COLUMN schema_range TEXT;
