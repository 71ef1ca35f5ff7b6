package oauth2

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/auth"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// server implements op.Server over the provider; op has parsed and
// checked the request's form before each method runs.
type server struct {
	op.UnimplementedServer
	p *Provider
}

// VerifyAuthRequest finds the client of an authorization request; op then
// checks the redirect URI against it exactly. Errors here are answered
// directly, never redirected: the redirect URI is not trusted yet.
func (s *server) VerifyAuthRequest(ctx context.Context, r *op.Request[oidc.AuthRequest]) (*op.ClientRequest[oidc.AuthRequest], error) {
	c, err := s.p.svc.OAuthClient(ctx, r.Data.ClientID)
	if err != nil {
		if errors.Is(err, auth.ErrInvalidCredentials) {
			return nil, oidc.ErrInvalidRequestRedirectURI().WithDescription("unknown client_id")
		}
		return nil, s.p.oauthError(ctx, err)
	}
	return &op.ClientRequest[oidc.AuthRequest]{Request: r, Client: &client{c: c, method: oidc.AuthMethodNone}}, nil
}

// Authorize runs once the redirect URI is known good, so its errors reach
// the client there. A valid request is stored and the user sent to the
// account page, which signs them in, asks for consent if needed, and
// continues it (PathContinue).
func (s *server) Authorize(ctx context.Context, r *op.ClientRequest[oidc.AuthRequest]) (*op.Redirect, error) {
	c := r.Client.(*client).c
	req := r.Data
	if req.RequestParam != "" {
		return nil, oidc.ErrRequestNotSupported()
	}
	if slices.Contains(req.Prompt, oidc.PromptNone) {
		// Whether a user is signed in lives in the account page, not here.
		return nil, oidc.ErrLoginRequired()
	}
	if req.ResponseMode != "" && req.ResponseMode != oidc.ResponseModeQuery {
		return nil, oidc.ErrInvalidRequest().WithDescription("only response_mode query is supported")
	}
	scopes := []string(req.Scopes)
	if err := auth.CheckAuthorizationRequest(c, scopes, req.CodeChallenge, string(req.CodeChallengeMethod)); err != nil {
		return nil, s.p.oauthError(ctx, err)
	}
	if len(req.State) > 1024 || len(req.Nonce) > 1024 {
		return nil, oidc.ErrInvalidRequest().WithDescription("state and nonce are limited to 1024 characters")
	}
	id, err := s.p.svc.BeginAuthorization(ctx, auth.AuthorizationRequest{
		ClientID: c.ID, RedirectURI: req.RedirectURI, Scopes: scopes, State: req.State,
		Nonce: req.Nonce, CodeChallenge: req.CodeChallenge,
	})
	if err != nil {
		return nil, s.p.oauthError(ctx, err)
	}
	red := op.NewRedirect(s.p.accountURL(id))
	red.Header.Set("Cache-Control", "no-store")
	return red, nil
}

// VerifyClient authenticates the client of a token, revocation or other
// client request: a secret (basic or post), a certificate
// (tls_client_auth), or nothing for a public client.
func (s *server) VerifyClient(ctx context.Context, r *op.Request[op.ClientCredentials]) (op.Client, error) {
	cc := r.Data
	if cc.ClientAssertion != "" {
		return nil, op.NewStatusError(oidc.ErrInvalidClient().WithDescription("client assertions are not supported"), http.StatusUnauthorized)
	}
	if cc.ClientSecret != "" {
		c, err := s.p.svc.AuthenticateOAuthClient(ctx, cc.ClientID, cc.ClientSecret)
		if err != nil {
			return nil, s.p.oauthError(ctx, err)
		}
		method := oidc.AuthMethodPost
		if strings.HasPrefix(r.Header.Get("Authorization"), "Basic ") {
			method = oidc.AuthMethodBasic
		}
		return &client{c: c, method: method}, nil
	}
	c, err := s.p.svc.OAuthClient(ctx, cc.ClientID)
	if err != nil {
		return nil, s.p.oauthError(ctx, err)
	}
	f := factsOf(ctx)
	switch {
	case c.TLSSubject != "":
		if f.cert == nil || f.cert.Subject.String() != c.TLSSubject {
			return nil, s.p.oauthError(ctx, errNoSuchClient)
		}
		return &client{c: c, method: oidc.AuthMethod("tls_client_auth"), cert: f.thumbprint()}, nil
	case c.Public:
		return &client{c: c, method: oidc.AuthMethodNone}, nil
	}
	return nil, s.p.oauthError(ctx, errNoSuchClient)
}

func tokenResponse(g auth.OAuthGrant) *op.Response {
	resp := op.NewResponse(&oidc.AccessTokenResponse{
		AccessToken: g.AccessToken, TokenType: oidc.BearerToken, RefreshToken: g.RefreshToken,
		ExpiresIn: uint64(g.ExpiresIn.Seconds()), IDToken: g.IDToken, Scope: strings.Fields(g.Scope),
	})
	resp.Header.Set("Cache-Control", "no-store")
	resp.Header.Set("Pragma", "no-cache")
	return resp
}

func (s *server) CodeExchange(ctx context.Context, r *op.ClientRequest[oidc.AccessTokenRequest]) (*op.Response, error) {
	c := r.Client.(*client)
	f := factsOf(ctx)
	g, err := s.p.svc.ExchangeCode(ctx, c.c, r.Data.Code, r.Data.RedirectURI, r.Data.CodeVerifier, c.cert, f.client())
	if err != nil {
		return nil, s.p.oauthError(ctx, err)
	}
	return tokenResponse(g), nil
}

func (s *server) RefreshToken(ctx context.Context, r *op.ClientRequest[oidc.RefreshTokenRequest]) (*op.Response, error) {
	c := r.Client.(*client)
	f := factsOf(ctx)
	g, err := s.p.svc.RefreshOAuth(ctx, c.c, r.Data.RefreshToken, c.cert, f.client())
	if err != nil {
		return nil, s.p.oauthError(ctx, err)
	}
	return tokenResponse(g), nil
}

func (s *server) ClientCredentialsExchange(ctx context.Context, r *op.ClientRequest[oidc.ClientCredentialsRequest]) (*op.Response, error) {
	c := r.Client.(*client)
	g, err := s.p.svc.ClientCredentials(ctx, c.c, []string(r.Data.Scope), c.cert)
	if err != nil {
		return nil, s.p.oauthError(ctx, err)
	}
	return tokenResponse(g), nil
}

// Introspect answers RFC 7662 for a client that authenticated with its
// secret (op refuses the request without one).
func (s *server) Introspect(ctx context.Context, r *op.Request[op.IntrospectionRequest]) (*op.Response, error) {
	cc := r.Data.ClientCredentials
	if _, err := s.p.svc.AuthenticateOAuthClient(ctx, cc.ClientID, cc.ClientSecret); err != nil {
		return nil, s.p.oauthError(ctx, err)
	}
	f := factsOf(ctx)
	in, err := s.p.svc.Introspect(ctx, r.Data.Token, f.thumbprint(), f.ip)
	if err != nil {
		return nil, s.p.oauthError(ctx, err)
	}
	resp := op.NewResponse(introspection(in, s.p.cfg.Issuer))
	resp.Header.Set("Cache-Control", "no-store")
	return resp, nil
}

func introspection(in auth.Introspection, issuer string) map[string]any {
	if !in.Active {
		return map[string]any{"active": false}
	}
	out := map[string]any{"active": true, "token_type": in.TokenType, "sub": in.Subject, "iss": issuer}
	set := func(k, v string) {
		if v != "" {
			out[k] = v
		}
	}
	set("client_id", in.ClientID)
	set("scope", in.Scope)
	set("aud", in.Audience)
	set("sid", in.SessionID)
	set("jti", in.JTI)
	if !in.IssuedAt.IsZero() {
		out["iat"] = in.IssuedAt.Unix()
	}
	if !in.ExpiresAt.IsZero() {
		out["exp"] = in.ExpiresAt.Unix()
	}
	if in.Cert != "" {
		out["cnf"] = map[string]string{"x5t#S256": in.Cert}
	}
	return out
}

func (s *server) UserInfo(ctx context.Context, r *op.Request[oidc.UserInfoRequest]) (*op.Response, error) {
	u, claims, err := s.p.svc.UserInfo(ctx, r.Data.AccessToken, factsOf(ctx).thumbprint())
	if err != nil {
		return nil, s.p.oauthError(ctx, err)
	}
	out := map[string]any{"sub": u.ID}
	if slices.Contains(strings.Fields(claims.Scope), "email") {
		out["email"] = u.Email
		out["email_verified"] = u.EmailVerified
	}
	resp := op.NewResponse(out)
	resp.Header.Set("Cache-Control", "no-store")
	return resp, nil
}

// Revocation is RFC 7009: 200 whatever the token was.
func (s *server) Revocation(ctx context.Context, r *op.ClientRequest[oidc.RevocationRequest]) (*op.Response, error) {
	c := r.Client.(*client)
	if err := s.p.svc.RevokeOAuthToken(ctx, c.c, r.Data.Token); err != nil {
		return nil, s.p.oauthError(ctx, err)
	}
	return op.NewResponse(struct{}{}), nil
}

// EndSession is RP-initiated logout: the session in the ID token hint ends
// on every instance; the browser goes to the client's registered
// post-logout URI, or to the account page.
func (s *server) EndSession(ctx context.Context, r *op.Request[oidc.EndSessionRequest]) (*op.Redirect, error) {
	req := r.Data
	clientID := req.ClientID
	if req.IdTokenHint != "" {
		aud, err := s.p.svc.EndOAuthSession(ctx, req.IdTokenHint)
		if err != nil {
			return nil, s.p.oauthError(ctx, err)
		}
		if clientID != "" && clientID != aud {
			return nil, oidc.ErrInvalidRequest().WithDescription("client_id does not match id_token_hint")
		}
		clientID = aud
	}
	target := s.p.postLogoutTarget(gatehouse.OAuthClient{}, "", "")
	if clientID != "" && req.PostLogoutRedirectURI != "" {
		if c, err := s.p.svc.OAuthClient(ctx, clientID); err == nil {
			target = s.p.postLogoutTarget(c, req.PostLogoutRedirectURI, req.State)
		}
	}
	red := op.NewRedirect(target)
	red.Header.Set("Cache-Control", "no-store")
	return red, nil
}
