package main

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"strings"

	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

type opConfig struct {
	clientID, clientSecret string
	redirects              []string
	users                  *userStore
	userinfoInIDToken      bool
}

// newProvider is the whole provider: the op (discovery, authorize, token, userinfo, JWKS) on
// "/", the login page under /login/.
func newProvider(issuer string, cfg opConfig) (http.Handler, error) {
	key, err := randomKey()
	if err != nil {
		return nil, err
	}
	clients := map[string]*storage.Client{cfg.clientID: storage.WebClient(cfg.clientID, cfg.clientSecret, cfg.redirects...)}
	st := &claimsStorage{Storage: storage.NewStorageWithClients(cfg.users, clients), idTokenClaims: cfg.userinfoInIDToken}
	provider, err := op.NewProvider(&op.Config{
		CryptoKey:                key,
		CryptoKeyId:              "testop",
		DefaultLogoutRedirectURI: "/",
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		SupportedUILocales:       []language.Tag{language.English},
	}, st, op.StaticIssuer(issuer), op.WithAllowInsecure())
	if err != nil {
		return nil, fmt.Errorf("openid provider: %w", err)
	}
	l := &loginPage{
		storage:    st.Storage,
		provider:   provider,
		callback:   op.AuthCallbackURL(provider),
		interceptr: op.NewIssuerInterceptor(provider.IssuerFromRequest),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login/username", l.show)
	mux.Handle("POST /login/username", l.interceptr.HandlerFunc(l.check))
	mux.HandleFunc("POST /login/cancel", l.cancel)
	// Browsers ask every site for one; a 404 would be a console error in the browser tests.
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.Handle("/", provider)
	return mux, nil
}

// claimsStorage hands out the example storage's clients with the userinfo claims (email,
// email_verified, profile) asserted in the ID token as well, as Google and most providers do;
// the example's web client would put them into userinfo only.
type claimsStorage struct {
	*storage.Storage
	idTokenClaims bool
}

func (s *claimsStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil || !s.idTokenClaims {
		return c, err
	}
	return idTokenClaimsClient{c}, nil
}

type idTokenClaimsClient struct{ op.Client }

func (idTokenClaimsClient) IDTokenUserinfoClaimsAssertion() bool { return true }

// userStore is the example storage's UserStore over the users given by flags.
type userStore struct {
	byID     map[string]*storage.User
	clientID string
}

func (u *userStore) GetUserByID(id string) *storage.User { return u.byID[id] }
func (u *userStore) ExampleClientID() string             { return u.clientID }
func (u *userStore) GetUserByUsername(name string) *storage.User {
	for _, user := range u.byID {
		if user.Username == name {
			return user
		}
	}
	return nil
}

// parseUsers reads -user values, USERNAME:PASSWORD:EMAIL[:unverified]. A user's subject is
// "sub-" followed by the username, stable across restarts.
func parseUsers(specs []string, clientID string) (*userStore, error) {
	u := &userStore{byID: map[string]*storage.User{}, clientID: clientID}
	for _, spec := range specs {
		parts := strings.Split(spec, ":")
		if len(parts) < 3 || len(parts) > 4 || parts[0] == "" || parts[1] == "" || (len(parts) == 4 && parts[3] != "unverified") {
			return nil, fmt.Errorf("-user %q: want USERNAME:PASSWORD:EMAIL[:unverified]", spec)
		}
		id := "sub-" + parts[0]
		if _, dup := u.byID[id]; dup {
			return nil, fmt.Errorf("-user %q: the username is given twice", spec)
		}
		local, _, _ := strings.Cut(parts[2], "@")
		u.byID[id] = &storage.User{
			ID:                id,
			Username:          parts[0],
			Password:          parts[1],
			FirstName:         local,
			LastName:          "Tester",
			Email:             parts[2],
			EmailVerified:     len(parts) == 3,
			PreferredLanguage: language.English,
		}
	}
	return u, nil
}

// loginPage is the provider's own sign-in form, the page a browser test fills in.
type loginPage struct {
	storage    *storage.Storage
	provider   *op.Provider
	callback   func(context.Context, string) string
	interceptr *op.IssuerInterceptor
}

var loginTemplate = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in to Test OP</title></head>
<body>
<h1>Sign in to Test OP</h1>
<form method="post" action="/login/username">
  <input type="hidden" name="id" value="{{.ID}}">
  <p><label for="username">Username</label> <input id="username" name="username" autocomplete="username"></p>
  <p><label for="password">Password</label> <input id="password" name="password" type="password" autocomplete="current-password"></p>
  {{if .Error}}<p id="error" role="alert">{{.Error}}</p>{{end}}
  <p><button type="submit" id="login">Sign in</button></p>
</form>
<form method="post" action="/login/cancel">
  <input type="hidden" name="id" value="{{.ID}}">
  <p><button type="submit" id="cancel">Cancel</button></p>
</form>
</body>
</html>
`))

func (l *loginPage) render(w http.ResponseWriter, id, errMsg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := loginTemplate.Execute(w, struct{ ID, Error string }{id, errMsg}); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

func (l *loginPage) show(w http.ResponseWriter, r *http.Request) {
	l.render(w, r.URL.Query().Get("authRequestID"), "")
}

func (l *loginPage) check(w http.ResponseWriter, r *http.Request) {
	id := r.PostFormValue("id")
	if err := l.storage.CheckUsernamePassword(r.PostFormValue("username"), r.PostFormValue("password"), id); err != nil {
		l.render(w, id, "Wrong username or password.")
		return
	}
	http.Redirect(w, r, l.callback(r.Context(), id), http.StatusFound)
}

// cancel is the user declining at the provider: the client gets error=access_denied at its
// redirect URI, with its state, as from a real consent screen's "Cancel".
func (l *loginPage) cancel(w http.ResponseWriter, r *http.Request) {
	authReq, err := l.storage.AuthRequestByID(r.Context(), r.PostFormValue("id"))
	if err != nil {
		http.Error(w, "unknown sign-in request", http.StatusBadRequest)
		return
	}
	op.AuthRequestError(w, r, authReq, oidc.ErrAccessDenied().WithDescription("the user cancelled the sign-in"), l.provider)
}
