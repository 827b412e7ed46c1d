-- profile-svc: users, groups/modules, memberships, preferences, unsubscribes.
-- Every table is keyed by app_id first (tenancy); WITHOUT ROWID clusters rows
-- on the primary key, which is what every read uses.
CREATE TABLE profile_users (
	app_id TEXT NOT NULL,
	id TEXT NOT NULL,
	name TEXT NOT NULL DEFAULT '',
	email TEXT NOT NULL DEFAULT '',
	phone TEXT NOT NULL DEFAULT '',
	locale TEXT NOT NULL DEFAULT '',
	timezone TEXT NOT NULL DEFAULT '',
	wechat TEXT NOT NULL DEFAULT '',
	wecom TEXT NOT NULL DEFAULT '',
	dingtalk TEXT NOT NULL DEFAULT '',
	qq TEXT NOT NULL DEFAULT '',
	webhook_url TEXT NOT NULL DEFAULT '',
	quiet_start INTEGER NOT NULL DEFAULT -1,
	quiet_end INTEGER NOT NULL DEFAULT -1,
	has_prefs INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (app_id, id)
) WITHOUT ROWID;
CREATE TABLE profile_groups (
	app_id TEXT NOT NULL,
	id TEXT NOT NULL,
	name TEXT NOT NULL DEFAULT '',
	kind TEXT NOT NULL DEFAULT 'group',
	parent_id TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (app_id, id)
) WITHOUT ROWID;
CREATE INDEX profile_groups_parent ON profile_groups (app_id, parent_id);
CREATE TABLE profile_group_members (
	app_id TEXT NOT NULL,
	group_id TEXT NOT NULL,
	user_id TEXT NOT NULL,
	PRIMARY KEY (app_id, group_id, user_id)
) WITHOUT ROWID;
CREATE INDEX profile_group_members_user ON profile_group_members (app_id, user_id);
CREATE TABLE profile_prefs (
	app_id TEXT NOT NULL,
	user_id TEXT NOT NULL,
	category TEXT NOT NULL,
	channel TEXT NOT NULL,
	allowed INTEGER NOT NULL,
	PRIMARY KEY (app_id, user_id, category, channel)
) WITHOUT ROWID;
CREATE TABLE profile_unsubscribes (
	app_id TEXT NOT NULL,
	user_id TEXT NOT NULL,
	category TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (app_id, user_id, category)
) WITHOUT ROWID;
