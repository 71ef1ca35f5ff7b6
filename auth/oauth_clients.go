package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/audit"
	"github.com/gatehouse/gatehouse/token"
)

// OAuthDeps are the collaborators of Gatehouse's OAuth 2.1 / OpenID
// provider.
type OAuthDeps struct {
	Store gatehouse.OAuthStore
	// ClientKey keys the MACs of client secrets (derived from the master
	// secret): a copy of the database yields no usable secret.
	ClientKey []byte
	// RefreshCodec encodes the refresh tokens of sessions authorized for a
	// client, under a key of its own: they are refused by /auth/refresh,
	// and Gatehouse's own refresh tokens by the token endpoint.
	RefreshCodec *token.RefreshCodec
}

// OAuth grant types a client may be registered for.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
)

// Scopes every client may ask for; anything else must be registered with
// the client.
var standardScopes = []string{"openid", "profile", "email", "offline_access"}

// OAuthClientInput describes a client to register (gatehouse client create,
// POST /admin/clients).
type OAuthClientInput struct {
	Name                   string
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	Public                 bool
	FirstParty             bool
	Grants                 []string // default: authorization_code, refresh_token
	Scopes                 []string
	Audience               string
	TLSSubject             string // tls_client_auth by this certificate subject DN
}

func (s *Service) oauthOn() error {
	if s.OAuth.Store == nil {
		return ErrNotConfigured
	}
	return nil
}

// CreateOAuthClient registers a client and returns it with its secret: the
// only time the secret exists outside the client (empty for public and
// certificate-authenticated clients).
func (s *Service) CreateOAuthClient(ctx context.Context, in OAuthClientInput) (gatehouse.OAuthClient, string, error) {
	if err := s.oauthOn(); err != nil {
		return gatehouse.OAuthClient{}, "", err
	}
	if len(in.Grants) == 0 {
		in.Grants = []string{GrantAuthorizationCode, GrantRefreshToken}
	}
	if err := validateOAuthClient(in); err != nil {
		return gatehouse.OAuthClient{}, "", err
	}
	c := gatehouse.OAuthClient{
		ID:                     "gh_client_" + randomToken(16),
		Name:                   strings.TrimSpace(in.Name),
		RedirectURIs:           in.RedirectURIs,
		PostLogoutRedirectURIs: in.PostLogoutRedirectURIs,
		Public:                 in.Public,
		FirstParty:             in.FirstParty,
		Grants:                 in.Grants,
		Scopes:                 in.Scopes,
		Audience:               in.Audience,
		TLSSubject:             in.TLSSubject,
		CreatedAt:              s.now(),
	}
	var secret string
	if !c.Public && c.TLSSubject == "" {
		secret = randomToken(32)
		c.SecretMAC = s.clientSecretMAC(c.ID, secret)
	}
	if err := s.OAuth.Store.CreateOAuthClient(ctx, c); err != nil {
		return gatehouse.OAuthClient{}, "", fmt.Errorf("create oauth client: %w", err)
	}
	s.recordAdmin(ctx, "", audit.ActionOAuthClientCreated, audit.Detail{audit.KeyClientID: c.ID})
	return c, secret, nil
}

// OAuthClients lists the registered clients, oldest first.
func (s *Service) OAuthClients(ctx context.Context) ([]gatehouse.OAuthClient, error) {
	if err := s.oauthOn(); err != nil {
		return nil, err
	}
	cs, err := s.OAuth.Store.OAuthClients(ctx)
	if err != nil {
		return nil, fmt.Errorf("list oauth clients: %w", err)
	}
	return cs, nil
}

// RemoveOAuthClient deletes a client with its consents and ends every
// session authorized for it, so its refresh and access tokens die on every
// instance. ErrNotFound when there is no such client.
func (s *Service) RemoveOAuthClient(ctx context.Context, id string) error {
	if err := s.oauthOn(); err != nil {
		return err
	}
	// Sessions first: a failure after them leaves the client registered
	// and the call can be repeated.
	if err := s.revokeClientSessions(ctx, "", id, ReasonAdmin); err != nil {
		return err
	}
	if err := s.OAuth.Store.DeleteOAuthClient(ctx, id); err != nil {
		return fmt.Errorf("remove oauth client: %w", err)
	}
	s.recordAdmin(ctx, "", audit.ActionOAuthClientRemoved, audit.Detail{audit.KeyClientID: id})
	return nil
}

// revokeClientSessions ends the live sessions authorized for clientID (of
// userID only, unless it is empty).
func (s *Service) revokeClientSessions(ctx context.Context, userID, clientID, reason string) error {
	ids, err := s.OAuth.Store.ClientSessionIDs(ctx, userID, clientID)
	if err != nil {
		return fmt.Errorf("list client sessions: %w", err)
	}
	now := s.now()
	for _, sid := range ids {
		if err := s.revokeSession(ctx, sid, reason, now); err != nil && !errors.Is(err, gatehouse.ErrNotFound) {
			return err
		}
	}
	return nil
}

// AuthenticateOAuthClient checks a client's secret (client_secret_basic or
// _post). Unknown clients and wrong secrets are the same error.
func (s *Service) AuthenticateOAuthClient(ctx context.Context, id, secret string) (gatehouse.OAuthClient, error) {
	c, err := s.OAuthClient(ctx, id)
	if err != nil {
		return gatehouse.OAuthClient{}, err
	}
	if c.SecretMAC == nil || !hmac.Equal(c.SecretMAC, s.clientSecretMAC(c.ID, secret)) {
		return gatehouse.OAuthClient{}, ErrInvalidCredentials
	}
	return c, nil
}

// OAuthClient returns a registered client; ErrInvalidCredentials when there
// is none (an unknown client_id is a failed client authentication).
func (s *Service) OAuthClient(ctx context.Context, id string) (gatehouse.OAuthClient, error) {
	if err := s.oauthOn(); err != nil {
		return gatehouse.OAuthClient{}, err
	}
	if id == "" || len(id) > 128 {
		return gatehouse.OAuthClient{}, ErrInvalidCredentials
	}
	c, err := s.OAuth.Store.OAuthClientByID(ctx, id)
	if errors.Is(err, gatehouse.ErrNotFound) {
		return gatehouse.OAuthClient{}, ErrInvalidCredentials
	}
	if err != nil {
		return gatehouse.OAuthClient{}, fmt.Errorf("oauth client: %w", err)
	}
	return c, nil
}

func (s *Service) clientSecretMAC(clientID, secret string) []byte {
	m := hmac.New(sha256.New, s.OAuth.ClientKey)
	m.Write([]byte(clientID))
	m.Write([]byte{0})
	m.Write([]byte(secret))
	return m.Sum(nil)
}

func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// validateOAuthClient checks a registration. Redirect URIs are absolute,
// https (http only on loopback, for development and native apps), with no
// fragment; they are matched exactly later, so they are kept as given.
func validateOAuthClient(in OAuthClientInput) error {
	var fields []FieldError
	add := func(field, msg string) { fields = append(fields, FieldError{Field: field, Message: msg}) }
	if name := strings.TrimSpace(in.Name); name == "" || len(name) > 100 || strings.ContainsAny(name, "\r\n") {
		add("name", "must be one line of 1 to 100 characters")
	}
	for _, g := range in.Grants {
		if g != GrantAuthorizationCode && g != GrantRefreshToken && g != GrantClientCredentials {
			add("grants", "must be authorization_code, refresh_token or client_credentials")
			break
		}
	}
	code := slices.Contains(in.Grants, GrantAuthorizationCode)
	if slices.Contains(in.Grants, GrantRefreshToken) && !code {
		add("grants", "refresh_token needs authorization_code")
	}
	if in.Public && slices.Contains(in.Grants, GrantClientCredentials) {
		add("grants", "a public client cannot use client_credentials")
	}
	if in.Public && in.TLSSubject != "" {
		add("tls_client_auth", "a public client has no credentials")
	}
	if code && len(in.RedirectURIs) == 0 {
		add("redirect_uris", "at least one is required for authorization_code")
	}
	if len(in.RedirectURIs) > 20 || len(in.PostLogoutRedirectURIs) > 20 {
		add("redirect_uris", "at most 20")
	}
	for _, u := range in.RedirectURIs {
		if !validRedirectURI(u) {
			add("redirect_uris", "each must be an absolute https URL (http only on localhost or a loopback address) without a fragment")
			break
		}
	}
	for _, u := range in.PostLogoutRedirectURIs {
		if !validRedirectURI(u) {
			add("post_logout_redirect_uris", "each must be an absolute https URL (http only on localhost or a loopback address) without a fragment")
			break
		}
	}
	if len(in.Scopes) > 20 {
		add("scopes", "at most 20")
	}
	for _, sc := range in.Scopes {
		if !validScopeToken(sc) || slices.Contains(standardScopes, sc) {
			add("scopes", "each must be a scope token (printable ASCII without spaces, quotes or backslashes) other than openid, profile, email and offline_access")
			break
		}
	}
	if len(in.Audience) > 200 || strings.ContainsAny(in.Audience, " \r\n\t") {
		add("audience", "must be one word of at most 200 characters")
	}
	if len(in.TLSSubject) > 500 || strings.ContainsAny(in.TLSSubject, "\r\n") {
		add("tls_client_auth", "must be one line of at most 500 characters")
	}
	if len(fields) > 0 {
		return &ValidationError{Fields: fields}
	}
	return nil
}

func validRedirectURI(raw string) bool {
	if len(raw) > 2000 {
		return false
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Fragment != "" || strings.Contains(raw, "#") || u.User != nil {
		return false
	}
	switch u.Scheme {
	case "https":
		return true
	case "http":
		h := u.Hostname()
		return h == "localhost" || h == "127.0.0.1" || h == "::1"
	}
	return false
}

// validScopeToken is RFC 6749's scope-token: %x21 / %x23-5B / %x5D-7E.
func validScopeToken(sc string) bool {
	if sc == "" || len(sc) > 100 {
		return false
	}
	for i := 0; i < len(sc); i++ {
		c := sc[i]
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return true
}
