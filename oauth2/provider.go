// Package oauth2 is Gatehouse's OAuth 2.1 / OpenID Connect provider over
// HTTP. zitadel/oidc's op.Server (OpenID Certified) parses and validates
// the protocol's requests, checks redirect URIs, and writes its answers
// and errors; every decision (clients, codes, sessions, tokens, consent,
// revocation) is Gatehouse's own, in package auth, so apps get the same
// refresh-token rotation, reuse detection and revocation as Gatehouse's own
// sign-ins. op.Server rather than op's Storage: Storage would have the
// library mint its own refresh tokens and access tokens.
package oauth2

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/auth"
	"github.com/go-chi/chi/v5"
	"github.com/rs/cors"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Paths of the provider's endpoints.
const (
	PathAuthorize  = "/oauth2/authorize"
	PathContinue   = "/oauth2/authorize/continue"
	PathToken      = "/oauth2/token"
	PathUserinfo   = "/oauth2/userinfo"
	PathIntrospect = "/oauth2/introspect"
	PathRevoke     = "/oauth2/revoke"
	PathLogout     = "/oauth2/logout"
)

// Config configures the provider.
type Config struct {
	Issuer    string // base of the endpoints in discovery
	PublicURL string // base of the account page
	// TLSClientAuth says whether client certificates can reach the
	// server (--tls-client-ca), for discovery.
	TLSClientAuth bool
	// ClientIP returns the client's address (behind trusted proxies).
	ClientIP func(*http.Request) string
}

// Provider serves the /oauth2/ endpoints.
type Provider struct {
	cfg     Config
	svc     *auth.Service
	logger  *slog.Logger
	handler http.Handler
}

// New builds the provider.
func New(cfg Config, svc *auth.Service, logger *slog.Logger) *Provider {
	p := &Provider{cfg: cfg, svc: svc, logger: logger}
	endpoints := op.Endpoints{
		Authorization: op.NewEndpoint(PathAuthorize),
		Token:         op.NewEndpoint(PathToken),
		Introspection: op.NewEndpoint(PathIntrospect),
		Userinfo:      op.NewEndpoint(PathUserinfo),
		Revocation:    op.NewEndpoint(PathRevoke),
		EndSession:    op.NewEndpoint(PathLogout),
	}
	opHandler := op.RegisterServer(&server{p: p}, endpoints,
		// No cookies are read here: any origin may call the token,
		// userinfo and revocation endpoints (browser apps), credentials off.
		op.WithServerCORSOptions(&cors.Options{
			AllowedOrigins:   []string{"*"},
			AllowedMethods:   []string{http.MethodGet, http.MethodPost},
			AllowedHeaders:   []string{"Authorization", "Content-Type"},
			AllowCredentials: false,
		}),
		op.WithHTTPMiddleware(withRequestFacts(cfg.ClientIP)),
		op.WithSetRouter(func(r chi.Router) {
			r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
				writeOAuthError(w, http.StatusNotFound, "invalid_request", "no such endpoint")
			})
			r.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) {
				writeOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "method not allowed")
			})
		}),
	)
	mux := http.NewServeMux()
	mux.Handle(PathContinue, http.HandlerFunc(p.continueAuthorization))
	mux.Handle("/oauth2/", bareRedirects(opHandler))
	p.handler = mux
	return p
}

// Handler serves everything under /oauth2/.
func (p *Provider) Handler() http.Handler { return p.handler }

// Routes lists the provider's endpoints, for the API description's check.
func Routes() [][2]string {
	return [][2]string{
		{http.MethodGet, PathAuthorize},
		{http.MethodPost, PathContinue},
		{http.MethodPost, PathToken},
		{http.MethodGet, PathUserinfo},
		{http.MethodPost, PathUserinfo},
		{http.MethodPost, PathIntrospect},
		{http.MethodPost, PathRevoke},
		{http.MethodGet, PathLogout},
	}
}

// Discovery returns the members the provider adds to
// /.well-known/openid-configuration: exactly what it serves.
func (p *Provider) Discovery() map[string]any {
	base := strings.TrimSuffix(p.cfg.Issuer, "/")
	auths := []string{"client_secret_basic", "client_secret_post", "none"}
	if p.cfg.TLSClientAuth {
		auths = append(auths, "tls_client_auth")
	}
	d := map[string]any{
		"authorization_endpoint":                        base + PathAuthorize,
		"token_endpoint":                                base + PathToken,
		"userinfo_endpoint":                             base + PathUserinfo,
		"introspection_endpoint":                        base + PathIntrospect,
		"revocation_endpoint":                           base + PathRevoke,
		"end_session_endpoint":                          base + PathLogout,
		"response_types_supported":                      []string{"code"},
		"response_modes_supported":                      []string{"query"},
		"grant_types_supported":                         []string{auth.GrantAuthorizationCode, auth.GrantRefreshToken, auth.GrantClientCredentials},
		"code_challenge_methods_supported":              []string{"S256"},
		"token_endpoint_auth_methods_supported":         auths,
		"introspection_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"revocation_endpoint_auth_methods_supported":    auths,
		"scopes_supported":                              []string{"openid", "profile", "email", "offline_access"},
		"subject_types_supported":                       []string{"public"},
		"id_token_signing_alg_values_supported":         []string{"EdDSA", "ES256"},
		"claims_supported":                              []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "sid", "amr", "azp", "email", "email_verified"},
		"request_parameter_supported":                   false,
		"request_uri_parameter_supported":               false,
	}
	if p.cfg.TLSClientAuth {
		d["tls_client_certificate_bound_access_tokens"] = true
	}
	return d
}

// requestFacts carries what the op.Server methods need of the HTTP
// request that op does not hand them: the verified client certificate and
// the client's address.
type requestFacts struct {
	cert      *x509.Certificate // verified against --tls-client-ca, or nil
	ip        string
	userAgent string
}

type factsKey struct{}

func withRequestFacts(clientIP func(*http.Request) string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f := &requestFacts{userAgent: r.UserAgent()}
			if clientIP != nil {
				f.ip = clientIP(r)
			}
			// VerifyClientCertIfGiven verified the chain when there is one.
			if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.PeerCertificates) > 0 {
				f.cert = r.TLS.PeerCertificates[0]
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), factsKey{}, f)))
		})
	}
}

func factsOf(ctx context.Context) *requestFacts {
	if f, ok := ctx.Value(factsKey{}).(*requestFacts); ok {
		return f
	}
	return &requestFacts{}
}

func (f *requestFacts) thumbprint() string {
	if f.cert == nil {
		return ""
	}
	return auth.CertThumbprint(f.cert.Raw)
}

func (f *requestFacts) client() auth.Client {
	return auth.Client{IP: f.ip, UserAgent: f.userAgent, Transport: gatehouse.TransportBody}
}

// client adapts a registered client to op.Client, with the way it
// authenticated on this request.
type client struct {
	c      gatehouse.OAuthClient
	method oidc.AuthMethod
	cert   string // thumbprint, when it authenticated by tls_client_auth
}

func (c *client) GetID() string                    { return c.c.ID }
func (c *client) RedirectURIs() []string           { return c.c.RedirectURIs }
func (c *client) PostLogoutRedirectURIs() []string { return c.c.PostLogoutRedirectURIs }

// ApplicationType is web for every client: redirect URIs are matched
// exactly, never by the loopback-port leniency op gives native apps.
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *client) AuthMethod() oidc.AuthMethod         { return c.method }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	out := make([]oidc.GrantType, 0, len(c.c.Grants))
	for _, g := range c.c.Grants {
		out = append(out, oidc.GrantType(g))
	}
	return out
}
func (c *client) LoginURL(string) string              { return "" }
func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }
func (c *client) IDTokenLifetime() time.Duration      { return time.Hour }

// DevMode lets op accept the http://localhost redirect URIs Gatehouse
// admits at registration (https everywhere else); matching stays exact.
func (c *client) DevMode() bool { return true }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// IsScopeAllowed lets every scope through op's filter, which would drop
// unknown scopes silently; Gatehouse refuses them with invalid_scope.
func (c *client) IsScopeAllowed(string) bool           { return true }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c *client) ClockSkew() time.Duration             { return 0 }

// oauthError maps the service's errors to OAuth errors, never leaking an
// internal message: anything unexpected is logged and becomes server_error.
func (p *Provider) oauthError(ctx context.Context, err error) error {
	var rl *auth.RateLimitError
	desc := func() string {
		msg := err.Error()
		if i := strings.Index(msg, ": "); i >= 0 {
			return msg[i+2:]
		}
		return ""
	}
	switch {
	case errors.Is(err, auth.ErrOAuthInvalidGrant), errors.Is(err, auth.ErrInvalidRefresh), errors.Is(err, auth.ErrRefreshReused):
		return oidc.ErrInvalidGrant().WithDescription("%s", desc())
	case errors.Is(err, auth.ErrOAuthInvalidRequest):
		return oidc.ErrInvalidRequest().WithDescription("%s", desc())
	case errors.Is(err, auth.ErrOAuthInvalidScope):
		return oidc.ErrInvalidScope().WithDescription("%s", desc())
	case errors.Is(err, auth.ErrOAuthUnauthorized):
		return oidc.ErrUnauthorizedClient().WithDescription("%s", desc())
	case errors.Is(err, auth.ErrInvalidCredentials), errors.Is(err, auth.ErrOAuthInvalidClient):
		return op.NewStatusError(oidc.ErrInvalidClient().WithDescription("client authentication failed"), http.StatusUnauthorized)
	case errors.Is(err, auth.ErrInvalidToken):
		return op.NewStatusError(&oidc.Error{ErrorType: "invalid_token", Description: "the access token is invalid, expired or revoked"}, http.StatusUnauthorized)
	case errors.As(err, &rl):
		return op.NewStatusError(&oidc.Error{ErrorType: "temporarily_unavailable", Description: "too many requests; try again later"}, http.StatusTooManyRequests)
	case errors.Is(err, gatehouse.ErrUnavailable):
		return op.NewStatusError(&oidc.Error{ErrorType: "temporarily_unavailable", Description: "the service is unavailable; try again later"}, http.StatusServiceUnavailable)
	case errors.Is(err, auth.ErrNotConfigured):
		return op.NewStatusError(oidc.ErrInvalidRequest().WithDescription("the OAuth provider is not configured"), http.StatusNotFound)
	}
	p.logger.ErrorContext(ctx, "oauth2 request failed", "err", err)
	return oidc.ErrServerError().WithDescription("internal error")
}

// accountURL is where the account page continues a pending request.
func (p *Provider) accountURL(requestID string) string {
	return strings.TrimSuffix(p.cfg.PublicURL, "/") + "/account?oauth_request=" + url.QueryEscape(requestID)
}

// postLogoutTarget is where RP-initiated logout ends: the client's
// registered post-logout URI (exact match) with state, else the account page.
func (p *Provider) postLogoutTarget(c gatehouse.OAuthClient, uri, state string) string {
	if uri != "" && slices.Contains(c.PostLogoutRedirectURIs, uri) {
		if state == "" {
			return uri
		}
		u, err := url.Parse(uri)
		if err == nil {
			q := u.Query()
			q.Set("state", state)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return strings.TrimSuffix(p.cfg.PublicURL, "/") + "/account"
}

var errNoSuchClient = fmt.Errorf("%w: unknown client", auth.ErrOAuthInvalidClient)

// bareRedirects drops the HTML body net/http's Redirect writes under a
// redirect (op answers with it): a 302 here is a Location header and
// nothing else, as the API description says.
func bareRedirects(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&redirectWriter{ResponseWriter: w}, r)
	})
}

type redirectWriter struct {
	http.ResponseWriter
	redirect bool
}

func (w *redirectWriter) WriteHeader(code int) {
	if code >= 300 && code < 400 {
		w.redirect = true
		w.Header().Del("Content-Type")
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *redirectWriter) Write(b []byte) (int, error) {
	if w.redirect {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}
