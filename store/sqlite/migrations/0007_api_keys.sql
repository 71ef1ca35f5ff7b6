-- API keys: long-lived credentials of a user for scripts and machines. They
-- go with their user.

-- id is the public part of the key (gh_<id>_<secret>), so a presented key
-- is found by primary key; mac is HMAC-SHA256 of the whole key under a key
-- derived from the master secret: the plaintext is stored nowhere. scopes
-- are space-separated. last_used_at is written in batches, not per request.
CREATE TABLE api_keys (
	id           TEXT    NOT NULL PRIMARY KEY,
	user_id      TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	name         TEXT    NOT NULL DEFAULT '',
	mac          BLOB    NOT NULL,
	scopes       TEXT    NOT NULL DEFAULT '',
	created_at   INTEGER NOT NULL,
	expires_at   INTEGER,          -- NULL: never
	last_used_at INTEGER,          -- NULL until first used
	revoked_at   INTEGER           -- NULL while not revoked
) STRICT;

-- A user's keys, oldest first (APIKeys); also the index the foreign key's
-- cascade uses.
CREATE INDEX api_keys_user_created ON api_keys (user_id, created_at);

-- UpdateUserKeepingAdmin counts the other enabled admins.
CREATE INDEX users_enabled_admins ON users (id) WHERE role = 'admin' AND disabled = 0;
