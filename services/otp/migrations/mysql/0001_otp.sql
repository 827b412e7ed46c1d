CREATE TABLE otp_codes (
	id VARCHAR(64) NOT NULL PRIMARY KEY,
	app_id VARCHAR(64) NOT NULL,
	recipient VARCHAR(300) NOT NULL,
	purpose VARCHAR(64) NOT NULL,
	channel VARCHAR(16) NOT NULL,
	code_hash VARBINARY(64) NOT NULL,
	attempts INT NOT NULL DEFAULT 0,
	max_attempts INT NOT NULL,
	expires_at BIGINT NOT NULL,
	used_at BIGINT NOT NULL DEFAULT 0,
	scrubbed INT NOT NULL DEFAULT 0,
	notification_id VARCHAR(64) NOT NULL,
	created_at BIGINT NOT NULL,
	KEY otp_codes_recipient (app_id, recipient, purpose, created_at),
	KEY otp_codes_expiry (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
