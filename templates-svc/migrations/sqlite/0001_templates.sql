-- One row per (app, code): the current state of a template. latest_version
-- is the highest version ever written for the code; it never goes back, so a
-- code deleted and created again continues its numbering.
CREATE TABLE templates (
	app_id TEXT NOT NULL,
	code TEXT NOT NULL,
	name TEXT NOT NULL,
	category TEXT NOT NULL DEFAULT '',
	channels TEXT NOT NULL DEFAULT '',
	latest_version INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	deleted_at INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (app_id, code)
);
CREATE INDEX templates_category ON templates(app_id, category, code);
-- Immutable versions: the whole template body as JSON (name, category and
-- channels repeated for listing the history without decoding bodies).
CREATE TABLE template_versions (
	app_id TEXT NOT NULL,
	code TEXT NOT NULL,
	version INTEGER NOT NULL,
	name TEXT NOT NULL,
	category TEXT NOT NULL DEFAULT '',
	channels TEXT NOT NULL DEFAULT '',
	body TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (app_id, code, version)
);
