-- Gatehouse as an OAuth 2.1 / OpenID provider: the clients registered with
-- it, the consents users gave them, and the sessions authorized for them.

-- secret_mac is an HMAC of the client secret under a key derived from the
-- master secret (NULL: public client, or one that authenticates only by
-- certificate). The lists (redirect_uris, post_logout_redirect_uris,
-- grants, scopes) are JSON arrays of strings: a redirect URI may hold any
-- character, and the order is kept.
CREATE TABLE oauth_clients (
	id                        TEXT    NOT NULL PRIMARY KEY,
	name                      TEXT    NOT NULL DEFAULT '',
	secret_mac                BLOB,
	redirect_uris             TEXT    NOT NULL DEFAULT '[]',
	post_logout_redirect_uris TEXT    NOT NULL DEFAULT '[]',
	public                    INTEGER NOT NULL DEFAULT 0 CHECK (public IN (0, 1)),
	first_party               INTEGER NOT NULL DEFAULT 0 CHECK (first_party IN (0, 1)),
	grants                    TEXT    NOT NULL DEFAULT '[]',
	scopes                    TEXT    NOT NULL DEFAULT '[]',
	audience                  TEXT    NOT NULL DEFAULT '',
	tls_subject               TEXT    NOT NULL DEFAULT '', -- '' when not tls_client_auth
	created_at                INTEGER NOT NULL
) STRICT;

-- OAuthClients lists oldest first.
CREATE INDEX oauth_clients_created ON oauth_clients (created_at);

-- One row per user and client; scopes is a JSON array of strings. Both go
-- with their user and with their client.
CREATE TABLE oauth_consents (
	user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	client_id  TEXT    NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
	scopes     TEXT    NOT NULL DEFAULT '[]',
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (user_id, client_id)
) STRICT;

-- The cascade from oauth_clients (the primary key serves the users side and
-- Consents).
CREATE INDEX oauth_consents_client ON oauth_consents (client_id);

-- The client a session was authorized for ('' for Gatehouse's own
-- sign-ins), the scope granted to it, and the thumbprint of the client
-- certificate its tokens are bound to ('' when unbound). No foreign key:
-- removing a client revokes its sessions, it does not rewrite them.
ALTER TABLE sessions ADD COLUMN client_id       TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN scope           TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN cert_thumbprint TEXT NOT NULL DEFAULT '';

-- ClientSessionIDs, of one user or of all; only client sessions are
-- indexed, Gatehouse's own are most of the table.
CREATE INDEX sessions_client_user ON sessions (client_id, user_id) WHERE client_id <> '';
