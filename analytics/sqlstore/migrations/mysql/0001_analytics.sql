-- Raw tracker events: a notification's trace, swept after the retention period.
-- Rows arrive in about time order, so the sweep walks the primary key from the
-- oldest row instead of keeping an index on at (one index less per event).
CREATE TABLE analytics_events (
	id BIGINT NOT NULL AUTO_INCREMENT,
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
	latency_ms BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (id),
	KEY analytics_events_trace (app_id, notification_id, at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

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
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
