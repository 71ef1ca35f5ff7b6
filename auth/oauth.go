package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/audit"
	"github.com/gatehouse/gatehouse/revoke"
	"github.com/gatehouse/gatehouse/token"
)

// Gatehouse as an OAuth 2.1 / OpenID provider: the pending authorization
// request, its continuation by the signed-in user on the account page, the
// code and refresh_token grants (both ending in the session funnel of
// session.go, so rotation, reuse detection, devices and logout hold for
// apps too), client_credentials, introspection, revocation and logout.
// Package oauth2 speaks the protocol over HTTP; this file decides.

// Lifetimes of the provider's one-time secrets.
const (
	oauthRequestTTL = 10 * time.Minute
	oauthCodeTTL    = time.Minute
)

// OAuth errors, named after their RFC 6749 error codes; package oauth2
// maps them to the OAuth error form.
var (
	ErrOAuthInvalidRequest = errors.New("invalid_request")
	ErrOAuthInvalidGrant   = errors.New("invalid_grant")
	ErrOAuthInvalidScope   = errors.New("invalid_scope")
	ErrOAuthUnauthorized   = errors.New("unauthorized_client")
	ErrOAuthInvalidClient  = errors.New("invalid_client")
)

// errUnknownRequest refuses a pending request that is unknown, spent or
// expired (the account page tells the user to start again from the app).
var errUnknownRequest = fmt.Errorf("%w: the sign-in request is unknown, used or expired", ErrOAuthInvalidRequest)

// AuthorizationRequest is an authorization request whose client and
// redirect URI were checked (package oauth2, with the client from
// OAuthClient).
type AuthorizationRequest struct {
	ClientID      string   `json:"client_id"`
	RedirectURI   string   `json:"redirect_uri"`
	Scopes        []string `json:"scopes"`
	State         string   `json:"state,omitempty"`
	Nonce         string   `json:"nonce,omitempty"`
	CodeChallenge string   `json:"code_challenge"`
}

// codeGrant is what an authorization code redeems for (the code's Data).
type codeGrant struct {
	AuthorizationRequest
	UserID    string `json:"user_id"`
	SessionID string `json:"session_id"` // of the session the redemption creates
	// ParentID is the Gatehouse session the user authorized from (the
	// account page's); RP-initiated logout of the app ends it too.
	ParentID string    `json:"parent_id,omitempty"`
	AMR      []string  `json:"amr"`
	AuthTime time.Time `json:"auth_time"`
}

// CheckAuthorizationRequest validates what the provider adds to OAuth 2.1
// once the redirect URI is known good (errors then go to the client): PKCE
// S256 is required of every client, the client must be allowed the code
// grant, and every scope must be one the client may ask for.
func CheckAuthorizationRequest(c gatehouse.OAuthClient, scopes []string, challenge, method string) error {
	if !slices.Contains(c.Grants, GrantAuthorizationCode) {
		return fmt.Errorf("%w: the client may not use the authorization code flow", ErrOAuthUnauthorized)
	}
	if challenge == "" || method != "S256" {
		return fmt.Errorf("%w: PKCE with code_challenge_method S256 is required", ErrOAuthInvalidRequest)
	}
	if len(challenge) != 43 || !isBase64URL(challenge) {
		return fmt.Errorf("%w: code_challenge must be the base64url SHA-256 of the verifier", ErrOAuthInvalidRequest)
	}
	return checkScopes(c, scopes, false)
}

// checkScopes refuses scopes the client was not registered for. The
// standard OpenID scopes are open to clients that use the code flow.
func checkScopes(c gatehouse.OAuthClient, scopes []string, machine bool) error {
	if len(scopes) > 30 {
		return fmt.Errorf("%w: too many scopes", ErrOAuthInvalidScope)
	}
	for _, sc := range scopes {
		if !machine && slices.Contains(standardScopes, sc) {
			continue
		}
		if !slices.Contains(c.Scopes, sc) {
			return fmt.Errorf("%w: scope %q is not allowed for this client", ErrOAuthInvalidScope, truncate(sc, 64))
		}
	}
	return nil
}

// BeginAuthorization stores a validated request for the account page to
// continue once the user is signed in, and returns its handle: a one-time
// secret, single use, 10 minutes.
func (s *Service) BeginAuthorization(ctx context.Context, req AuthorizationRequest) (string, error) {
	if err := s.oauthOn(); err != nil {
		return "", err
	}
	data, err := json.Marshal(req)
	if err != nil {
		return "", fmt.Errorf("begin authorization: %w", err)
	}
	// A subject of its own: a newer request must not void another tab's.
	tok, sec := s.mintSecret(gatehouse.SecretOAuthRequest, "oauth_request:"+newSessionID(), string(data), oauthRequestTTL)
	if err := s.Secrets.CreateSecret(ctx, sec); err != nil {
		return "", fmt.Errorf("begin authorization: %w", err)
	}
	return tok, nil
}

// ContinueResult is the outcome of ContinueAuthorization: a redirect to
// the client, or (ConsentRequired) the client and scopes to ask about.
type ContinueResult struct {
	Redirect        string
	ConsentRequired bool
	Client          gatehouse.OAuthClient
	Scopes          []string
}

// ContinueAuthorization completes a pending request for the signed-in user
// p. A third-party client needs consent covering the scopes: remembered,
// or given now (consent true, which is then remembered); without it the
// answer is ConsentRequired and the request stays usable. consent false
// denies (access_denied at the client). Otherwise the request is spent and
// a code minted.
func (s *Service) ContinueAuthorization(ctx context.Context, p Principal, requestID string, consent *bool) (ContinueResult, error) {
	if err := s.oauthOn(); err != nil {
		return ContinueResult{}, err
	}
	if p.SessionID == "" {
		return ContinueResult{}, ErrInvalidToken // an API key signs no one in
	}
	id, mac, ok := s.SecretCodec.Parse(gatehouse.SecretOAuthRequest, requestID)
	if !ok {
		return ContinueResult{}, errUnknownRequest
	}
	now := s.now()
	sec, err := s.Secrets.SecretByID(ctx, gatehouse.SecretOAuthRequest, id)
	if errors.Is(err, gatehouse.ErrNotFound) {
		return ContinueResult{}, errUnknownRequest
	}
	if err != nil {
		return ContinueResult{}, fmt.Errorf("continue authorization: %w", err)
	}
	if !hmac.Equal(sec.MAC, mac) || !sec.UsedAt.IsZero() || !now.Before(sec.ExpiresAt) {
		return ContinueResult{}, errUnknownRequest
	}
	var req AuthorizationRequest
	if err := json.Unmarshal([]byte(sec.Data), &req); err != nil {
		return ContinueResult{}, fmt.Errorf("continue authorization: stored request: %w", err)
	}
	c, err := s.OAuthClient(ctx, req.ClientID)
	if errors.Is(err, ErrInvalidCredentials) {
		return ContinueResult{}, errUnknownRequest // removed meanwhile
	}
	if err != nil {
		return ContinueResult{}, err
	}
	if consent == nil && !c.FirstParty {
		covered, err := s.consentCovers(ctx, p.UserID, c.ID, req.Scopes)
		if err != nil {
			return ContinueResult{}, err
		}
		if !covered {
			return ContinueResult{ConsentRequired: true, Client: c, Scopes: req.Scopes}, nil
		}
	}
	// Spend the request: of two racing continuations one gets a code.
	if _, err := s.Secrets.UseSecret(ctx, gatehouse.SecretOAuthRequest, id, mac, now, maxSecretAttempts); err != nil {
		if errors.Is(err, gatehouse.ErrNotFound) {
			return ContinueResult{}, errUnknownRequest
		}
		return ContinueResult{}, fmt.Errorf("continue authorization: %w", err)
	}
	if consent != nil && !*consent {
		return ContinueResult{Redirect: withParams(req.RedirectURI, "error", "access_denied",
			"error_description", "The user denied the request.", "state", req.State)}, nil
	}
	if consent != nil && !c.FirstParty {
		if err := s.saveConsent(ctx, p.UserID, c.ID, req.Scopes, now); err != nil {
			return ContinueResult{}, err
		}
	}
	// The code carries what the user's sign-in was: its methods and time.
	sess, err := s.Store.SessionByID(ctx, p.SessionID)
	if err != nil {
		if errors.Is(err, gatehouse.ErrNotFound) {
			return ContinueResult{}, ErrInvalidToken
		}
		return ContinueResult{}, fmt.Errorf("continue authorization: %w", err)
	}
	grant := codeGrant{AuthorizationRequest: req, UserID: p.UserID, SessionID: newSessionID(), ParentID: sess.ID, AMR: sess.AMR, AuthTime: sess.CreatedAt}
	data, err := json.Marshal(grant)
	if err != nil {
		return ContinueResult{}, fmt.Errorf("continue authorization: %w", err)
	}
	code, codeSec := s.mintSecret(gatehouse.SecretOAuthCode, "oauth_code:"+grant.SessionID, string(data), oauthCodeTTL)
	if err := s.Secrets.CreateSecret(ctx, codeSec); err != nil {
		return ContinueResult{}, fmt.Errorf("continue authorization: %w", err)
	}
	return ContinueResult{Redirect: withParams(req.RedirectURI, "code", code, "state", req.State), Client: c}, nil
}

func (s *Service) consentCovers(ctx context.Context, userID, clientID string, scopes []string) (bool, error) {
	have, err := s.OAuth.Store.Consent(ctx, userID, clientID)
	if errors.Is(err, gatehouse.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read consent: %w", err)
	}
	for _, sc := range scopes {
		if !slices.Contains(have.Scopes, sc) {
			return false, nil
		}
	}
	return true, nil
}

func (s *Service) saveConsent(ctx context.Context, userID, clientID string, scopes []string, now time.Time) error {
	merged := slices.Clone(scopes)
	if have, err := s.OAuth.Store.Consent(ctx, userID, clientID); err == nil {
		for _, sc := range have.Scopes {
			if !slices.Contains(merged, sc) {
				merged = append(merged, sc)
			}
		}
	} else if !errors.Is(err, gatehouse.ErrNotFound) {
		return fmt.Errorf("read consent: %w", err)
	}
	if err := s.OAuth.Store.SaveConsent(ctx, gatehouse.OAuthConsent{UserID: userID, ClientID: clientID, Scopes: merged, CreatedAt: now, UpdatedAt: now}); err != nil {
		return fmt.Errorf("save consent: %w", err)
	}
	return nil
}

// OAuthGrant is the result of a token request.
type OAuthGrant struct {
	AccessToken  string
	ExpiresIn    time.Duration
	RefreshToken string // only with offline_access and the refresh_token grant
	IDToken      string // only with openid, at code exchange
	Scope        string
}

// ExchangeCode redeems an authorization code for client c, which the
// caller authenticated (cert: the thumbprint of the certificate it
// authenticated with, when it did so by tls_client_auth). The code is
// single use: a second redemption revokes the session the first created.
func (s *Service) ExchangeCode(ctx context.Context, c gatehouse.OAuthClient, code, redirectURI, verifier, cert string, cl Client) (OAuthGrant, error) {
	if err := s.oauthOn(); err != nil {
		return OAuthGrant{}, err
	}
	id, mac, ok := s.SecretCodec.Parse(gatehouse.SecretOAuthCode, code)
	if !ok {
		return OAuthGrant{}, fmt.Errorf("%w: unknown code", ErrOAuthInvalidGrant)
	}
	now := s.now()
	sec, err := s.Secrets.SecretByID(ctx, gatehouse.SecretOAuthCode, id)
	if errors.Is(err, gatehouse.ErrNotFound) || (err == nil && !hmac.Equal(sec.MAC, mac)) {
		return OAuthGrant{}, fmt.Errorf("%w: unknown code", ErrOAuthInvalidGrant)
	}
	if err != nil {
		return OAuthGrant{}, fmt.Errorf("exchange code: %w", err)
	}
	var g codeGrant
	if err := json.Unmarshal([]byte(sec.Data), &g); err != nil {
		return OAuthGrant{}, fmt.Errorf("exchange code: stored grant: %w", err)
	}
	if !sec.UsedAt.IsZero() {
		// Replayed (an intercepted code, a retried request): whatever the
		// first redemption issued may be in the wrong hands.
		if err := s.revokeCodeSession(ctx, g.SessionID, now); err != nil {
			return OAuthGrant{}, err
		}
		s.Logger.Warn("authorization code used twice; its session revoked", "client_id", g.ClientID, "session_id", g.SessionID)
		return OAuthGrant{}, fmt.Errorf("%w: code already used", ErrOAuthInvalidGrant)
	}
	switch {
	case !now.Before(sec.ExpiresAt):
		return OAuthGrant{}, fmt.Errorf("%w: code expired", ErrOAuthInvalidGrant)
	case g.ClientID != c.ID:
		return OAuthGrant{}, fmt.Errorf("%w: code issued to another client", ErrOAuthInvalidGrant)
	case g.RedirectURI != redirectURI:
		return OAuthGrant{}, fmt.Errorf("%w: redirect_uri differs from the authorization request's", ErrOAuthInvalidGrant)
	case !pkceMatches(verifier, g.CodeChallenge):
		return OAuthGrant{}, fmt.Errorf("%w: code_verifier does not match", ErrOAuthInvalidGrant)
	}
	if _, err := s.Secrets.UseSecret(ctx, gatehouse.SecretOAuthCode, id, mac, now, maxSecretAttempts); err != nil {
		if errors.Is(err, gatehouse.ErrNotFound) {
			// Lost a race with another redemption of the same code.
			if rerr := s.revokeCodeSession(ctx, g.SessionID, now); rerr != nil {
				return OAuthGrant{}, rerr
			}
			return OAuthGrant{}, fmt.Errorf("%w: code already used", ErrOAuthInvalidGrant)
		}
		return OAuthGrant{}, fmt.Errorf("exchange code: %w", err)
	}
	u, err := s.Store.UserByID(ctx, g.UserID)
	if errors.Is(err, gatehouse.ErrNotFound) {
		return OAuthGrant{}, fmt.Errorf("%w: user gone", ErrOAuthInvalidGrant)
	}
	if err != nil {
		return OAuthGrant{}, fmt.Errorf("exchange code: %w", err)
	}
	if u.Disabled {
		return OAuthGrant{}, fmt.Errorf("%w: account disabled", ErrOAuthInvalidGrant)
	}
	scope := strings.Join(g.Scopes, " ")
	// The session funnel: a disable or password change racing this
	// redemption is decided by the same version check as a login.
	gr, err := s.startSessionWith(ctx, u, cl, g.AMR, nil, &oauthBinding{sessionID: g.SessionID, parentID: g.ParentID, client: c, scope: scope, cert: cert})
	if err != nil {
		if errors.Is(err, ErrInvalidCredentials) {
			return OAuthGrant{}, fmt.Errorf("%w: account changed", ErrOAuthInvalidGrant)
		}
		return OAuthGrant{}, err
	}
	if errors.Is(s.Revoker.Check(gr.Session.ID, "", time.Time{}), revoke.ErrRevoked) {
		// A replay of the same code, racing this redemption, revoked the
		// session before it existed: it is born dead.
		if err := s.revokeCodeSession(ctx, gr.Session.ID, now); err != nil {
			return OAuthGrant{}, err
		}
		return OAuthGrant{}, fmt.Errorf("%w: code already used", ErrOAuthInvalidGrant)
	}
	out := s.oauthGrant(c, gr)
	if slices.Contains(g.Scopes, "openid") {
		idt, err := s.idToken(c, gr, g, now)
		if err != nil {
			return OAuthGrant{}, err
		}
		out.IDToken = idt
	}
	return out, nil
}

// revokeCodeSession revokes the session a code's redemption creates,
// whether or not it exists yet: a replay racing the first redemption may
// get here before the session row does, so the revocation goes to the log
// and to every instance in any case, where refreshes and access checks
// find it.
func (s *Service) revokeCodeSession(ctx context.Context, sid string, now time.Time) error {
	err := s.revokeSession(ctx, sid, ReasonReuse, now)
	if err == nil {
		return nil
	}
	if !errors.Is(err, gatehouse.ErrNotFound) {
		return err
	}
	sess, serr := s.Store.SessionByID(ctx, sid)
	if serr == nil && sess.Revoked() {
		return nil // revoked already
	}
	ctx, cancel := detach(ctx)
	defer cancel()
	rev := gatehouse.Revocation{Kind: gatehouse.RevokeSession, Subject: sid, At: now, ExpiresAt: s.revocationExpiry(now)}
	if err := s.Store.AddRevocation(ctx, rev); err != nil {
		return fmt.Errorf("revoke code session: %w", err)
	}
	s.Revoker.Record(ctx, rev)
	return nil
}

// oauthGrant turns a session grant into a token response: the refresh
// token only when the client may refresh and offline_access was granted.
func (s *Service) oauthGrant(c gatehouse.OAuthClient, gr Grant) OAuthGrant {
	out := OAuthGrant{AccessToken: gr.AccessToken, ExpiresIn: gr.ExpiresIn, Scope: gr.Session.Scope}
	if slices.Contains(c.Grants, GrantRefreshToken) && slices.Contains(strings.Fields(gr.Session.Scope), "offline_access") {
		out.RefreshToken = gr.RefreshToken
	}
	return out
}

// idToken signs the ID token of a code redemption.
func (s *Service) idToken(c gatehouse.OAuthClient, gr Grant, g codeGrant, now time.Time) (string, error) {
	iat := now.Truncate(time.Second)
	return s.Signer.SignIDToken(iat, func(alg string) any {
		claims := map[string]any{
			"iss": s.cfg.Issuer, "sub": gr.User.ID, "aud": c.ID, "azp": c.ID,
			"iat": iat.Unix(), "exp": iat.Add(s.cfg.AccessTTL).Unix(),
			"auth_time": g.AuthTime.Unix(), "sid": gr.Session.ID,
			"at_hash": token.AccessTokenHash(gr.AccessToken, alg),
		}
		if len(gr.Session.AMR) > 0 {
			claims["amr"] = gr.Session.AMR
		}
		if g.Nonce != "" {
			claims["nonce"] = g.Nonce
		}
		if slices.Contains(g.Scopes, "email") {
			claims["email"] = gr.User.Email
			claims["email_verified"] = gr.User.EmailVerified
		}
		return claims
	})
}

// RefreshOAuth is the refresh_token grant: Gatehouse's rotation (grace and
// reuse rules included) of a session authorized for client c, presented by
// that client (with the certificate the session is bound to, if any).
func (s *Service) RefreshOAuth(ctx context.Context, c gatehouse.OAuthClient, raw, cert string, cl Client) (OAuthGrant, error) {
	if err := s.oauthOn(); err != nil {
		return OAuthGrant{}, err
	}
	if !slices.Contains(c.Grants, GrantRefreshToken) {
		return OAuthGrant{}, fmt.Errorf("%w: the client may not use refresh tokens", ErrOAuthUnauthorized)
	}
	check := func(sess gatehouse.Session) error {
		if sess.ClientID != c.ID {
			return fmt.Errorf("%w: refresh token of another client", ErrOAuthInvalidGrant)
		}
		if errors.Is(s.Revoker.Check(sess.ID, "", time.Time{}), revoke.ErrRevoked) {
			// Revoked through the log only (a code replayed while its
			// first redemption was creating the session).
			return fmt.Errorf("%w: authorization revoked", ErrOAuthInvalidGrant)
		}
		if sess.CertThumbprint != "" && sess.CertThumbprint != cert {
			return fmt.Errorf("%w: refresh token bound to another certificate", ErrOAuthInvalidGrant)
		}
		return nil
	}
	sess, u, now, err := s.rotate(ctx, s.OAuth.RefreshCodec, raw, cl, check)
	if err != nil {
		if errors.Is(err, ErrInvalidRefresh) || errors.Is(err, ErrRefreshReused) {
			return OAuthGrant{}, fmt.Errorf("%w: %w", ErrOAuthInvalidGrant, err)
		}
		return OAuthGrant{}, err
	}
	gr, err := s.grantFor(u, sess, now, c.Audience)
	if err != nil {
		return OAuthGrant{}, err
	}
	out := s.oauthGrant(c, gr)
	return out, nil
}

// ClientCredentials issues a client its own access token (no user, no
// session): the registered scopes, or the subset asked for.
func (s *Service) ClientCredentials(ctx context.Context, c gatehouse.OAuthClient, scopes []string, cert string) (OAuthGrant, error) {
	if err := s.oauthOn(); err != nil {
		return OAuthGrant{}, err
	}
	if c.Public || !slices.Contains(c.Grants, GrantClientCredentials) {
		return OAuthGrant{}, fmt.Errorf("%w: the client may not use client_credentials", ErrOAuthUnauthorized)
	}
	if len(scopes) == 0 {
		scopes = c.Scopes
	}
	if err := checkScopes(c, scopes, true); err != nil {
		return OAuthGrant{}, err
	}
	now := s.now()
	iat := ceilSecond(now)
	scope := strings.Join(scopes, " ")
	access, err := s.Signer.Sign(token.Claims{
		Issuer: s.cfg.Issuer, Audience: c.Audience, Subject: c.ID, ClientID: c.ID, Scope: scope,
		CertThumbprint: cert, IssuedAt: iat, ExpiresAt: iat.Add(s.cfg.AccessTTL),
	})
	if err != nil {
		return OAuthGrant{}, fmt.Errorf("sign client token: %w", err)
	}
	return OAuthGrant{AccessToken: access, ExpiresIn: s.cfg.AccessTTL.Truncate(time.Second), Scope: scope}, nil
}

// Introspection is the answer of RFC 7662 for an active token.
type Introspection struct {
	Active    bool
	TokenType string // access_token, refresh_token, api_key
	Subject   string
	ClientID  string
	Scope     string
	Audience  string
	SessionID string
	JTI       string
	IssuedAt  time.Time
	ExpiresAt time.Time
	Cert      string // cnf x5t#S256
	Email     string // the username of a user's token
}

// Introspect tells whether a Gatehouse access token, refresh token or API
// key is active now. callerCert is the thumbprint of the certificate the
// introspection request came with: a certificate-bound token is active
// only when presented with its certificate.
func (s *Service) Introspect(ctx context.Context, raw, callerCert, ip string) (Introspection, error) {
	switch {
	case token.LooksLikeAPIKey(raw):
		p, err := s.authenticateAPIKey(ctx, raw, ip)
		if err != nil {
			if errors.Is(err, ErrInvalidToken) {
				return Introspection{}, nil
			}
			return Introspection{}, err
		}
		return Introspection{Active: true, TokenType: "api_key", Subject: p.UserID, Scope: strings.Join(p.Scopes, " ")}, nil
	case strings.Count(raw, ".") == 2:
		return s.introspectAccess(ctx, raw, callerCert)
	}
	return s.introspectRefresh(ctx, raw)
}

func (s *Service) introspectAccess(ctx context.Context, raw, callerCert string) (Introspection, error) {
	claims, err := s.Signer.VerifyAnyAudience(ctx, raw, s.Now())
	if err != nil {
		if errors.Is(err, gatehouse.ErrUnavailable) {
			return Introspection{}, fmt.Errorf("introspect: %w", err)
		}
		return Introspection{}, nil
	}
	if err := s.checkRevoked(claims); err != nil {
		if errors.Is(err, revoke.ErrRevoked) {
			return Introspection{}, nil
		}
		return Introspection{}, fmt.Errorf("introspect: %w", err)
	}
	if claims.CertThumbprint != "" && claims.CertThumbprint != callerCert {
		return Introspection{}, nil
	}
	return Introspection{
		Active: true, TokenType: "access_token", Subject: claims.Subject, ClientID: claims.ClientID,
		Scope: claims.Scope, Audience: claims.Audience, SessionID: claims.SessionID, JTI: claims.ID,
		IssuedAt: claims.IssuedAt, ExpiresAt: claims.ExpiresAt, Cert: claims.CertThumbprint,
	}, nil
}

// checkRevoked holds an access token against the revocation sets: its
// session, its user's cutoff, its own jti.
func (s *Service) checkRevoked(c token.Claims) error {
	if err := s.Revoker.CheckToken(c.ID); err != nil {
		return err
	}
	return s.Revoker.Check(c.SessionID, c.Subject, c.IssuedAt)
}

func (s *Service) introspectRefresh(ctx context.Context, raw string) (Introspection, error) {
	// An app's refresh token decodes only under the OAuth codec, a
	// Gatehouse one only under its own.
	codec := s.RefreshCodec
	if oc := s.OAuth.RefreshCodec; oc != nil {
		if _, _, err := oc.Decode(raw); err == nil {
			codec = oc
		}
	}
	sess, err := s.sessionFromRefresh(ctx, codec, raw)
	if errors.Is(err, ErrInvalidRefresh) {
		return Introspection{}, nil
	}
	if err != nil {
		return Introspection{}, fmt.Errorf("introspect: %w", err)
	}
	return Introspection{
		Active: true, TokenType: "refresh_token", Subject: sess.UserID, ClientID: sess.ClientID,
		Scope: sess.Scope, SessionID: sess.ID, IssuedAt: sess.RotatedAt, ExpiresAt: s.SessionExpiry(sess),
		Cert: sess.CertThumbprint,
	}, nil
}

// RevokeOAuthToken is RFC 7009 for client c: a refresh token or access
// token of c ends its session on every instance (a client_credentials
// token, which has none, is revoked by its jti). Anything else, including
// another client's token, is silently ignored, as the RFC asks.
func (s *Service) RevokeOAuthToken(ctx context.Context, c gatehouse.OAuthClient, raw string) error {
	if err := s.oauthOn(); err != nil {
		return err
	}
	now := s.now()
	if strings.Count(raw, ".") == 2 {
		claims, err := s.Signer.VerifyAnyAudience(ctx, raw, s.Now())
		if err != nil || claims.ClientID != c.ID {
			return nil
		}
		if claims.SessionID != "" {
			return s.endClientSession(ctx, claims.SessionID, now)
		}
		exp := claims.ExpiresAt.Add(s.cfg.Leeway + time.Second)
		rev := gatehouse.Revocation{Kind: gatehouse.RevokeToken, Subject: claims.ID, At: now, ExpiresAt: exp}
		if err := s.Store.AddRevocation(ctx, rev); err != nil {
			return fmt.Errorf("revoke token: %w", err)
		}
		s.Revoker.Record(ctx, rev)
		return nil
	}
	sid, _, err := s.OAuth.RefreshCodec.Decode(raw)
	if err != nil {
		return nil
	}
	sess, err := s.Store.SessionByID(ctx, sid)
	if errors.Is(err, gatehouse.ErrNotFound) || (err == nil && sess.ClientID != c.ID) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	return s.endClientSession(ctx, sess.ID, now)
}

func (s *Service) endClientSession(ctx context.Context, sid string, now time.Time) error {
	if err := s.revokeSession(ctx, sid, ReasonLogout, now); err != nil && !errors.Is(err, gatehouse.ErrNotFound) {
		return err
	}
	return nil
}

// UserInfo answers the userinfo endpoint for an access token issued to a
// client for a user: the user, and the token's claims (its scope decides
// what is shown). cert is the thumbprint of the caller's certificate.
func (s *Service) UserInfo(ctx context.Context, raw, cert string) (gatehouse.User, token.Claims, error) {
	claims, err := s.Signer.VerifyAnyAudience(ctx, raw, s.Now())
	if err != nil {
		if errors.Is(err, gatehouse.ErrUnavailable) {
			return gatehouse.User{}, token.Claims{}, fmt.Errorf("userinfo: %w", err)
		}
		return gatehouse.User{}, token.Claims{}, ErrInvalidToken
	}
	if claims.ClientID == "" || claims.SessionID == "" {
		return gatehouse.User{}, token.Claims{}, ErrInvalidToken // not a token of a user's authorization
	}
	if claims.CertThumbprint != "" && claims.CertThumbprint != cert {
		return gatehouse.User{}, token.Claims{}, ErrInvalidToken
	}
	if err := s.checkRevoked(claims); err != nil {
		if errors.Is(err, revoke.ErrRevoked) {
			return gatehouse.User{}, token.Claims{}, ErrInvalidToken
		}
		return gatehouse.User{}, token.Claims{}, fmt.Errorf("userinfo: %w", err)
	}
	u, err := s.Store.UserByID(ctx, claims.Subject)
	if errors.Is(err, gatehouse.ErrNotFound) {
		return gatehouse.User{}, token.Claims{}, ErrInvalidToken
	}
	if err != nil {
		return gatehouse.User{}, token.Claims{}, fmt.Errorf("userinfo: %w", err)
	}
	if u.Disabled {
		return gatehouse.User{}, token.Claims{}, ErrInvalidToken
	}
	return u, claims, nil
}

// EndOAuthSession is RP-initiated logout: the End-User logs out of
// Gatehouse, not only of the app. The session named by the sid of an ID
// token this server issued ends on every instance, and so does the
// Gatehouse session it was authorized from (the browser's sign-in on the
// account page) with every other app session authorized from that one:
// without that, the next authorization request of any app would sign the
// user straight back in. It returns the token's client (aud), to check the
// post-logout redirect against; an unusable hint is ErrOAuthInvalidRequest.
func (s *Service) EndOAuthSession(ctx context.Context, idTokenHint string) (clientID string, err error) {
	if err := s.oauthOn(); err != nil {
		return "", err
	}
	claims, err := s.Signer.ParseIDTokenHint(idTokenHint, s.Now())
	if err != nil {
		return "", fmt.Errorf("%w: id_token_hint: %w", ErrOAuthInvalidRequest, err)
	}
	sid, _ := claims["sid"].(string)
	aud, _ := claims["aud"].(string)
	sub, _ := claims["sub"].(string)
	if sid == "" || aud == "" {
		return "", fmt.Errorf("%w: id_token_hint without sid or aud", ErrOAuthInvalidRequest)
	}
	sess, err := s.Store.SessionByID(ctx, sid)
	if errors.Is(err, gatehouse.ErrNotFound) {
		return aud, nil // already gone
	}
	if err != nil {
		return "", fmt.Errorf("logout: %w", err)
	}
	if sess.UserID != sub || sess.ClientID != aud {
		return "", fmt.Errorf("%w: id_token_hint does not match its session", ErrOAuthInvalidRequest)
	}
	now := s.now()
	// Ended already (an earlier logout with the same hint) or not, the
	// browser's session and its other apps' sessions are ended: a retried
	// logout must not leave half of it standing.
	if !sess.Revoked() {
		if err := s.endClientSession(ctx, sid, now); err != nil {
			return "", err
		}
	}
	if sess.ParentID != "" {
		family, err := s.sessionFamily(ctx, sess.UserID, sess.ParentID, sid, now)
		if err != nil {
			return "", err
		}
		for _, id := range family {
			if err := s.endClientSession(ctx, id, now); err != nil {
				return "", err
			}
		}
	}
	s.recordAudit(ctx, audit.Event{Type: audit.TypeLogout, UserID: sess.UserID, SessionID: sid,
		Detail: audit.Detail{audit.KeyScope: "oidc", audit.KeyClientID: aud}})
	return aud, nil
}

// sessionFamily lists the live sessions of userID that RP-initiated logout
// of one app session ends besides it: the Gatehouse session parent it was
// authorized from, and the other app sessions authorized from parent.
func (s *Service) sessionFamily(ctx context.Context, userID, parent, except string, now time.Time) ([]string, error) {
	live, err := s.Store.ListSessions(ctx, userID, now, now.Add(-s.cfg.IdleTTL))
	if err != nil {
		return nil, fmt.Errorf("logout: %w", err)
	}
	var ids []string
	for _, l := range live {
		if l.ID != except && (l.ID == parent || l.ParentID == parent) {
			ids = append(ids, l.ID)
		}
	}
	return ids, nil
}

// CertThumbprint is the RFC 8705 x5t#S256 of a DER certificate.
func CertThumbprint(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// pkceMatches checks an RFC 7636 verifier against its S256 challenge.
func pkceMatches(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	for i := 0; i < len(verifier); i++ {
		c := verifier[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	sum := sha256.Sum256([]byte(verifier))
	return hmac.Equal([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge))
}

func isBase64URL(s string) bool {
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}

// withParams adds query parameters to a redirect URI, keeping its own
// query; empty values are left out.
func withParams(raw string, kv ...string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw // registered URIs were validated; cannot happen
	}
	q := u.Query()
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// AuthenticateMachine is AuthenticateBearer that also takes an OAuth
// client's own token (client_credentials), as the Principal of the client
// with its scopes: for endpoints made for machines, such as the revocation
// feed. cert is the thumbprint of the caller's client certificate, which a
// bound token must come with.
func (s *Service) AuthenticateMachine(ctx context.Context, raw, ip, cert string) (Principal, error) {
	if token.LooksLikeAPIKey(raw) {
		return s.authenticateAPIKey(ctx, raw, ip)
	}
	claims, err := s.Signer.VerifyAnyAudience(ctx, raw, s.Now())
	if err != nil {
		if errors.Is(err, gatehouse.ErrUnavailable) {
			return Principal{}, fmt.Errorf("verify access token: %w", err)
		}
		return Principal{}, ErrInvalidToken
	}
	if claims.ClientID == "" || claims.SessionID != "" {
		return s.Authenticate(ctx, raw) // a user's token: Gatehouse's own rules
	}
	if claims.CertThumbprint != "" && claims.CertThumbprint != cert {
		return Principal{}, ErrInvalidToken
	}
	if err := s.checkRevoked(claims); err != nil {
		if errors.Is(err, revoke.ErrRevoked) {
			return Principal{}, ErrInvalidToken
		}
		return Principal{}, fmt.Errorf("revocation check: %w", err)
	}
	return Principal{ClientID: claims.ClientID, Scopes: strings.Fields(claims.Scope), IssuedAt: claims.IssuedAt}, nil
}
