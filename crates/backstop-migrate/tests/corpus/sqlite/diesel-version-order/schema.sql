-- a loose dump beside the folders; diesel ignores it
CREATE TABLE junk (
