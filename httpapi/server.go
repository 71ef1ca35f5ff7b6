// Package httpapi is Gatehouse's HTTP face: routes, strict request
// decoding, problem+json errors, cookies, CSRF, CORS and the middleware
// around them. Business rules live in package auth.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/feed"
	"github.com/gatehouse/gatehouse/metrics"
)

// Config is the HTTP layer's configuration.
type Config struct {
	Issuer         string
	AllowedOrigins []string
	TrustedProxies []netip.Prefix
	CSRFKey        []byte
	// MetricsElsewhere moves /metrics off the public handler (which then
	// answers 404 for it) to MetricsHandler, served on its own listener.
	MetricsElsewhere bool
}

// Deps are the collaborators of the HTTP layer.
type Deps struct {
	Auth    *auth.Service
	JWKS    func(now time.Time) ([]byte, error)
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// Ready reports whether the database and Redis answer.
	Ready func(ctx context.Context) error
	// Account serves the account page, if any.
	Account http.Handler
	// Feed serves GET /auth/revocations; nil leaves the endpoint out.
	Feed *feed.Feed
	// OpenAPI is the API description served at /openapi.json (package
	// openapi builds it).
	OpenAPI []byte
	// OAuth serves /oauth2/ (package oauth2); nil leaves it out.
	OAuth *OAuthMount
}

// OAuthMount is the OAuth provider as the HTTP layer mounts it.
type OAuthMount struct {
	Handler http.Handler
	// Discovery is added to /.well-known/openid-configuration.
	Discovery map[string]any
	// Routes are its endpoints, for the API description's check.
	Routes []Route
}

// Server routes requests to handlers.
type Server struct {
	cfg     Config
	auth    *auth.Service
	jwks    func(now time.Time) ([]byte, error)
	metrics *metrics.Metrics
	logger  *slog.Logger
	ready   func(ctx context.Context) error
	mux     *routeMux
	openapi openAPIDoc
	feed    *feed.Feed
	oauth   *OAuthMount

	metricsHandler http.Handler
}

// handlerFunc is a handler that returns its error for writeError.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// New builds the server and its routes.
func New(cfg Config, deps Deps) *Server {
	s := &Server{
		cfg: cfg, auth: deps.Auth, jwks: deps.JWKS, metrics: deps.Metrics,
		logger: deps.Logger, ready: deps.Ready, mux: &routeMux{ServeMux: http.NewServeMux()},
		metricsHandler: deps.Metrics.Handler(), feed: deps.Feed,
		openapi: newOpenAPIDoc(deps.OpenAPI), oauth: deps.OAuth,
	}
	s.route("/auth/signup", map[string]handlerFunc{http.MethodPost: s.signup})
	s.route("/auth/login", map[string]handlerFunc{http.MethodPost: s.login})
	s.route("/auth/refresh", map[string]handlerFunc{http.MethodPost: s.refresh})
	s.route("/auth/logout", map[string]handlerFunc{http.MethodPost: s.logout})
	s.route("/auth/csrf", map[string]handlerFunc{http.MethodGet: s.csrfState})
	s.route("/auth/me", map[string]handlerFunc{http.MethodGet: s.me})
	s.route("/auth/sessions", map[string]handlerFunc{http.MethodGet: s.sessions})
	s.route("/auth/sessions/{id}", map[string]handlerFunc{http.MethodDelete: s.deleteSession})
	s.route("/auth/password", map[string]handlerFunc{http.MethodPost: s.changePassword})
	s.route("/auth/email/verify/send", map[string]handlerFunc{http.MethodPost: s.sendVerification})
	s.route("/auth/email/verify", map[string]handlerFunc{http.MethodPost: s.verifyEmail})
	s.route("/auth/password/forgot", map[string]handlerFunc{http.MethodPost: s.forgotPassword})
	s.route("/auth/password/reset", map[string]handlerFunc{http.MethodPost: s.resetPassword})
	s.route("/auth/magic-link", map[string]handlerFunc{http.MethodPost: s.magicLink})
	s.route("/auth/magic-link/verify", map[string]handlerFunc{http.MethodPost: s.magicLinkVerify})
	s.route("/auth/email/change", map[string]handlerFunc{http.MethodPost: s.requestEmailChange})
	s.route("/auth/email/change/confirm", map[string]handlerFunc{http.MethodPost: s.confirmEmailChange})
	s.route("/auth/mfa/totp", map[string]handlerFunc{http.MethodPost: s.startTOTP, http.MethodDelete: s.disableTOTP})
	s.route("/auth/mfa/totp/confirm", map[string]handlerFunc{http.MethodPost: s.confirmTOTP})
	s.route("/auth/mfa/recovery-codes", map[string]handlerFunc{http.MethodPost: s.regenerateRecoveryCodes})
	s.route("/auth/mfa/verify", map[string]handlerFunc{http.MethodPost: s.verifyMFA})
	s.route("/admin/users/{id}/mfa", map[string]handlerFunc{http.MethodDelete: s.adminResetMFA})
	s.route("/auth/passkeys", map[string]handlerFunc{http.MethodGet: s.listPasskeys})
	s.route("/auth/passkeys/{id}", map[string]handlerFunc{http.MethodDelete: s.deletePasskey})
	s.route("/auth/passkeys/register/begin", map[string]handlerFunc{http.MethodPost: s.passkeyRegisterBegin})
	s.route("/auth/passkeys/register/finish", map[string]handlerFunc{http.MethodPost: s.passkeyRegisterFinish})
	s.route("/auth/passkeys/login/begin", map[string]handlerFunc{http.MethodPost: s.passkeyLoginBegin})
	s.route("/auth/passkeys/login/finish", map[string]handlerFunc{http.MethodPost: s.passkeyLoginFinish})
	s.route("/auth/idps", map[string]handlerFunc{http.MethodGet: s.listIdPs})
	s.route("/auth/idps/{name}/authorize", map[string]handlerFunc{http.MethodGet: s.idpAuthorize})
	s.route("/auth/idps/{name}/callback", map[string]handlerFunc{http.MethodGet: s.idpCallback})
	s.route("/auth/idps/exchange", map[string]handlerFunc{http.MethodPost: s.idpExchange})
	s.route("/auth/identities", map[string]handlerFunc{http.MethodGet: s.listIdentities})
	s.route("/auth/identities/{id}", map[string]handlerFunc{http.MethodDelete: s.deleteIdentity})
	s.route("/admin/idps", map[string]handlerFunc{http.MethodGet: s.adminListIdPs})
	s.route("/admin/idps/{name}", map[string]handlerFunc{http.MethodPut: s.adminPutIdP, http.MethodDelete: s.adminDeleteIdP})
	s.route("/auth/consents", map[string]handlerFunc{http.MethodGet: s.listConsents})
	s.route("/auth/consents/{client_id}", map[string]handlerFunc{http.MethodDelete: s.deleteConsent})
	s.route("/admin/clients", map[string]handlerFunc{http.MethodGet: s.adminListClients, http.MethodPost: s.adminCreateClient})
	s.route("/admin/clients/{client_id}", map[string]handlerFunc{http.MethodDelete: s.adminDeleteClient})
	s.route("/admin/users", map[string]handlerFunc{http.MethodGet: s.adminListUsers})
	s.route("/admin/users/{id}", map[string]handlerFunc{http.MethodPatch: s.adminUpdateUser})
	s.route("/admin/users/{id}/sessions", map[string]handlerFunc{http.MethodGet: s.adminUserSessions})
	s.route("/admin/users/{id}/logout", map[string]handlerFunc{http.MethodPost: s.adminLogoutUser})
	s.route("/admin/sessions/{id}", map[string]handlerFunc{http.MethodDelete: s.adminDeleteSession})
	s.route("/auth/api-keys", map[string]handlerFunc{http.MethodGet: s.listAPIKeys, http.MethodPost: s.createAPIKey})
	s.route("/auth/api-keys/{id}", map[string]handlerFunc{http.MethodDelete: s.deleteAPIKey})
	s.route("/admin/users/{id}/api-keys", map[string]handlerFunc{http.MethodGet: s.adminUserAPIKeys})
	s.route("/admin/api-keys/{id}", map[string]handlerFunc{http.MethodDelete: s.adminDeleteAPIKey})
	s.route("/auth/verify", map[string]handlerFunc{http.MethodGet: s.verify})
	s.route("/auth/revocations", map[string]handlerFunc{http.MethodGet: s.revocations})
	s.route("/admin/audit", map[string]handlerFunc{http.MethodGet: s.adminAudit})
	s.route("/auth/activity", map[string]handlerFunc{http.MethodGet: s.activity})
	s.route("/.well-known/jwks.json", map[string]handlerFunc{http.MethodGet: s.jwksHandler})
	s.route("/.well-known/openid-configuration", map[string]handlerFunc{http.MethodGet: s.openIDConfig})
	s.route("/healthz", map[string]handlerFunc{http.MethodGet: s.healthz})
	s.route("/readyz", map[string]handlerFunc{http.MethodGet: s.readyz})
	s.route("/openapi.json", map[string]handlerFunc{http.MethodGet: s.serveOpenAPI})
	if !cfg.MetricsElsewhere {
		s.route("/metrics", map[string]handlerFunc{http.MethodGet: s.serveMetrics})
	}
	if deps.Account != nil {
		s.mux.Handle("/account", s.observe("/account", methodsOnly(deps.Account, s)))
		s.mux.Handle("/account/", s.observe("/account/", methodsOnly(deps.Account, s)))
	}
	if s.oauth != nil {
		s.mux.routes = append(s.mux.routes, s.oauth.Routes...)
	}
	// The fallback is no route of its own (Routes leaves it out).
	s.mux.ServeMux.Handle("/", s.observe("other", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, s.logger, &requestError{http.StatusNotFound, "not_found", "No such endpoint."})
	})))
	return s
}

// Handler returns the whole HTTP handler with its middleware.
func (s *Server) Handler() http.Handler {
	main := securityHeaders(s.crossOrigin(s.mux))
	if s.oauth == nil {
		return main
	}
	// The OAuth endpoints read no cookie (clients authenticate themselves,
	// users' tokens come as Bearer headers), so they skip the origin check
	// that guards the cookie-bearing API, and any web app may call them
	// (their CORS answers carry no credentials).
	oauth := securityHeaders(s.observe("/oauth2/", s.oauth.Handler))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/oauth2/") {
			oauth.ServeHTTP(w, r)
			return
		}
		main.ServeHTTP(w, r)
	})
}

// MetricsHandler serves /metrics alone, for a listener of its own
// (--metrics-addr) that only the operator's network can reach: the
// counters tell an outsider how busy the server is and how its logins fare.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, r, s.logger, errMethodNotAllowed)
			return
		}
		_ = s.serveMetrics(w, r)
	}))
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, s.logger, &requestError{http.StatusNotFound, "not_found", "No such endpoint."})
	}))
	return securityHeaders(mux)
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) error {
	s.metricsHandler.ServeHTTP(&prometheusText{ResponseWriter: w}, r)
	return nil
}

// route registers a path with one handler per method; other methods get a
// problem+json 405 with an Allow header (the mux's own 405 is plain text).
func (s *Server) route(pattern string, byMethod map[string]handlerFunc) {
	allow := make([]string, 0, len(byMethod)+1)
	for m := range byMethod {
		allow = append(allow, m)
	}
	if _, ok := byMethod[http.MethodGet]; ok {
		allow = append(allow, http.MethodHead)
	}
	allow = append(allow, http.MethodOptions)
	sort.Strings(allow)
	allowHeader := strings.Join(allow, ", ")
	for m := range byMethod {
		s.mux.routes = append(s.mux.routes, Route{Method: m, Pattern: pattern})
	}
	s.mux.ServeMux.Handle(pattern, s.observe(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, ok := byMethod[r.Method]
		if !ok && r.Method == http.MethodHead {
			// HEAD is GET without a body (RFC 9110); net/http drops the body.
			h, ok = byMethod[http.MethodGet]
		}
		if !ok {
			w.Header().Set("Allow", allowHeader)
			if r.Method == http.MethodOptions {
				w.WriteHeader(http.StatusNoContent)
				return
			}
			writeError(w, r, s.logger, errMethodNotAllowed)
			return
		}
		r = s.auditRequest(r)
		if err := h(w, r); err != nil {
			writeError(w, r, s.logger, err)
		}
	})))
}

// methodsOnly lets GET and HEAD through to a static handler.
func methodsOnly(h http.Handler, s *Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, r, s.logger, errMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// prometheusText pins the /metrics content type to Prometheus's classic
// text format name, which API.md promises; promhttp appends negotiation
// parameters (escaping=...) that some scrapers and checks do not expect.
type prometheusText struct {
	http.ResponseWriter
	wrote bool
}

func (p *prometheusText) WriteHeader(code int) {
	if !p.wrote && code == http.StatusOK {
		p.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	}
	p.wrote = true
	p.ResponseWriter.WriteHeader(code)
}

func (p *prometheusText) Write(b []byte) (int, error) {
	if !p.wrote {
		p.WriteHeader(http.StatusOK)
	}
	return p.ResponseWriter.Write(b)
}
