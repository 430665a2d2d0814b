DROP VIEW recent_events;
