CREATE TABLE notifications (
	id TEXT PRIMARY KEY,
	app_id TEXT NOT NULL,
	status TEXT NOT NULL,
	priority TEXT NOT NULL,
	kind TEXT NOT NULL,
	category TEXT NOT NULL DEFAULT '',
	template_code TEXT NOT NULL DEFAULT '',
	template_version INTEGER NOT NULL DEFAULT 0,
	payload TEXT NOT NULL,
	idem_key TEXT,
	idem_hash TEXT,
	send_at INTEGER NOT NULL DEFAULT 0,
	expires_at INTEGER NOT NULL DEFAULT 0,
	next_at INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	dispatched_at INTEGER NOT NULL DEFAULT 0,
	completed_at INTEGER NOT NULL DEFAULT 0,
	deliveries_total INTEGER NOT NULL DEFAULT 0,
	error TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX notifications_idem ON notifications(app_id, idem_key) WHERE idem_key IS NOT NULL;
CREATE INDEX notifications_due ON notifications(next_at) WHERE status IN ('accepted', 'scheduled', 'queued', 'processing');
CREATE INDEX notifications_app ON notifications(app_id, id);
CREATE TABLE deliveries (
	id TEXT PRIMARY KEY,
	app_id TEXT NOT NULL,
	notification_id TEXT NOT NULL,
	recipient TEXT NOT NULL,
	user_id TEXT NOT NULL DEFAULT '',
	channel TEXT NOT NULL,
	address TEXT NOT NULL DEFAULT '',
	status TEXT NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	error TEXT NOT NULL DEFAULT '',
	provider_id TEXT NOT NULL DEFAULT '',
	parent_id TEXT NOT NULL DEFAULT '',
	next_at INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	sent_at INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX deliveries_notification ON deliveries(notification_id);
CREATE INDEX deliveries_due ON deliveries(next_at) WHERE status IN ('pending', 'queued');
CREATE INDEX deliveries_user ON deliveries(app_id, user_id, notification_id);
