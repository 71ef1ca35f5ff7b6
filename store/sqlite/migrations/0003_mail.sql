-- The mail flows: verified emails, the sign-in methods of a session, one-time
-- secrets and the outbox of mail to send.

-- Set once the user proved they receive mail at email.
ALTER TABLE users ADD COLUMN email_verified INTEGER NOT NULL DEFAULT 0 CHECK (email_verified IN (0, 1));

-- The methods of the sign-in that started the session ("pwd", "email", ...),
-- space-separated; every access token of the session carries them.
ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT '';

-- Single-use secrets of every kind share this table. Only a MAC of the
-- secret is stored, so a copy of the database yields no usable link or code.
CREATE TABLE one_time_secrets (
	id         TEXT    NOT NULL PRIMARY KEY,
	kind       TEXT    NOT NULL, -- no CHECK: new kinds must not need a table rebuild
	subject    TEXT    NOT NULL, -- a user id, or "email:" and an EmailKey
	mac        BLOB    NOT NULL,
	data       TEXT    NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	used_at    INTEGER,          -- NULL while unused
	attempts   INTEGER NOT NULL DEFAULT 0
) STRICT;

-- CreateSecret voids, UseSecretOf and DeleteSecrets look up by (kind,
-- subject), the newest first; PruneSecrets deletes by expires_at.
CREATE INDEX one_time_secrets_kind_subject ON one_time_secrets (kind, subject, created_at);
CREATE INDEX one_time_secrets_expires_at ON one_time_secrets (expires_at);

-- Mail waiting to be sent. The body carries a live token, so it is sealed
-- by the caller and the row is deleted once sent. claimed_until is the end
-- of the lease of the instance sending it (NULL: not claimed).
CREATE TABLE mail_outbox (
	id              TEXT    NOT NULL PRIMARY KEY,
	sealed          BLOB    NOT NULL,
	created_at      INTEGER NOT NULL,
	next_attempt_at INTEGER NOT NULL,
	attempts        INTEGER NOT NULL DEFAULT 0,
	claimed_until   INTEGER
) STRICT;

-- ClaimMail takes the due messages, oldest due first.
CREATE INDEX mail_outbox_next_attempt_at ON mail_outbox (next_attempt_at);
