-- External identity providers and the identities linked to users.

-- A provider as configured by `gatehouse idp add` or PUT /admin/idps/{name}.
-- sealed_secret is the client secret sealed under a key derived from the
-- master secret; scopes are space-separated. The endpoint columns are empty
-- for OpenID providers (discovered from the issuer) and set for OAuth 2.0
-- ones such as GitHub.
CREATE TABLE idp_providers (
	name          TEXT    NOT NULL PRIMARY KEY,
	kind          TEXT    NOT NULL CHECK (kind IN ('oidc', 'github')),
	display_name  TEXT    NOT NULL DEFAULT '',
	issuer        TEXT    NOT NULL,
	client_id     TEXT    NOT NULL,
	sealed_secret BLOB    NOT NULL,
	scopes        TEXT    NOT NULL DEFAULT '',
	auth_url      TEXT    NOT NULL DEFAULT '',
	token_url     TEXT    NOT NULL DEFAULT '',
	userinfo_url  TEXT    NOT NULL DEFAULT '',
	no_signup     INTEGER NOT NULL DEFAULT 0 CHECK (no_signup IN (0, 1)),
	created_at    INTEGER NOT NULL,
	updated_at    INTEGER NOT NULL
) STRICT;

-- A user's account at a provider. A provider's subject is unique per
-- provider (sign-in finds the user by it); identities go with their user
-- and with their provider.
CREATE TABLE identities (
	id         TEXT    NOT NULL PRIMARY KEY,
	provider   TEXT    NOT NULL REFERENCES idp_providers (name) ON DELETE CASCADE,
	subject    TEXT    NOT NULL,
	user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	email      TEXT    NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	UNIQUE (provider, subject)
) STRICT;

-- A user's identities, oldest first (Identities, DeleteIdentity); also the
-- index the user foreign key's cascade uses.
CREATE INDEX identities_user_created ON identities (user_id, created_at);
