CREATE TABLE otp_codes (
	id TEXT PRIMARY KEY,
	app_id TEXT NOT NULL,
	recipient TEXT NOT NULL,
	purpose TEXT NOT NULL,
	channel TEXT NOT NULL,
	code_hash BLOB NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	max_attempts INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	used_at INTEGER NOT NULL DEFAULT 0,
	scrubbed INTEGER NOT NULL DEFAULT 0,
	notification_id TEXT NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE INDEX otp_codes_recipient ON otp_codes(app_id, recipient, purpose, created_at);
CREATE INDEX otp_codes_expiry ON otp_codes(expires_at);
