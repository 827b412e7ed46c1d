-- Raw tracker events: a notification's trace, swept after the retention period.
-- Rows arrive in about time order, so the sweep walks the primary key from the
-- oldest row instead of keeping an index on at (one index less per event).
CREATE TABLE analytics_events (
	id INTEGER PRIMARY KEY,
	app_id VARCHAR(64) NOT NULL,
	notification_id VARCHAR(64) NOT NULL,
	delivery_id VARCHAR(64) NOT NULL DEFAULT '',
	user_id VARCHAR(191) NOT NULL DEFAULT '',
	channel VARCHAR(32) NOT NULL DEFAULT '',
	category VARCHAR(128) NOT NULL DEFAULT '',
	priority VARCHAR(16) NOT NULL DEFAULT '',
	type VARCHAR(32) NOT NULL,
	error VARCHAR(1000) NOT NULL DEFAULT '',
	at BIGINT NOT NULL,
	latency_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX analytics_events_trace ON analytics_events (app_id, notification_id, at);

-- Counters per (app, hour|day bucket, event type, channel, category),
-- incremented in the transaction that stores the events.
CREATE TABLE analytics_rollups (
	app_id VARCHAR(64) NOT NULL,
	bucket VARCHAR(8) NOT NULL,
	bucket_start BIGINT NOT NULL,
	type VARCHAR(32) NOT NULL,
	channel VARCHAR(32) NOT NULL,
	category VARCHAR(128) NOT NULL,
	events BIGINT NOT NULL,
	latency_sum BIGINT NOT NULL,
	latency_n BIGINT NOT NULL,
	latency_max BIGINT NOT NULL,
	PRIMARY KEY (app_id, bucket, bucket_start, type, channel, category)
) WITHOUT ROWID;
