package httpapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/token"
)

// API keys and forward-auth (/auth/verify).

// errCredentialsInURL refuses a request that carries an API key in its
// URL: it is in server and proxy logs by now, so it is never accepted, and
// the answer says so (a 400, unlike the silent 401 for ?access_token= with
// an access token, whose short life makes the leak less grave).
var errCredentialsInURL = &requestError{http.StatusBadRequest, "bad_request",
	"API keys are never accepted in a URL; send them in the Authorization header, and revoke this one: it may be in logs."}

// credentialsInURL reports whether the query names an API key.
func credentialsInURL(r *http.Request) bool {
	if r.URL.RawQuery == "" {
		return false
	}
	q := r.URL.Query()
	return q.Has("api_key") || token.LooksLikeAPIKey(q.Get("access_token"))
}

// authenticateAny verifies the Bearer credential of a request that accepts
// access tokens and API keys alike (/auth/me, /auth/verify).
func (s *Server) authenticateAny(r *http.Request) (auth.Principal, error) {
	if credentialsInURL(r) {
		return auth.Principal{}, errCredentialsInURL
	}
	tok, present := bearerToken(r)
	if !present {
		return auth.Principal{}, errNoCredentials
	}
	if tok == "" || (r.URL.RawQuery != "" && r.URL.Query().Has("access_token")) {
		return auth.Principal{}, auth.ErrInvalidToken
	}
	return s.auth.AuthenticateBearer(r.Context(), tok, clientIP(r, s.cfg.TrustedProxies))
}

// authenticateMachine is authenticateAny that also takes the access token
// an OAuth client got for itself (client_credentials), for endpoints made
// for machines (the revocation feed).
func (s *Server) authenticateMachine(r *http.Request) (auth.Principal, error) {
	if credentialsInURL(r) {
		return auth.Principal{}, errCredentialsInURL
	}
	tok, present := bearerToken(r)
	if !present {
		return auth.Principal{}, errNoCredentials
	}
	if tok == "" || (r.URL.RawQuery != "" && r.URL.Query().Has("access_token")) {
		return auth.Principal{}, auth.ErrInvalidToken
	}
	return s.auth.AuthenticateMachine(r.Context(), tok, clientIP(r, s.cfg.TrustedProxies), peerCertThumbprint(r))
}

// peerCertThumbprint is the x5t#S256 of the verified client certificate of
// the request's TLS connection, or empty.
func peerCertThumbprint(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	return auth.CertThumbprint(r.TLS.PeerCertificates[0].Raw)
}

// verify answers a reverse proxy's forward-auth subrequest (nginx
// auth_request, Traefik forwardAuth, Caddy forward_auth): 200 with the
// caller's identity in headers the proxy copies to the upstream, or a 401
// problem. Access tokens are checked without a database round trip; API
// keys from the instance's cache.
func (s *Server) verify(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticateAny(r)
	if err != nil {
		return err
	}
	// Canonical keys set directly: this is the hot path.
	h := w.Header()
	h["X-Auth-User-Id"] = []string{p.UserID}
	h["X-Auth-Role"] = []string{string(p.Role)}
	if p.SessionID != "" {
		h["X-Auth-Session-Id"] = []string{p.SessionID}
	}
	if p.APIKeyID != "" {
		h["X-Auth-Api-Key-Id"] = []string{p.APIKeyID}
		h["X-Auth-Scopes"] = []string{strings.Join(p.Scopes, " ")}
	}
	h["Content-Length"] = []string{"0"}
	w.WriteHeader(http.StatusOK)
	return nil
}

type apiKeyJSON struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Prefix     string   `json:"prefix"`
	Scopes     []string `json:"scopes"`
	CreatedAt  string   `json:"created_at"`
	ExpiresAt  *string  `json:"expires_at"`
	LastUsedAt *string  `json:"last_used_at"`
}

// optionalTime is an RFC 3339 time, or null for the zero time ("none").
func optionalTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	v := rfc3339(t)
	return &v
}

func toAPIKeyJSON(k gatehouse.APIKey) apiKeyJSON {
	scopes := k.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return apiKeyJSON{
		ID: k.ID, Name: k.Name, Prefix: token.APIKeyPrefix + k.ID[:min(len(k.ID), 8)], Scopes: scopes,
		CreatedAt:  rfc3339(k.CreatedAt),
		ExpiresAt:  optionalTime(k.ExpiresAt),
		LastUsedAt: optionalTime(k.LastUsedAt),
	}
}

func toAPIKeysJSON(ks []gatehouse.APIKey) []apiKeyJSON {
	out := make([]apiKeyJSON, 0, len(ks))
	for _, k := range ks {
		out = append(out, toAPIKeyJSON(k))
	}
	return out
}

type createAPIKeyRequest struct {
	Name          string   `json:"name"`
	ExpiresInDays *int     `json:"expires_in_days"`
	Scopes        []string `json:"scopes"`
}

func (s *Server) createAPIKey(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	var req createAPIKeyRequest
	if _, err := readBody(r, &req, false); err != nil {
		return err
	}
	k, raw, err := s.auth.CreateAPIKey(r.Context(), p, auth.APIKeyInput{Name: req.Name, ExpiresInDays: req.ExpiresInDays, Scopes: req.Scopes})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, struct {
		APIKey apiKeyJSON `json:"api_key"`
		Key    string     `json:"key"`
	}{toAPIKeyJSON(k), raw})
	return nil
}

func (s *Server) listAPIKeys(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	ks, err := s.auth.APIKeys(r.Context(), p.UserID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string][]apiKeyJSON{"api_keys": toAPIKeysJSON(ks)})
	return nil
}

func (s *Server) deleteAPIKey(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	if _, err := readBody(r, &struct{}{}, true); err != nil {
		return err
	}
	if err := s.auth.RevokeOwnAPIKey(r.Context(), p, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) adminUserAPIKeys(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.authenticateAdmin(r); err != nil {
		return err
	}
	ks, err := s.auth.AdminUserAPIKeys(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string][]apiKeyJSON{"api_keys": toAPIKeysJSON(ks)})
	return nil
}

func (s *Server) adminDeleteAPIKey(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.authenticateAdmin(r); err != nil {
		return err
	}
	if _, err := readBody(r, &struct{}{}, true); err != nil {
		return err
	}
	if err := s.auth.AdminRevokeAPIKey(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
