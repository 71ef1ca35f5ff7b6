package verifier

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
)

// Require says what a route needs beyond a valid token.
type Require struct {
	// Roles: the token's role must be one of these (none: any role).
	Roles []string
	// Scopes: the token must carry every one of these.
	Scopes []string
}

type claimsKey struct{}

// ClaimsFrom returns the claims the middleware put in the request context.
func ClaimsFrom(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok
}

// Middleware lets a request through when its Bearer token verifies and
// meets req, with the claims in its context (ClaimsFrom); otherwise it
// answers an RFC 9457 problem: 401 (no token, or a bad one), 403 (role or
// scope missing) or 503 (revocation state not current).
func (v *Verifier) Middleware(req Require) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, ok := bearer(r)
			if !ok {
				w.Header().Set("WWW-Authenticate", "Bearer")
				writeProblem(w, http.StatusUnauthorized, "invalid_token", "This endpoint needs a Bearer access token.")
				return
			}
			c, err := v.Verify(r.Context(), raw)
			if err != nil {
				if errors.Is(err, ErrUnavailable) {
					w.Header().Set("Retry-After", "1")
					writeProblem(w, http.StatusServiceUnavailable, "unavailable", "Token revocations cannot be checked right now; try again shortly.")
					return
				}
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
				writeProblem(w, http.StatusUnauthorized, "invalid_token", "The access token is invalid, expired or revoked.")
				return
			}
			if c.CertThumbprint != "" && c.CertThumbprint != peerThumbprint(r) {
				// A certificate-bound token presented without its
				// certificate: someone else's copy (RFC 8705 section 3).
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
				writeProblem(w, http.StatusUnauthorized, "invalid_token", "The access token is bound to a client certificate this request did not present.")
				return
			}
			if len(req.Roles) > 0 && !slices.Contains(req.Roles, c.Role) {
				writeProblem(w, http.StatusForbidden, "forbidden", "You do not have access to this resource.")
				return
			}
			for _, s := range req.Scopes {
				if !c.HasScope(s) {
					w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="`+strings.Join(req.Scopes, " ")+`"`)
					writeProblem(w, http.StatusForbidden, "insufficient_scope", "The access token lacks a scope this resource needs.")
					return
				}
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), claimsKey{}, c)))
		})
	}
}

// peerThumbprint is the base64url SHA-256 of the verified client
// certificate of the request's TLS connection, or empty.
func peerThumbprint(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	sum := sha256.Sum256(r.TLS.PeerCertificates[0].Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// bearer returns the token of an Authorization: Bearer header. Tokens in
// URLs are never looked at.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

var problemTitles = map[int]string{
	http.StatusUnauthorized:       "Unauthorized",
	http.StatusForbidden:          "Forbidden",
	http.StatusServiceUnavailable: "Service unavailable",
}

func writeProblem(w http.ResponseWriter, status int, code, detail string) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": "about:blank", "title": problemTitles[status], "status": status, "detail": detail, "code": code,
	})
}
