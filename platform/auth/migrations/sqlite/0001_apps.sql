CREATE TABLE apps (
	id TEXT PRIMARY KEY,
	name TEXT NOT NULL,
	settings TEXT NOT NULL DEFAULT '{}',
	created_at INTEGER NOT NULL,
	disabled_at INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE api_keys (
	id TEXT PRIMARY KEY,
	app_id TEXT NOT NULL REFERENCES apps(id),
	hash BLOB NOT NULL,
	created_at INTEGER NOT NULL,
	revoked_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX api_keys_app ON api_keys(app_id);
