-- Passkeys: WebAuthn credentials registered by a user; they go with their
-- user. Mirrors store/sqlite/migrations/0005_passkeys.sql.

-- id is Gatehouse's own id (the one the API names); credential_id is the
-- authenticator's, unique across all users, since a sign-in finds the
-- passkey by it before it knows the user. credential is the go-webauthn
-- credential as JSON (public key, sign count, flags): nothing secret, but
-- it changes on every use, and UpdatePasskeyUse swaps it only while it is
-- still the one the caller read.
CREATE TABLE passkeys (
    id            text COLLATE "C" PRIMARY KEY,
    user_id       text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id bytea NOT NULL CONSTRAINT passkeys_credential_id_unique UNIQUE,
    credential    bytea NOT NULL,
    name          text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL,
    last_used_at  timestamptz -- NULL until first used
);

-- A user's passkeys, oldest first (Passkeys, CountPasskeys); also the
-- index the foreign key's cascade uses.
CREATE INDEX passkeys_user_created ON passkeys (user_id, created_at);
