-- Passkeys: WebAuthn credentials registered by a user; they go with their
-- user.

-- id is Gatehouse's own id (the one the API names); credential_id is the
-- authenticator's, unique across all users, since a sign-in finds the
-- passkey by it before it knows the user. credential is the go-webauthn
-- credential as JSON (public key, sign count, flags): nothing secret, but
-- it changes on every use, and UpdatePasskeyUse swaps it only while it is
-- still the one the caller read.
CREATE TABLE passkeys (
	id            TEXT    NOT NULL PRIMARY KEY,
	user_id       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	credential_id BLOB    NOT NULL UNIQUE,
	credential    BLOB    NOT NULL,
	name          TEXT    NOT NULL DEFAULT '',
	created_at    INTEGER NOT NULL,
	last_used_at  INTEGER                     -- NULL until first used
) STRICT;

-- A user's passkeys, oldest first (Passkeys, CountPasskeys); also the
-- index the foreign key's cascade uses.
CREATE INDEX passkeys_user_created ON passkeys (user_id, created_at);
