-- profile-svc: users, groups/modules, memberships, preferences, unsubscribes.
-- Every table is keyed by app_id first (tenancy).
CREATE TABLE profile_users (
	app_id VARCHAR(64) NOT NULL,
	id VARCHAR(128) NOT NULL,
	name VARCHAR(200) NOT NULL DEFAULT '',
	email VARCHAR(254) NOT NULL DEFAULT '',
	phone VARCHAR(16) NOT NULL DEFAULT '',
	locale VARCHAR(64) NOT NULL DEFAULT '',
	timezone VARCHAR(64) NOT NULL DEFAULT '',
	wechat VARCHAR(128) NOT NULL DEFAULT '',
	wecom VARCHAR(128) NOT NULL DEFAULT '',
	dingtalk VARCHAR(128) NOT NULL DEFAULT '',
	qq VARCHAR(128) NOT NULL DEFAULT '',
	webhook_url VARCHAR(2048) NOT NULL DEFAULT '',
	quiet_start INT NOT NULL DEFAULT -1,
	quiet_end INT NOT NULL DEFAULT -1,
	has_prefs TINYINT NOT NULL DEFAULT 0,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	PRIMARY KEY (app_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE profile_groups (
	app_id VARCHAR(64) NOT NULL,
	id VARCHAR(128) NOT NULL,
	name VARCHAR(200) NOT NULL DEFAULT '',
	kind VARCHAR(16) NOT NULL DEFAULT 'group',
	parent_id VARCHAR(128) NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	PRIMARY KEY (app_id, id),
	KEY profile_groups_parent (app_id, parent_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE profile_group_members (
	app_id VARCHAR(64) NOT NULL,
	group_id VARCHAR(128) NOT NULL,
	user_id VARCHAR(128) NOT NULL,
	PRIMARY KEY (app_id, group_id, user_id),
	KEY profile_group_members_user (app_id, user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE profile_prefs (
	app_id VARCHAR(64) NOT NULL,
	user_id VARCHAR(128) NOT NULL,
	category VARCHAR(64) NOT NULL,
	channel VARCHAR(16) NOT NULL,
	allowed TINYINT NOT NULL,
	PRIMARY KEY (app_id, user_id, category, channel)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE profile_unsubscribes (
	app_id VARCHAR(64) NOT NULL,
	user_id VARCHAR(128) NOT NULL,
	category VARCHAR(64) NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (app_id, user_id, category)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
