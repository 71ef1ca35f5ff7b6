-- Initial schema. Times are INTEGER unix microseconds, UTC; NULL means "none".
-- Tables are STRICT so that a wrongly typed bind fails loudly instead of being
-- stored as text.

CREATE TABLE users (
	id                 TEXT    NOT NULL PRIMARY KEY,
	email              TEXT    NOT NULL,              -- as given
	email_key          TEXT    NOT NULL,              -- strings.ToLower(email): SQLite's lower() is ASCII-only
	name               TEXT    NOT NULL DEFAULT '',
	role               TEXT    NOT NULL CHECK (role IN ('user', 'admin')),
	password_hash      TEXT    NOT NULL,
	disabled           INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
	created_at         INTEGER NOT NULL,
	tokens_valid_after INTEGER
) STRICT;

CREATE UNIQUE INDEX users_email_key ON users (email_key);

-- One row per session however often it rotates: the refresh token of
-- generation gen is recomputed from (id, gen) and the master secret, so no
-- token or token hash is stored.
CREATE TABLE sessions (
	id            TEXT    NOT NULL PRIMARY KEY,
	user_id       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	gen           INTEGER NOT NULL,
	created_at    INTEGER NOT NULL,
	rotated_at    INTEGER NOT NULL,
	last_used_at  INTEGER NOT NULL,
	expires_at    INTEGER NOT NULL,
	revoked_at    INTEGER,
	revoke_reason TEXT    NOT NULL DEFAULT '',
	user_agent    TEXT    NOT NULL DEFAULT '',
	ip            TEXT    NOT NULL DEFAULT '',
	transport     TEXT    NOT NULL CHECK (transport IN ('cookie', 'body'))
) STRICT;

-- ListSessions and RevokeUserSessions go by user; created_at gives the order.
CREATE INDEX sessions_user ON sessions (user_id, created_at);

CREATE TABLE revocations (
	id         INTEGER NOT NULL PRIMARY KEY,
	kind       TEXT    NOT NULL, -- no CHECK: new kinds must not need a table rebuild
	subject    TEXT    NOT NULL,
	at         INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) STRICT;

-- RevocationsSince polls by at; PruneRevocations deletes by expires_at.
CREATE INDEX revocations_at ON revocations (at);
CREATE INDEX revocations_expires_at ON revocations (expires_at);

CREATE TABLE signing_keys (
	id         TEXT    NOT NULL PRIMARY KEY,
	algorithm  TEXT    NOT NULL,
	sealed     BLOB    NOT NULL,   -- encrypted by the caller before it gets here
	created_at INTEGER NOT NULL
) STRICT;
