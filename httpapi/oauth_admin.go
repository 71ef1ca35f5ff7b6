package httpapi

import (
	"net/http"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/auth"
)

// Admin endpoints of OAuth clients (API.md, "Gatehouse as an OAuth 2.1 and
// OpenID provider"): the same as `gatehouse client create|list|remove`.

// oauthClientJSON is a client as admins see it: never its secret or MAC.
type oauthClientJSON struct {
	ClientID               string   `json:"client_id"`
	Name                   string   `json:"name"`
	RedirectURIs           []string `json:"redirect_uris"`
	PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris"`
	Public                 bool     `json:"public"`
	FirstParty             bool     `json:"first_party"`
	Grants                 []string `json:"grants"`
	Scopes                 []string `json:"scopes"`
	Audience               string   `json:"audience"`
	TLSClientAuth          string   `json:"tls_client_auth"`
	CreatedAt              string   `json:"created_at"`
}

// orEmpty makes a nil list an empty JSON array rather than null.
func orEmpty(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func toOAuthClientJSON(c gatehouse.OAuthClient) oauthClientJSON {
	return oauthClientJSON{
		ClientID: c.ID, Name: c.Name,
		RedirectURIs: orEmpty(c.RedirectURIs), PostLogoutRedirectURIs: orEmpty(c.PostLogoutRedirectURIs),
		Public: c.Public, FirstParty: c.FirstParty, Grants: orEmpty(c.Grants), Scopes: orEmpty(c.Scopes),
		Audience: c.Audience, TLSClientAuth: c.TLSSubject, CreatedAt: rfc3339(c.CreatedAt),
	}
}

func (s *Server) adminListClients(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.authenticateAdmin(r); err != nil {
		return err
	}
	list, err := s.auth.OAuthClients(r.Context())
	if err != nil {
		return err
	}
	out := make([]oauthClientJSON, len(list))
	for i, c := range list {
		out[i] = toOAuthClientJSON(c)
	}
	writeJSON(w, http.StatusOK, map[string]any{"clients": out})
	return nil
}

type createClientRequest struct {
	Name                   string   `json:"name"`
	RedirectURIs           []string `json:"redirect_uris"`
	PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris"`
	Public                 bool     `json:"public"`
	FirstParty             bool     `json:"first_party"`
	Grants                 []string `json:"grants"`
	Scopes                 []string `json:"scopes"`
	Audience               string   `json:"audience"`
	TLSClientAuth          string   `json:"tls_client_auth"`
}

func (s *Server) adminCreateClient(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.authenticateAdmin(r); err != nil {
		return err
	}
	var req createClientRequest
	if _, err := readBody(r, &req, false); err != nil {
		return err
	}
	// "grants": [] is not "grants" left out: the service would take an
	// empty list for the default, which the admin did not ask for.
	if req.Grants != nil && len(req.Grants) == 0 {
		return invalidField("grants", "must name at least one grant, or be left out for authorization_code and refresh_token")
	}
	c, secret, err := s.auth.CreateOAuthClient(r.Context(), auth.OAuthClientInput{
		Name: req.Name, RedirectURIs: req.RedirectURIs, PostLogoutRedirectURIs: req.PostLogoutRedirectURIs,
		Public: req.Public, FirstParty: req.FirstParty, Grants: req.Grants, Scopes: req.Scopes,
		Audience: req.Audience, TLSSubject: req.TLSClientAuth,
	})
	if err != nil {
		return err
	}
	// The secret is shown this once (answers under /admin/ are no-store).
	writeJSON(w, http.StatusCreated, struct {
		Client       oauthClientJSON `json:"client"`
		ClientSecret string          `json:"client_secret,omitempty"`
	}{toOAuthClientJSON(c), secret})
	return nil
}

func (s *Server) adminDeleteClient(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.authenticateAdmin(r); err != nil {
		return err
	}
	if _, err := readBody(r, &struct{}{}, true); err != nil {
		return err
	}
	if err := s.auth.RemoveOAuthClient(r.Context(), r.PathValue("client_id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
