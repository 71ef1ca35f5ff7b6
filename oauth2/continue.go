package oauth2

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"

	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/httpapi"
	"github.com/gatehouse/gatehouse/strictjson"
	"github.com/zitadel/oidc/v3/pkg/op"
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
	raw, _ := httpapi.BearerToken(r)
	if raw == "" {
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

// writeServiceError answers err in the OAuth error form, mapped as every
// other endpoint of the provider maps it (Provider.oauthError).
func (p *Provider) writeServiceError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, auth.ErrInvalidToken) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	op.WriteError(w, r, p.oauthError(r.Context(), err), nil)
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
