-- API keys: long-lived credentials of a user for scripts and machines. They
-- go with their user. Mirrors store/sqlite/migrations/0007_api_keys.sql.

-- id is the public part of the key (gh_<id>_<secret>), so a presented key
-- is found by primary key; mac is HMAC-SHA256 of the whole key under a key
-- derived from the master secret: the plaintext is stored nowhere. scopes
-- are space-separated. last_used_at is written in batches, not per request.
CREATE TABLE api_keys (
    id           text COLLATE "C" PRIMARY KEY,
    user_id      text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL DEFAULT '',
    mac          bytea NOT NULL,
    scopes       text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz, -- NULL: never
    last_used_at timestamptz, -- NULL until first used
    revoked_at   timestamptz  -- NULL while not revoked
);

-- A user's keys, oldest first (APIKeys); also the index the foreign key's
-- cascade uses.
CREATE INDEX api_keys_user_created ON api_keys (user_id, created_at);

-- UpdateUserKeepingAdmin counts the other enabled admins.
CREATE INDEX users_enabled_admins ON users (id) WHERE role = 'admin' AND NOT disabled;
