package oauth2

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/strictjson"
)

// maxContinueBody bounds the continue request's JSON.
const maxContinueBody = 4 << 10

type continueRequest struct {
	OAuthRequest string `json:"oauth_request"`
	Consent      *bool  `json:"consent"`
}

type consentClient struct {
	ClientID string `json:"client_id"`
	Name     string `json:"name"`
}

// continueAuthorization serves POST /oauth2/authorize/continue: the
// account page, holding the signed-in user's access token, continues a
// pending authorization request (auth.ContinueAuthorization). It is
// authenticated by the Bearer header alone, never a cookie, so a
// cross-site form cannot drive it.
func (p *Provider) continueAuthorization(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "use POST")
		return
	}
	raw, ok := bearer(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer`)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_token", "a Bearer access token is required")
		return
	}
	principal, err := p.svc.Authenticate(r.Context(), raw)
	if err != nil {
		p.writeServiceError(w, r, err)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeOAuthError(w, http.StatusUnsupportedMediaType, "invalid_request", "the body must be application/json")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxContinueBody))
	if err != nil {
		writeOAuthError(w, http.StatusRequestEntityTooLarge, "invalid_request", "the body is too large")
		return
	}
	var req continueRequest
	if err := strictjson.Decode(body, &req); err != nil || req.OAuthRequest == "" {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the body must be {\"oauth_request\": string, \"consent\"?: boolean}")
		return
	}
	res, err := p.svc.ContinueAuthorization(r.Context(), principal, req.OAuthRequest, req.Consent)
	if err != nil {
		p.writeServiceError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if res.ConsentRequired {
		writeJSON(w, http.StatusForbidden, map[string]any{
			"error":             "consent_required",
			"error_description": "the user has not allowed this application yet",
			"client":            consentClient{ClientID: res.Client.ID, Name: res.Client.Name},
			"scopes":            res.Scopes,
		})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"redirect": res.Redirect})
}

func (p *Provider) writeServiceError(w http.ResponseWriter, r *http.Request, err error) {
	var rl *auth.RateLimitError
	switch {
	case errors.Is(err, auth.ErrInvalidToken):
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_token", "the access token is invalid, expired or revoked")
	case errors.Is(err, auth.ErrOAuthInvalidRequest):
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the sign-in request is unknown, used or expired")
	case errors.As(err, &rl):
		writeOAuthError(w, http.StatusTooManyRequests, "temporarily_unavailable", "too many requests; try again later")
	case errors.Is(err, auth.ErrNotConfigured):
		writeOAuthError(w, http.StatusNotFound, "invalid_request", "the OAuth provider is not configured")
	case errors.Is(err, gatehouse.ErrUnavailable):
		writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the service is unavailable; try again later")
	default:
		p.logger.ErrorContext(r.Context(), "oauth2 continue failed", "err", err)
		writeOAuthError(w, http.StatusInternalServerError, "server_error", "internal error")
	}
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Values("Authorization")
	if len(h) != 1 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t") {
		return "", false
	}
	return tok, true
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
