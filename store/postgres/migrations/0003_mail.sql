-- The mail flows: verified emails, the sign-in methods of a session, one-time
-- secrets and the outbox of mail to send. Mirrors
-- store/sqlite/migrations/0003_mail.sql.

-- Set once the user proved they receive mail at email.
ALTER TABLE users ADD COLUMN email_verified boolean NOT NULL DEFAULT false;

-- The methods of the sign-in that started the session ("pwd", "email", ...),
-- space-separated; every access token of the session carries them.
ALTER TABLE sessions ADD COLUMN amr text NOT NULL DEFAULT '';

-- Single-use secrets of every kind share this table. Only a MAC of the
-- secret is stored, so a copy of the database yields no usable link or code.
CREATE TABLE one_time_secrets (
    id         text COLLATE "C" PRIMARY KEY,
    kind       text NOT NULL, -- no CHECK: a new kind must not need a migration
    -- a user id, or "email:" and an EmailKey; compared bytewise like ids
    subject    text COLLATE "C" NOT NULL,
    mac        bytea NOT NULL,
    data       text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz, -- NULL while unused
    attempts   integer NOT NULL DEFAULT 0 CHECK (attempts >= 0)
);

-- CreateSecret voids, UseSecretOf and DeleteSecrets look up by (kind,
-- subject), the newest first; PruneSecrets deletes by expires_at.
CREATE INDEX one_time_secrets_kind_subject_idx ON one_time_secrets (kind, subject, created_at DESC);
CREATE INDEX one_time_secrets_expires_at_idx ON one_time_secrets (expires_at);

-- Mail waiting to be sent. The body carries a live token, so it is sealed
-- by the caller and the row is deleted once sent. claimed_until is the end
-- of the lease of the instance sending it (NULL: not claimed).
CREATE TABLE mail_outbox (
    id              text COLLATE "C" PRIMARY KEY,
    sealed          bytea NOT NULL,
    created_at      timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    claimed_until   timestamptz
);

-- ClaimMail takes the due messages, oldest due first.
CREATE INDEX mail_outbox_next_attempt_at_idx ON mail_outbox (next_attempt_at);
