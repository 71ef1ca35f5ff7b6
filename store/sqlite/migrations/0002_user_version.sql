-- users.version changes with every change of role, enabled state or
-- password; a session is inserted only while the version its login read is
-- still current, so a login that overlapped such a change cannot outlive it.
ALTER TABLE users ADD COLUMN version INTEGER NOT NULL DEFAULT 1;

-- Ended sessions are deleted after a retention period, in batches.
CREATE INDEX sessions_expires_at ON sessions (expires_at);
