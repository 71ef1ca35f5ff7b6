-- External identity providers and the identities linked to users. Mirrors
-- store/sqlite/migrations/0006_idps.sql.

-- A provider as configured by `gatehouse idp add` or PUT /admin/idps/{name}.
-- sealed_secret is the client secret sealed under a key derived from the
-- master secret; scopes are space-separated. The endpoint columns are empty
-- for OpenID providers (discovered from the issuer) and set for OAuth 2.0
-- ones such as GitHub.
CREATE TABLE idp_providers (
    name          text COLLATE "C" PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('oidc', 'github')),
    display_name  text NOT NULL DEFAULT '',
    issuer        text NOT NULL,
    client_id     text NOT NULL,
    sealed_secret bytea NOT NULL,
    scopes        text NOT NULL DEFAULT '',
    auth_url      text NOT NULL DEFAULT '',
    token_url     text NOT NULL DEFAULT '',
    userinfo_url  text NOT NULL DEFAULT '',
    no_signup     boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- A user's account at a provider. A provider's subject is unique per
-- provider (sign-in finds the user by it); identities go with their user
-- and with their provider.
CREATE TABLE identities (
    id         text COLLATE "C" PRIMARY KEY,
    provider   text COLLATE "C" NOT NULL REFERENCES idp_providers (name) ON DELETE CASCADE,
    subject    text COLLATE "C" NOT NULL,
    user_id    text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    CONSTRAINT identities_provider_subject_unique UNIQUE (provider, subject)
);

-- A user's identities, oldest first (Identities, DeleteIdentity); also the
-- index the user foreign key's cascade uses.
CREATE INDEX identities_user_created ON identities (user_id, created_at);
