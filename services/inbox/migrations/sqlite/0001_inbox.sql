CREATE TABLE inbox_items (
	id TEXT PRIMARY KEY,
	app_id TEXT NOT NULL,
	user_id TEXT NOT NULL,
	notification_id TEXT NOT NULL DEFAULT '',
	delivery_id TEXT NOT NULL,
	kind TEXT NOT NULL,
	category TEXT NOT NULL DEFAULT '',
	title TEXT NOT NULL DEFAULT '',
	body TEXT NOT NULL DEFAULT '',
	todo_key TEXT NOT NULL DEFAULT '',
	data TEXT NOT NULL DEFAULT '',
	state TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	read_at INTEGER NOT NULL DEFAULT 0,
	done_at INTEGER NOT NULL DEFAULT 0
);
-- Deliver is idempotent on the delivery id. Delivery ids are hashes of the
-- notification id, so (notification_id, delivery_id) is as unique and, the
-- notification id being time-ordered, grows at its right edge instead of
-- dirtying a random page per insert.
CREATE UNIQUE INDEX inbox_items_delivery ON inbox_items(notification_id, delivery_id);
-- (app_id, user_id, id) serves the newest-first inbox pages; state rides
-- along so unread counts and state filters never touch the table.
CREATE INDEX inbox_items_user ON inbox_items(app_id, user_id, id, state);
-- Only to-dos carry a key: notices and reminders stay out of this index.
CREATE INDEX inbox_items_todo ON inbox_items(app_id, todo_key) WHERE todo_key <> '';
