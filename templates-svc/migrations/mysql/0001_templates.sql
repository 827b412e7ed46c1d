-- One row per (app, code): the current state of a template. latest_version
-- is the highest version ever written for the code; it never goes back, so a
-- code deleted and created again continues its numbering.
CREATE TABLE templates (
	app_id VARCHAR(64) NOT NULL,
	code VARCHAR(64) NOT NULL,
	name VARCHAR(200) NOT NULL,
	category VARCHAR(64) NOT NULL DEFAULT '',
	channels VARCHAR(255) NOT NULL DEFAULT '',
	latest_version INT NOT NULL,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	deleted_at BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (app_id, code),
	KEY templates_category (app_id, category, code)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
-- Immutable versions: the whole template body as JSON (name, category and
-- channels repeated for listing the history without decoding bodies).
CREATE TABLE template_versions (
	app_id VARCHAR(64) NOT NULL,
	code VARCHAR(64) NOT NULL,
	version INT NOT NULL,
	name VARCHAR(200) NOT NULL,
	category VARCHAR(64) NOT NULL DEFAULT '',
	channels VARCHAR(255) NOT NULL DEFAULT '',
	body MEDIUMTEXT NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (app_id, code, version)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
