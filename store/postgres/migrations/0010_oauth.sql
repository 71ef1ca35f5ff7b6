-- Gatehouse as an OAuth 2.1 / OpenID provider: the clients registered with
-- it, the consents users gave them, and the sessions authorized for them.
-- Mirrors store/sqlite/migrations/0010_oauth.sql.

-- secret_mac is an HMAC of the client secret under a key derived from the
-- master secret (NULL: public client, or one that authenticates only by
-- certificate). The lists (redirect_uris, post_logout_redirect_uris,
-- grants, scopes) are JSON arrays of strings kept as text, so they come
-- back byte for byte and in order, as from SQLite.
CREATE TABLE oauth_clients (
    id                        text COLLATE "C" PRIMARY KEY,
    name                      text NOT NULL DEFAULT '',
    secret_mac                bytea,
    redirect_uris             text NOT NULL DEFAULT '[]',
    post_logout_redirect_uris text NOT NULL DEFAULT '[]',
    public                    boolean NOT NULL DEFAULT false,
    first_party               boolean NOT NULL DEFAULT false,
    grants                    text NOT NULL DEFAULT '[]',
    scopes                    text NOT NULL DEFAULT '[]',
    audience                  text NOT NULL DEFAULT '',
    tls_subject               text NOT NULL DEFAULT '', -- '' when not tls_client_auth
    created_at                timestamptz NOT NULL
);

-- OAuthClients lists oldest first.
CREATE INDEX oauth_clients_created_idx ON oauth_clients (created_at);

-- One row per user and client; scopes is a JSON array of strings. Both go
-- with their user and with their client.
CREATE TABLE oauth_consents (
    user_id    text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  text COLLATE "C" NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    scopes     text NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

-- The cascade from oauth_clients (the primary key serves the users side and
-- Consents).
CREATE INDEX oauth_consents_client_idx ON oauth_consents (client_id);

-- The client a session was authorized for ('' for Gatehouse's own
-- sign-ins), the scope granted to it, and the thumbprint of the client
-- certificate its tokens are bound to ('' when unbound). No foreign key:
-- removing a client revokes its sessions, it does not rewrite them.
ALTER TABLE sessions
    ADD COLUMN client_id       text COLLATE "C" NOT NULL DEFAULT '',
    ADD COLUMN scope           text NOT NULL DEFAULT '',
    ADD COLUMN cert_thumbprint text NOT NULL DEFAULT '';

-- ClientSessionIDs, of one user or of all; only client sessions are
-- indexed, Gatehouse's own are most of the table.
CREATE INDEX sessions_client_user_idx ON sessions (client_id, user_id) WHERE client_id <> '';
