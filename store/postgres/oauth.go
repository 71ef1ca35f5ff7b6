package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

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

// encodeList stores a list of strings as a JSON array in a text column:
// unlike a space-separated column it keeps any character (a redirect URI
// may hold spaces) and the order, and it reads the same as SQLite's. nil
// and empty are both "[]".
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

// oauthClientRow receives one row of oauthClientCols.
type oauthClientRow struct {
	c                                  gatehouse.OAuthClient
	redirects, logouts, grants, scopes string
}

func (r *oauthClientRow) dest() []any {
	return []any{&r.c.ID, &r.c.Name, &r.c.SecretMAC, &r.redirects, &r.logouts, &r.c.Public, &r.c.FirstParty,
		&r.grants, &r.scopes, &r.c.Audience, &r.c.TLSSubject, &r.c.CreatedAt}
}

func (r *oauthClientRow) client() (gatehouse.OAuthClient, error) {
	c := r.c
	var errs [4]error
	c.RedirectURIs, errs[0] = decodeList(r.redirects)
	c.PostLogoutRedirectURIs, errs[1] = decodeList(r.logouts)
	c.Grants, errs[2] = decodeList(r.grants)
	c.Scopes, errs[3] = decodeList(r.scopes)
	if err := errors.Join(errs[:]...); err != nil {
		return gatehouse.OAuthClient{}, err
	}
	if len(c.SecretMAC) == 0 {
		c.SecretMAC = nil
	}
	c.CreatedAt = c.CreatedAt.UTC()
	return c, nil
}

// CreateOAuthClient stores c.
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
		return fmt.Errorf("postgres: create oauth client: %w", err)
	}
	var mac []byte // nil is NULL: no secret
	if len(c.SecretMAC) > 0 {
		mac = c.SecretMAC
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO oauth_clients (`+oauthClientCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		c.ID, c.Name, mac, lists[0], lists[1], c.Public, c.FirstParty,
		lists[2], lists[3], c.Audience, c.TLSSubject, c.CreatedAt)
	return wrap("create oauth client", err)
}

// OAuthClientByID returns the client, or ErrNotFound.
func (s *Store) OAuthClientByID(ctx context.Context, id string) (gatehouse.OAuthClient, error) {
	var r oauthClientRow
	err := s.pool.QueryRow(ctx, `SELECT `+oauthClientCols+` FROM oauth_clients WHERE id = $1`, id).Scan(r.dest()...)
	if err != nil {
		return gatehouse.OAuthClient{}, wrap("oauth client by id", err)
	}
	c, err := r.client()
	if err != nil {
		return gatehouse.OAuthClient{}, wrap("oauth client by id", err)
	}
	return c, nil
}

// OAuthClients lists every client, oldest first (the id breaks ties, so
// the order is stable).
func (s *Store) OAuthClients(ctx context.Context) ([]gatehouse.OAuthClient, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+oauthClientCols+` FROM oauth_clients ORDER BY created_at, id`)
	if err != nil {
		return nil, wrap("oauth clients", err)
	}
	var cs []gatehouse.OAuthClient
	var r oauthClientRow
	_, err = pgx.ForEachRow(rows, r.dest(), func() error {
		c, err := r.client()
		if err != nil {
			return err
		}
		cs = append(cs, c)
		r = oauthClientRow{} // in place: dest's pointers stay valid, nothing carries over
		return nil
	})
	if err != nil {
		return nil, wrap("oauth clients", err)
	}
	return cs, nil
}

// DeleteOAuthClient is one statement: the foreign key's cascade deletes
// the consents in the same transaction.
func (s *Store) DeleteOAuthClient(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM oauth_clients WHERE id = $1`, id)
	if err != nil {
		return wrap("delete oauth client", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: delete oauth client: %w", gatehouse.ErrNotFound)
	}
	return nil
}

// oauthConsentRow receives one row of oauthConsentCols.
type oauthConsentRow struct {
	c      gatehouse.OAuthConsent
	scopes string
}

func (r *oauthConsentRow) dest() []any {
	return []any{&r.c.UserID, &r.c.ClientID, &r.scopes, &r.c.CreatedAt, &r.c.UpdatedAt}
}

func (r *oauthConsentRow) consent() (gatehouse.OAuthConsent, error) {
	c := r.c
	var err error
	if c.Scopes, err = decodeList(r.scopes); err != nil {
		return gatehouse.OAuthConsent{}, err
	}
	c.CreatedAt, c.UpdatedAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC()
	return c, nil
}

// SaveConsent is one upsert; the foreign keys refuse an unknown user or
// client, and a concurrent save of the same pair waits on the row and then
// updates it.
func (s *Store) SaveConsent(ctx context.Context, c gatehouse.OAuthConsent) error {
	scopes, err := encodeList(c.Scopes)
	if err != nil {
		return fmt.Errorf("postgres: save consent: %w", err)
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO oauth_consents (`+oauthConsentCols+`) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id, client_id) DO UPDATE SET scopes = excluded.scopes, updated_at = excluded.updated_at`,
		c.UserID, c.ClientID, scopes, c.CreatedAt, c.UpdatedAt)
	if pgErr, ok := asPgError(err); ok && pgErr.Code == "23503" { // foreign_key_violation: no such user or client
		return fmt.Errorf("postgres: save consent: %w", gatehouse.ErrNotFound)
	}
	return wrap("save consent", err)
}

// Consent returns the user's consent to the client, or ErrNotFound.
func (s *Store) Consent(ctx context.Context, userID, clientID string) (gatehouse.OAuthConsent, error) {
	var r oauthConsentRow
	err := s.pool.QueryRow(ctx, `SELECT `+oauthConsentCols+` FROM oauth_consents
		WHERE user_id = $1 AND client_id = $2`, userID, clientID).Scan(r.dest()...)
	if err != nil {
		return gatehouse.OAuthConsent{}, wrap("consent", err)
	}
	c, err := r.consent()
	if err != nil {
		return gatehouse.OAuthConsent{}, wrap("consent", err)
	}
	return c, nil
}

// Consents lists the user's consents, oldest first (the client id breaks
// ties).
func (s *Store) Consents(ctx context.Context, userID string) ([]gatehouse.OAuthConsent, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+oauthConsentCols+` FROM oauth_consents
		WHERE user_id = $1 ORDER BY created_at, client_id`, userID)
	if err != nil {
		return nil, wrap("consents", err)
	}
	var cs []gatehouse.OAuthConsent
	var r oauthConsentRow
	_, err = pgx.ForEachRow(rows, r.dest(), func() error {
		c, err := r.consent()
		if err != nil {
			return err
		}
		cs = append(cs, c)
		return nil
	})
	if err != nil {
		return nil, wrap("consents", err)
	}
	return cs, nil
}

// DeleteConsent deletes the user's consent to the client, or returns
// ErrNotFound.
func (s *Store) DeleteConsent(ctx context.Context, userID, clientID string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM oauth_consents WHERE user_id = $1 AND client_id = $2`, userID, clientID)
	if err != nil {
		return wrap("delete consent", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: delete consent: %w", gatehouse.ErrNotFound)
	}
	return nil
}

// ClientSessionIDs returns the unrevoked sessions of the client, oldest
// first. An empty clientID names no client: Gatehouse's own sessions are
// not a client's. The query repeats the partial index's condition, so the
// planner can use sessions_client_user_idx with a parameter for client_id.
func (s *Store) ClientSessionIDs(ctx context.Context, userID, clientID string) ([]string, error) {
	if clientID == "" {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT id FROM sessions
		WHERE client_id = $1 AND client_id <> '' AND ($2 = '' OR user_id = $2) AND revoked_at IS NULL
		ORDER BY created_at, id`, clientID, userID)
	if err != nil {
		return nil, wrap("client session ids", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, wrap("client session ids", err)
	}
	return ids, nil
}
