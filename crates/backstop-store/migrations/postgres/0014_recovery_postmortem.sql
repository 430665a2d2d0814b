-- What people did with a recovery's post-mortem (JSON: done, by whom, link, reminded).
ALTER TABLE recoveries ADD COLUMN postmortem TEXT;
