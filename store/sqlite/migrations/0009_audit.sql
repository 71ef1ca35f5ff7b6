-- The audit log: security events (sign-ins, failed sign-ins of existing
-- accounts, changes of password, email or second factors, admin actions).
-- Rows are appended and, past the retention period, deleted; nothing ever
-- changes one, and the trigger below refuses any UPDATE outright.

-- id is assigned here (AUTOINCREMENT: never reused, even after the newest
-- rows were pruned), so it orders the log and pages it without depending
-- on the clocks of the instances that wrote it. user_id has no foreign
-- key: an account's history outlives changes to the account. detail is a
-- small JSON object of whitelisted, non-secret facts.
CREATE TABLE audit_events (
	id         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	time       INTEGER NOT NULL,
	type       TEXT    NOT NULL,
	user_id    TEXT    NOT NULL DEFAULT '',
	session_id TEXT    NOT NULL DEFAULT '',
	ip         TEXT    NOT NULL DEFAULT '',
	user_agent TEXT    NOT NULL DEFAULT '',
	outcome    TEXT    NOT NULL,
	detail     TEXT    NOT NULL DEFAULT '{}'
) STRICT;

-- One account's events, newest first (GET /auth/activity, the admin
-- listing filtered by user); one type's events; and the retention delete.
CREATE INDEX audit_events_user ON audit_events (user_id, id);
CREATE INDEX audit_events_type ON audit_events (type, id);
CREATE INDEX audit_events_time ON audit_events (time);

CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
BEGIN
	SELECT RAISE(ABORT, 'audit events are append-only');
END;
