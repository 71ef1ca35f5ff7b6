-- Initial schema. Mirrors store/sqlite/migrations/0001_init.sql concept for
-- concept (CHECKs included), in native Postgres types.
--
-- Identifier columns use the "C" collation so that ordering and comparison
-- are bytewise, the same as Go's string comparison: ListUsers pages with
-- "id > after", which must agree with the order callers see in Go, whatever
-- the database's default collation is. It also keeps the primary-key index
-- usable for that range scan.

CREATE TABLE users (
    id                 text COLLATE "C" PRIMARY KEY,
    email              text NOT NULL,
    -- strings.ToLower(email), computed in Go for both insert and lookup, so
    -- that case-insensitivity is Go's Unicode folding and not the server's
    -- locale-dependent lower().
    email_key          text NOT NULL CONSTRAINT users_email_key_unique UNIQUE,
    name               text NOT NULL DEFAULT '',
    role               text NOT NULL CHECK (role IN ('user', 'admin')),
    password_hash      text NOT NULL,
    disabled           boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL,
    -- NULL means "none"; compared with GREATEST, which ignores NULLs.
    tokens_valid_after timestamptz
);

-- One row per session for its whole life: rotation bumps gen in place, so
-- storage stays constant however often a session refreshes. There is
-- deliberately no token or token-hash column; tokens are recomputed from
-- (id, gen) and the master secret.
CREATE TABLE sessions (
    id            text COLLATE "C" PRIMARY KEY,
    user_id       text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    gen           bigint NOT NULL CHECK (gen >= 1),
    created_at    timestamptz NOT NULL,
    rotated_at    timestamptz NOT NULL,
    last_used_at  timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    revoke_reason text NOT NULL DEFAULT '',
    user_agent    text NOT NULL DEFAULT '',
    ip            text NOT NULL DEFAULT '',
    transport     text NOT NULL CHECK (transport IN ('cookie', 'body'))
);

-- ListSessions and RevokeUserSessions select by user.
CREATE INDEX sessions_user_id_idx ON sessions (user_id, created_at DESC);

-- Append-only revocation log replayed by every instance. The surrogate key
-- exists only so rows are addressable (e.g. by logical replication); the
-- log is read by time.
CREATE TABLE revocations (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       text NOT NULL, -- no CHECK: a new kind must not need a migration
    subject    text NOT NULL,
    at         timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);

-- RevocationsSince reads by at; PruneRevocations deletes by expires_at.
CREATE INDEX revocations_at_idx ON revocations (at);
CREATE INDEX revocations_expires_at_idx ON revocations (expires_at);

CREATE TABLE signing_keys (
    id         text COLLATE "C" PRIMARY KEY,
    algorithm  text NOT NULL,
    sealed     bytea NOT NULL,
    created_at timestamptz NOT NULL
);
