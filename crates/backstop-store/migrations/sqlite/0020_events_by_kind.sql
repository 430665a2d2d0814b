-- /metrics counts events of a few kinds (SLA breaches, first requests, verdicts, restores)
-- per rollout: an index on the kind keeps each scrape from reading every event.
CREATE INDEX events_by_kind ON events (kind, rollout_id, at_ms);
