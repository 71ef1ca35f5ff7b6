package httpapi

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/auth"
)

// Handlers of external identity providers (API.md part 2, "External
// identity providers"). The authorize and callback endpoints are browser
// navigations: once redirect_to is known to be allowed, every answer is a
// 302 to it, with the outcome in the fragment (never in the query, so it
// reaches neither server logs nor Referer headers).

// flowCookie holds the sealed flow between authorize and callback. The
// __Host- prefix makes browsers insist on Secure, Path=/ and no Domain, so
// no sibling subdomain can plant one. SameSite=Lax, not Strict: the
// callback is a top-level navigation coming from the provider's site,
// which Strict cookies do not accompany.
const flowCookie = "__Host-gatehouse_idp_flow"

type providerJSON struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
}

func (s *Server) listIdPs(w http.ResponseWriter, r *http.Request) error {
	list, err := s.auth.SignInProviders(r.Context())
	if err != nil {
		return err
	}
	out := make([]providerJSON, len(list))
	for i, p := range list {
		out[i] = providerJSON{Name: p.Name, DisplayName: p.DisplayName}
	}
	writeJSON(w, http.StatusOK, map[string]any{"providers": out})
	return nil
}

func (s *Server) idpAuthorize(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	for _, k := range []string{"redirect_to", "token_transport", "link"} {
		if len(q[k]) > 1 {
			return invalidField(k, "must be given at most once")
		}
	}
	transport, err := parseTransport(q.Get("token_transport"))
	if err != nil {
		return err
	}
	in := auth.AuthorizeInput{Provider: r.PathValue("name"), RedirectTo: q.Get("redirect_to"), Transport: transport}
	switch q.Get("link") {
	case "", "0", "false":
	case "1", "true":
		in.Link = true
		in.LinkSession = s.linkSession(r)
	default:
		return invalidField("link", "must be 1 or absent")
	}
	a, err := s.auth.AuthorizeIdP(r.Context(), in, s.client(r, transport))
	if err != nil {
		return err
	}
	if a.Error != "" {
		redirectWithFragment(w, a.RedirectTo, url.Values{"error": {a.Error}})
		return nil
	}
	http.SetCookie(w, &http.Cookie{
		Name: flowCookie, Value: a.FlowCookie, Path: "/", MaxAge: int((10 * time.Minute).Seconds()),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode,
	})
	w.Header().Set("Location", a.URL)
	w.WriteHeader(http.StatusFound)
	return nil
}

// linkSession is the signed-in session of a link=1 navigation, from its
// refresh cookie. The cookie is SameSite=Strict, so a cross-site page
// cannot start a link in the user's name; a navigation that says it is
// cross-site is refused as well.
func (s *Server) linkSession(r *http.Request) *gatehouse.Session {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return nil
	}
	for _, c := range r.CookiesNamed(refreshCookie) {
		if c.Value == "" {
			continue
		}
		if sess, err := s.auth.SessionFromRefresh(r.Context(), c.Value); err == nil {
			return &sess
		}
	}
	return nil
}

func (s *Server) idpCallback(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	in := auth.CallbackInput{
		Provider: r.PathValue("name"), Code: q.Get("code"), State: q.Get("state"), Error: q.Get("error"),
	}
	for _, k := range []string{"code", "state", "error"} {
		if len(q[k]) > 1 {
			in.State = "" // ambiguous: refused as a bad state
		}
	}
	// Of several flow cookies (only one can be ours), the one whose state
	// matches; the auth layer opens it.
	for _, c := range r.CookiesNamed(flowCookie) {
		in.FlowCookie = c.Value
		if res := s.auth.PeekFlowState(c.Value); res == in.State && res != "" {
			break
		}
	}
	res := s.auth.IdPCallback(r.Context(), in, s.client(r, gatehouse.TransportCookie))
	// The flow is over whatever happened: its cookie goes.
	http.SetCookie(w, &http.Cookie{Name: flowCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
	switch {
	case res.Error != "":
		v := url.Values{"error": {res.Error}}
		if res.MFA != nil {
			v.Set("mfa_token", res.MFA.Token)
			v.Set("methods", strings.Join(res.MFA.Methods, ","))
		}
		redirectWithFragment(w, res.RedirectTo, v)
	case res.LoginCode != "":
		redirectWithFragment(w, res.RedirectTo, url.Values{"login_code": {res.LoginCode}})
	case res.Grant != nil:
		setSessionCookies(w, s.cfg.CSRFKey, res.Grant.Session.ID, res.Grant.RefreshToken, res.Grant.RefreshExpiresAt, time.Now())
		redirectWithFragment(w, res.RedirectTo, nil)
	default: // linked
		redirectWithFragment(w, res.RedirectTo, url.Values{"linked": {in.Provider}})
	}
	return nil
}

// redirectWithFragment answers 302 to base with v as its fragment.
func redirectWithFragment(w http.ResponseWriter, base string, v url.Values) {
	loc := base
	if len(v) > 0 {
		loc += "#" + v.Encode()
	}
	w.Header().Set("Location", loc)
	w.WriteHeader(http.StatusFound)
}

type exchangeRequest struct {
	LoginCode string `json:"login_code"`
}

func (s *Server) idpExchange(w http.ResponseWriter, r *http.Request) error {
	var req exchangeRequest
	if _, err := readBody(r, &req, false); err != nil {
		return err
	}
	if req.LoginCode == "" {
		return invalidField("login_code", "is required")
	}
	g, err := s.auth.ExchangeLoginCode(r.Context(), req.LoginCode, s.client(r, gatehouse.TransportBody))
	if err != nil {
		return err
	}
	s.writeGrant(w, http.StatusOK, g, gatehouse.TransportBody)
	return nil
}

type identityJSON struct {
	ID        string `json:"id"`
	Provider  string `json:"provider"`
	Email     string `json:"email"`
	CreatedAt string `json:"created_at"`
}

func (s *Server) listIdentities(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	list, err := s.auth.Identities(r.Context(), p)
	if err != nil {
		return err
	}
	out := make([]identityJSON, len(list))
	for i, x := range list {
		out[i] = identityJSON{ID: x.ID, Provider: x.Provider, Email: x.Email, CreatedAt: rfc3339(x.CreatedAt)}
	}
	writeJSON(w, http.StatusOK, map[string]any{"identities": out})
	return nil
}

func (s *Server) deleteIdentity(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	if _, err := readBody(r, &struct{}{}, true); err != nil {
		return err
	}
	if err := s.auth.DeleteIdentity(r.Context(), p, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// --- admin ----------------------------------------------------------------

type adminProviderJSON struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	DisplayName string   `json:"display_name"`
	Issuer      string   `json:"issuer"`
	ClientID    string   `json:"client_id"`
	Scopes      []string `json:"scopes"`
	AuthURL     string   `json:"auth_url,omitempty"`
	TokenURL    string   `json:"token_url,omitempty"`
	UserinfoURL string   `json:"userinfo_url,omitempty"`
	Signup      bool     `json:"signup"`
	RedirectURI string   `json:"redirect_uri"`
	CreatedAt   string   `json:"created_at"`
	UpdatedAt   string   `json:"updated_at"`
}

func (s *Server) toAdminProvider(p gatehouse.IdentityProvider) adminProviderJSON {
	scopes := p.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return adminProviderJSON{
		Name: p.Name, Kind: string(p.Kind), DisplayName: p.DisplayName, Issuer: p.Issuer, ClientID: p.ClientID,
		Scopes: scopes, AuthURL: p.AuthURL, TokenURL: p.TokenURL, UserinfoURL: p.UserinfoURL,
		Signup: !p.NoSignup, RedirectURI: s.auth.IdPRedirectURI(p.Name),
		CreatedAt: rfc3339(p.CreatedAt), UpdatedAt: rfc3339(p.UpdatedAt),
	}
}

func (s *Server) adminListIdPs(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.authenticateAdmin(r); err != nil {
		return err
	}
	list, err := s.auth.Providers(r.Context())
	if err != nil {
		return err
	}
	out := make([]adminProviderJSON, len(list))
	for i, p := range list {
		out[i] = s.toAdminProvider(p)
	}
	writeJSON(w, http.StatusOK, map[string]any{"providers": out})
	return nil
}

type putProviderRequest struct {
	Preset       string   `json:"preset"`
	DisplayName  string   `json:"display_name"`
	Issuer       string   `json:"issuer"`
	ClientID     string   `json:"client_id"`
	ClientSecret *string  `json:"client_secret"`
	Scopes       []string `json:"scopes"`
	AuthURL      string   `json:"auth_url"`
	TokenURL     string   `json:"token_url"`
	UserinfoURL  string   `json:"userinfo_url"`
	Signup       *bool    `json:"signup"`
}

func (s *Server) adminPutIdP(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.authenticateAdmin(r); err != nil {
		return err
	}
	var req putProviderRequest
	if _, err := readBody(r, &req, false); err != nil {
		return err
	}
	p, created, err := s.auth.PutProvider(r.Context(), r.PathValue("name"), auth.ProviderInput{
		Preset: req.Preset, DisplayName: req.DisplayName, Issuer: req.Issuer, ClientID: req.ClientID,
		ClientSecret: req.ClientSecret, Scopes: req.Scopes, AuthURL: req.AuthURL, TokenURL: req.TokenURL,
		UserinfoURL: req.UserinfoURL, NoSignup: req.Signup != nil && !*req.Signup,
	})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, map[string]any{"provider": s.toAdminProvider(p)})
	return nil
}

func (s *Server) adminDeleteIdP(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.authenticateAdmin(r); err != nil {
		return err
	}
	if _, err := readBody(r, &struct{}{}, true); err != nil {
		return err
	}
	if err := s.auth.DeleteProvider(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
