-- Per-app vendor provider accounts (SMS, WeChat, WeCom, DingTalk, QQ).
-- settings holds the provider's settings as JSON, encrypted with
-- AES-256-GCM ("v1:" + base64(nonce || ciphertext)), bound to app_id/name.
CREATE TABLE providers (
	app_id VARCHAR(64) NOT NULL,
	name VARCHAR(64) NOT NULL,
	type VARCHAR(32) NOT NULL,
	weight INT NOT NULL DEFAULT 1,
	settings MEDIUMTEXT NOT NULL,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	PRIMARY KEY (app_id, name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
