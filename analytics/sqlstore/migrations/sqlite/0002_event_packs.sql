-- A row may carry further events of the same notification, tracked in the
-- same batch (a fan-out's thousands of deliveries): "more" holds them as a
-- JSON array of [delivery_id, user_id, channel, category, priority, type,
-- error, at, latency_ms] and more_n counts them. One row and one index entry
-- then serve a whole page of a fan-out instead of one per event.
ALTER TABLE analytics_events ADD COLUMN more TEXT NOT NULL DEFAULT '';
ALTER TABLE analytics_events ADD COLUMN more_n INTEGER NOT NULL DEFAULT 0;
