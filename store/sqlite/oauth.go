package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gatehouse/gatehouse"
)

// OAuth clients and the consents users gave them (Gatehouse as an OAuth
// 2.1 / OpenID provider).

var _ gatehouse.OAuthStore = (*Store)(nil)

const (
	oauthClientCols = `id, name, secret_mac, redirect_uris, post_logout_redirect_uris, public, first_party,
		grants, scopes, audience, tls_subject, created_at`
	oauthConsentCols = `user_id, client_id, scopes, created_at, updated_at`
)

// encodeList stores a list of strings as a JSON array: unlike a
// space-separated column it keeps any character (a redirect URI may hold
// spaces) and the order. nil and empty are both "[]".
func encodeList(l []string) (string, error) {
	if len(l) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(l)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// decodeList reverses encodeList; an empty list is nil.
func decodeList(s string) ([]string, error) {
	var l []string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, fmt.Errorf("decode list %q: %w", s, err)
	}
	if len(l) == 0 {
		return nil, nil
	}
	return l, nil
}

func scanOAuthClient(row scanner) (gatehouse.OAuthClient, error) {
	var (
		c                                  gatehouse.OAuthClient
		redirects, logouts, grants, scopes string
		public, firstParty                 int64
		created                            int64
	)
	if err := row.Scan(&c.ID, &c.Name, &c.SecretMAC, &redirects, &logouts, &public, &firstParty,
		&grants, &scopes, &c.Audience, &c.TLSSubject, &created); err != nil {
		return gatehouse.OAuthClient{}, err
	}
	var errs [4]error
	c.RedirectURIs, errs[0] = decodeList(redirects)
	c.PostLogoutRedirectURIs, errs[1] = decodeList(logouts)
	c.Grants, errs[2] = decodeList(grants)
	c.Scopes, errs[3] = decodeList(scopes)
	if err := errors.Join(errs[:]...); err != nil {
		return gatehouse.OAuthClient{}, err
	}
	if len(c.SecretMAC) == 0 {
		c.SecretMAC = nil
	}
	c.Public, c.FirstParty, c.CreatedAt = public != 0, firstParty != 0, fromMicros(created)
	return c, nil
}

func (s *Store) CreateOAuthClient(ctx context.Context, c gatehouse.OAuthClient) error {
	var (
		lists [4]string
		errs  [4]error
	)
	lists[0], errs[0] = encodeList(c.RedirectURIs)
	lists[1], errs[1] = encodeList(c.PostLogoutRedirectURIs)
	lists[2], errs[2] = encodeList(c.Grants)
	lists[3], errs[3] = encodeList(c.Scopes)
	if err := errors.Join(errs[:]...); err != nil {
		return fmt.Errorf("sqlite: create oauth client: %w", err)
	}
	var mac any // NULL: no secret
	if len(c.SecretMAC) > 0 {
		mac = c.SecretMAC
	}
	_, err := s.write.ExecContext(ctx, `INSERT INTO oauth_clients (`+oauthClientCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.Name, mac, lists[0], lists[1], boolInt(c.Public), boolInt(c.FirstParty),
		lists[2], lists[3], c.Audience, c.TLSSubject, micros(c.CreatedAt))
	return wrap("create oauth client", err)
}

func (s *Store) OAuthClientByID(ctx context.Context, id string) (gatehouse.OAuthClient, error) {
	c, err := scanOAuthClient(s.read.QueryRowContext(ctx, `SELECT `+oauthClientCols+` FROM oauth_clients WHERE id = ?`, id))
	if err != nil {
		return gatehouse.OAuthClient{}, wrap("oauth client by id", err)
	}
	return c, nil
}

// OAuthClients lists every client, oldest first (the id breaks ties, so
// the order is stable).
func (s *Store) OAuthClients(ctx context.Context) ([]gatehouse.OAuthClient, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+oauthClientCols+` FROM oauth_clients ORDER BY created_at, id`)
	if err != nil {
		return nil, wrap("oauth clients", err)
	}
	defer rows.Close()
	var cs []gatehouse.OAuthClient
	for rows.Next() {
		c, err := scanOAuthClient(rows)
		if err != nil {
			return nil, wrap("oauth clients", err)
		}
		cs = append(cs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("oauth clients", err)
	}
	return cs, nil
}

// DeleteOAuthClient is one statement: the foreign key's cascade deletes
// the consents in the same implicit transaction.
func (s *Store) DeleteOAuthClient(ctx context.Context, id string) error {
	res, err := s.write.ExecContext(ctx, `DELETE FROM oauth_clients WHERE id = ?`, id)
	return wrap("delete oauth client", oneRow(res, err))
}

func scanConsent(row scanner) (gatehouse.OAuthConsent, error) {
	var (
		c                gatehouse.OAuthConsent
		scopes           string
		created, updated int64
	)
	if err := row.Scan(&c.UserID, &c.ClientID, &scopes, &created, &updated); err != nil {
		return gatehouse.OAuthConsent{}, err
	}
	var err error
	if c.Scopes, err = decodeList(scopes); err != nil {
		return gatehouse.OAuthConsent{}, err
	}
	c.CreatedAt, c.UpdatedAt = fromMicros(created), fromMicros(updated)
	return c, nil
}

// SaveConsent is one upsert; the foreign keys refuse an unknown user or
// client.
func (s *Store) SaveConsent(ctx context.Context, c gatehouse.OAuthConsent) error {
	scopes, err := encodeList(c.Scopes)
	if err != nil {
		return fmt.Errorf("sqlite: save consent: %w", err)
	}
	_, err = s.write.ExecContext(ctx, `INSERT INTO oauth_consents (`+oauthConsentCols+`) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (user_id, client_id) DO UPDATE SET scopes = excluded.scopes, updated_at = excluded.updated_at`,
		c.UserID, c.ClientID, scopes, micros(c.CreatedAt), micros(c.UpdatedAt))
	if missingUser(err) { // a foreign key: the user or the client
		return fmt.Errorf("sqlite: save consent: %w", gatehouse.ErrNotFound)
	}
	return wrap("save consent", err)
}

func (s *Store) Consent(ctx context.Context, userID, clientID string) (gatehouse.OAuthConsent, error) {
	c, err := scanConsent(s.read.QueryRowContext(ctx, `SELECT `+oauthConsentCols+` FROM oauth_consents
		WHERE user_id = ? AND client_id = ?`, userID, clientID))
	if err != nil {
		return gatehouse.OAuthConsent{}, wrap("consent", err)
	}
	return c, nil
}

// Consents lists the user's consents, oldest first (the client id breaks
// ties).
func (s *Store) Consents(ctx context.Context, userID string) ([]gatehouse.OAuthConsent, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+oauthConsentCols+` FROM oauth_consents
		WHERE user_id = ? ORDER BY created_at, client_id`, userID)
	if err != nil {
		return nil, wrap("consents", err)
	}
	defer rows.Close()
	var cs []gatehouse.OAuthConsent
	for rows.Next() {
		c, err := scanConsent(rows)
		if err != nil {
			return nil, wrap("consents", err)
		}
		cs = append(cs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("consents", err)
	}
	return cs, nil
}

func (s *Store) DeleteConsent(ctx context.Context, userID, clientID string) error {
	res, err := s.write.ExecContext(ctx, `DELETE FROM oauth_consents WHERE user_id = ? AND client_id = ?`, userID, clientID)
	return wrap("delete consent", oneRow(res, err))
}

// ClientSessionIDs returns the unrevoked sessions of the client, oldest
// first. An empty clientID names no client: Gatehouse's own sessions are
// not a client's. The query repeats the partial index's condition word for
// word, which is what lets SQLite use sessions_client_user.
func (s *Store) ClientSessionIDs(ctx context.Context, userID, clientID string) ([]string, error) {
	if clientID == "" {
		return nil, nil
	}
	rows, err := s.read.QueryContext(ctx, `SELECT id FROM sessions
		WHERE client_id = ?1 AND client_id <> '' AND (?2 = '' OR user_id = ?2) AND revoked_at IS NULL
		ORDER BY created_at, id`, clientID, userID)
	if err != nil {
		return nil, wrap("client session ids", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, wrap("client session ids", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("client session ids", err)
	}
	return ids, nil
}
