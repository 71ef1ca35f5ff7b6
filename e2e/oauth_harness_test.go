package e2e

// Helpers for the tests of Gatehouse as an OAuth 2.1 / OpenID provider
// (oauth_*_test.go). The tests play three parties against the real binary:
//
//   - the relying party, through golang.org/x/oauth2 (PKCE, code exchange,
//     refresh) and github.com/coreos/go-oidc/v3 (discovery, ID token and
//     userinfo), whose HTTP requests go through the harness's validating
//     transport like every other request of the suite;
//   - the user, who signs in through Gatehouse's JSON API and plays the
//     account page: GET /oauth2/authorize without following redirects,
//     then POST /oauth2/authorize/continue with the Gatehouse access token;
//   - the administrator, who registers clients with `gatehouse client create`
//     against the server's database.
//
// The /oauth2/* endpoints answer errors in the OAuth form
// {"error","error_description"}, not as problem details, so their answers
// are checked by oauthSend instead of the harness's checkCommon.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Redirect URIs of the test relying parties: never visited, only parsed.
const (
	oauthRedirect   = "https://rp.e2e.test/callback"
	oauthPostLogout = "https://rp.e2e.test/logged-out"
)

// oauthEnv is one deployment: a single instance on SQLite, or two instances
// (a and b) sharing a PostgreSQL database, a Redis and a master key.
type oauthEnv struct {
	backend string
	a, b    *server // b is nil on SQLite
	db      string  // --database of the servers and the CLI
	key     string  // --master-key ("" on SQLite: the key file sits beside the database)
	issuer  string  // from the discovery document
	// inspector introspects the tokens of clients without a secret.
	inspector *oauthRP
}

// oauthStart starts the deployment of backend with extra serve flags.
func oauthStart(t *testing.T, backend string, extra ...string) *oauthEnv {
	t.Helper()
	e := &oauthEnv{backend: backend}
	if backend == "postgres" {
		c, _ := prodNewCluster(t)
		e.a = c.start(t, extra...)
		e.b = c.start(t, extra...)
		e.db, e.key = c.dbURL, c.key
	} else {
		e.a = startServer(t, extra...)
		e.db = "sqlite:" + e.a.dbPath
	}
	e.issuer = oauthIssuer(t, e.a)
	return e
}

// instances are the running instances (one or two).
func (e *oauthEnv) instances() []*server {
	if e.b == nil {
		return []*server{e.a}
	}
	return []*server{e.a, e.b}
}

// other is the second instance when there is one, else a.
func (e *oauthEnv) other() *server {
	if e.b != nil {
		return e.b
	}
	return e.a
}

// oauthIssuer reads the issuer from s's discovery document.
func oauthIssuer(t *testing.T, s *server) string {
	t.Helper()
	r := s.do(t, "GET", "/.well-known/openid-configuration", nil)
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	iss, _ := r.JSON()["issuer"].(string)
	if iss == "" {
		t.Fatalf("%s: no issuer", r)
	}
	return iss
}

// cliArgs are the database flags the CLI needs to reach the servers' data.
func (e *oauthEnv) cliArgs() []string {
	a := []string{"--database", e.db}
	if e.key != "" {
		a = append(a, "--master-key", e.key)
	}
	return a
}

// admin creates an administrator with the CLI and signs it in on a.
func (e *oauthEnv) admin(t *testing.T) *device {
	t.Helper()
	email, pw := "admin-"+newEmail(), newPassword()
	args := append([]string{"user", "create", "--email", email, "--role", "admin"}, e.cliArgs()...)
	if res := runCLI(t, pw+"\n", nil, args...); res.code != 0 {
		t.Fatalf("gatehouse user create: exit %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	return e.a.login(t, email, pw, true)
}

// oauthRP is a registered client and what the tests know about it.
type oauthRP struct {
	env    *oauthEnv
	name   string
	id     string
	secret string // "" for public and certificate-authenticated clients
	public bool
}

// createClient registers a client with `gatehouse client create` and checks
// its one-line JSON answer.
func (e *oauthEnv) createClient(t *testing.T, name string, args ...string) *oauthRP {
	t.Helper()
	all := append([]string{"client", "create", "--name", name}, args...)
	all = append(all, e.cliArgs()...)
	res := runCLI(t, "", nil, all...)
	if res.code != 0 {
		t.Fatalf("gatehouse %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(all, " "), res.code, res.stdout, res.stderr)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(res.stdout)), &out); err != nil {
		t.Fatalf("gatehouse client create: stdout is not one JSON object: %q", res.stdout)
	}
	rp := &oauthRP{env: e, name: name, public: slices.Contains(args, "--public")}
	rp.id, _ = out["client_id"].(string)
	rp.secret, _ = out["client_secret"].(string)
	if !strings.HasPrefix(rp.id, "gh_client_") {
		t.Errorf("gatehouse client create: client_id %q, want gh_client_...", rp.id)
	}
	certOnly := slices.Contains(args, "--tls-client-auth")
	switch {
	case (rp.public || certOnly) && rp.secret != "":
		t.Errorf("gatehouse client create %v: a client_secret was issued to a client without one", args)
	case !rp.public && !certOnly && rp.secret == "":
		t.Fatalf("gatehouse client create %v: no client_secret for a confidential client: %q", args, res.stdout)
	}
	return rp
}

// webClient registers a client for the code flow with the test's redirect
// and post-logout URIs (confidential unless args say --public).
func (e *oauthEnv) webClient(t *testing.T, name string, args ...string) *oauthRP {
	t.Helper()
	all := append([]string{"--redirect-uri", oauthRedirect, "--post-logout-redirect-uri", oauthPostLogout}, args...)
	return e.createClient(t, name, all...)
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

// oauthRoute sends the requests for the issuer's host to one instance: on
// PostgreSQL the instances share an issuer (https://auth.e2e.test) that
// names no listener, as behind a load balancer. The harness's validating
// transport of that instance does the rest.
type oauthRoute struct {
	t      *testing.T
	to     *server
	issuer *url.URL
}

func (rt *oauthRoute) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(withTest(req.Context(), rt.t))
	if rt.issuer != nil && r.URL.Host == rt.issuer.Host {
		target, _ := url.Parse(rt.to.base)
		r.URL.Scheme, r.URL.Host, r.Host = target.Scheme, target.Host, ""
	}
	return rt.to.hc.Transport.RoundTrip(r)
}

// oauthHTTP is an http.Client for the libraries speaking to instance s on
// behalf of test t; it never follows redirects.
func (e *oauthEnv) oauthHTTP(t *testing.T, s *server) *http.Client {
	iss, _ := url.Parse(e.issuer)
	return &http.Client{
		Transport: &oauthRoute{t: t, to: s, issuer: iss},
		Timeout:   20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// ctx is a context for x/oauth2 and go-oidc talking to s for t, bounded in
// time. It is cancelled when t ends.
func (e *oauthEnv) ctx(t *testing.T, s *server) context.Context {
	hc := e.oauthHTTP(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	ctx = context.WithValue(ctx, oauth2.HTTPClient, hc)
	return oidc.ClientContext(ctx, hc)
}

// basic is client_secret_basic (RFC 6749 2.3.1: both parts form-encoded).
func basic(id, secret string) reqOpt {
	return func(r *http.Request) { r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret)) }
}

// oauthSend sends one request with hc to base+path and checks what holds for
// every answer: the security headers, no server error, and errors of the
// /oauth2/* endpoints in the OAuth form; other paths get the harness's
// checks. body is nil, url.Values (a form) or anything else (JSON).
func oauthSend(t *testing.T, hc *http.Client, base, method, path string, body any, opts ...reqOpt) *resp {
	t.Helper()
	var rd io.Reader
	ct := ""
	desc := method + " " + path
	switch b := body.(type) {
	case nil:
	case url.Values:
		rd, ct = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
		desc += " form=" + abbrevForm(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		rd, ct = bytes.NewReader(j), "application/json"
		desc += " body=" + abbrev(string(j))
	}
	req, err := http.NewRequestWithContext(withTest(context.Background(), t), method, base+path, rd)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("User-Agent", "gatehouse-e2e-oauth")
	for _, o := range opts {
		o(req)
	}
	if v := req.Header.Get("Authorization"); v != "" {
		desc += " [Authorization: " + abbrev(v) + "]"
	}
	hr, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", desc, err)
	}
	defer hr.Body.Close()
	b, err := io.ReadAll(hr.Body)
	if err != nil {
		t.Fatalf("%s: reading body: %v", desc, err)
	}
	r := &resp{req: desc, Status: hr.StatusCode, Header: hr.Header, Body: b}
	for _, line := range hr.Header.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(line); err == nil {
			r.SetCookies = append(r.SetCookies, c)
		}
	}
	if strings.HasPrefix(path, "/oauth2/") {
		oauthCheck(t, r)
	} else {
		checkCommon(t, r)
	}
	return r
}

func abbrevForm(f url.Values) string {
	var parts []string
	for k := range f {
		parts = append(parts, k+"="+abbrev(f.Get(k)))
	}
	slices.Sort(parts)
	return strings.Join(parts, "&")
}

// oauthDo sends one request to instance s.
func oauthDo(t *testing.T, s *server, method, path string, body any, opts ...reqOpt) *resp {
	t.Helper()
	return oauthSend(t, s.hc, s.base, method, path, body, opts...)
}

// oauthCheck asserts what every answer of an /oauth2/* endpoint must be.
func oauthCheck(t *testing.T, r *resp) {
	t.Helper()
	if got := r.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options = %q, want nosniff", r.req, got)
	}
	if got := r.Header.Get("Referrer-Policy"); got != "no-referrer" {
		t.Errorf("%s: Referrer-Policy = %q, want no-referrer", r.req, got)
	}
	if r.Status >= 500 && r.Status != http.StatusServiceUnavailable {
		t.Errorf("%s: server error", r)
	}
	if r.Status < 400 {
		return
	}
	lower := strings.ToLower(string(r.Body))
	for _, leak := range []string{"goroutine ", ".go:", "sqlite", "sql:", "pgx", "runtime error", "nil pointer"} {
		if strings.Contains(lower, leak) {
			t.Errorf("%s: error body leaks internals (%q)", r, leak)
		}
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		// The authorization endpoint may answer a person with a page.
		if !strings.HasPrefix(r.req, "GET /oauth2/authorize") && !strings.HasPrefix(r.req, "GET /oauth2/logout") {
			t.Errorf("%s: error Content-Type = %q, want application/json", r, ct)
		}
		return
	}
	m := r.JSON()
	if e, _ := m["error"].(string); e == "" {
		t.Errorf("%s: an OAuth error without an error member", r)
	}
	if _, ok := m["code"]; ok {
		t.Errorf("%s: an OAuth error in problem form (code member)", r)
	}
}

// oauthErr is the error member of an OAuth error answer.
func oauthErr(r *resp) string {
	s, _ := r.JSON()["error"].(string)
	return s
}

// expectOAuthErr asserts an OAuth error answer with one of statuses and
// error code want.
func expectOAuthErr(t *testing.T, r *resp, want string, statuses ...int) bool {
	t.Helper()
	if !slices.Contains(statuses, r.Status) || oauthErr(r) != want {
		t.Errorf("%s\n\twant status in %v with error %q", r, statuses, want)
		return false
	}
	return true
}

// expectTokenErr asserts a token endpoint error (400, or 401 for a failed
// client authentication).
func expectTokenErr(t *testing.T, r *resp, want string) bool {
	t.Helper()
	statuses := []int{http.StatusBadRequest}
	if want == "invalid_client" {
		statuses = append(statuses, http.StatusUnauthorized)
	}
	return expectOAuthErr(t, r, want, statuses...)
}

// ---------------------------------------------------------------------------
// The relying party's requests
// ---------------------------------------------------------------------------

// auth adds the client's authentication to a token, introspection or
// revocation request: client_secret_basic, or client_id alone for a public
// or certificate-authenticated client.
func (rp *oauthRP) auth(form url.Values) []reqOpt {
	if rp.secret == "" {
		form.Set("client_id", rp.id)
		return nil
	}
	return []reqOpt{basic(rp.id, rp.secret)}
}

// token posts form to /oauth2/token on s with the client's authentication.
func (rp *oauthRP) token(t *testing.T, s *server, form url.Values) *resp {
	t.Helper()
	opts := rp.auth(form)
	return oauthDo(t, s, "POST", "/oauth2/token", form, opts...)
}

// refresh redeems a refresh token explicitly.
func (rp *oauthRP) refresh(t *testing.T, s *server, rt string) *resp {
	t.Helper()
	return rp.token(t, s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
}

// exchange redeems a code explicitly.
func (rp *oauthRP) exchange(t *testing.T, s *server, code, verifier string) *resp {
	t.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {oauthRedirect}}
	if verifier != "" {
		form.Set("code_verifier", verifier)
	}
	return rp.token(t, s, form)
}

// introspect asks s about tok (the client must have a secret) and returns
// the answer, which must be 200.
func (rp *oauthRP) introspect(t *testing.T, s *server, tok string) map[string]any {
	t.Helper()
	r := oauthDo(t, s, "POST", "/oauth2/introspect", url.Values{"token": {tok}}, basic(rp.id, rp.secret))
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	m := r.JSON()
	if _, ok := m["active"].(bool); !ok {
		t.Fatalf("%s: no boolean active", r)
	}
	if m["active"] == false && len(m) != 1 {
		t.Errorf("%s: an inactive token must answer {\"active\":false} alone", r)
	}
	return m
}

// active reports introspection's verdict on tok, asked by the client
// itself, or by the environment's inspector for a client without a secret.
func (rp *oauthRP) active(t *testing.T, s *server, tok string) bool {
	t.Helper()
	in := rp
	if rp.secret == "" {
		if in = rp.env.inspector; in == nil {
			t.Fatalf("client %s has no secret and the environment no inspector", rp.name)
		}
	}
	return in.introspect(t, s, tok)["active"] == true
}

// revoke posts tok to /oauth2/revoke on s and expects 200.
func (rp *oauthRP) revoke(t *testing.T, s *server, tok string) {
	t.Helper()
	form := url.Values{"token": {tok}}
	opts := rp.auth(form)
	expect(t, oauthDo(t, s, "POST", "/oauth2/revoke", form, opts...), http.StatusOK, "")
}

// userinfo calls GET /oauth2/userinfo on s with tok.
func userinfo(t *testing.T, s *server, tok string) *resp {
	t.Helper()
	return oauthDo(t, s, "GET", "/oauth2/userinfo", nil, bearer(tok))
}

// config is the x/oauth2 configuration of the client with s's endpoints.
func (rp *oauthRP) config(s *server, scopes ...string) *oauth2.Config {
	style := oauth2.AuthStyleInHeader
	if rp.secret == "" {
		style = oauth2.AuthStyleInParams
	}
	return &oauth2.Config{
		ClientID:     rp.id,
		ClientSecret: rp.secret,
		RedirectURL:  oauthRedirect,
		Scopes:       scopes,
		Endpoint: oauth2.Endpoint{
			AuthURL:   s.base + "/oauth2/authorize",
			TokenURL:  s.base + "/oauth2/token",
			AuthStyle: style,
		},
	}
}

// ---------------------------------------------------------------------------
// The user's part: authorize and continue
// ---------------------------------------------------------------------------

// oauthAuthz is one authorization request of a client.
type oauthAuthz struct {
	rp       *oauthRP
	scopes   []string
	state    string
	nonce    string
	verifier string
}

// newAuthz prepares an authorization request with fresh state, nonce and
// PKCE verifier.
func (rp *oauthRP) newAuthz(scopes ...string) *oauthAuthz {
	return &oauthAuthz{rp: rp, scopes: scopes, state: "st-" + randHex(8), nonce: "n-" + randHex(8), verifier: oauth2.GenerateVerifier()}
}

// url is the authorization request's path and query on s, as x/oauth2
// builds it with S256 PKCE and the nonce.
func (a *oauthAuthz) url(s *server) string {
	u := a.rp.config(s, a.scopes...).AuthCodeURL(a.state, oauth2.S256ChallengeOption(a.verifier), oidc.Nonce(a.nonce))
	return strings.TrimPrefix(u, s.base)
}

// oauthAuthorize sends GET /oauth2/authorize?query to s.
func oauthAuthorize(t *testing.T, s *server, query url.Values) *resp {
	t.Helper()
	return oauthDo(t, s, "GET", "/oauth2/authorize?"+query.Encode(), nil)
}

// start sends the authorization request to s and returns the pending
// request id of the account page's URL.
func (a *oauthAuthz) start(t *testing.T, s *server) string {
	t.Helper()
	r := oauthDo(t, s, "GET", a.url(s), nil)
	return oauthPending(t, r)
}

// oauthPending asserts a 302 to the account page and returns its
// oauth_request.
func oauthPending(t *testing.T, r *resp) string {
	t.Helper()
	if r.Status != http.StatusFound {
		t.Fatalf("%s: want 302 to the account page", r)
	}
	loc, err := url.Parse(r.Header.Get("Location"))
	if err != nil {
		t.Fatalf("%s: Location %q: %v", r.req, r.Header.Get("Location"), err)
	}
	if loc.Path != "/account" {
		t.Errorf("%s: Location %q, want <public-url>/account?oauth_request=...", r.req, loc)
	}
	id := loc.Query().Get("oauth_request")
	if id == "" {
		t.Fatalf("%s: Location %q has no oauth_request", r.req, loc)
	}
	return id
}

// oauthContinue posts the account page's continue call to s with the
// user's Gatehouse access token; consent is nil (absent), true or false.
func oauthContinue(t *testing.T, s *server, access, reqID string, consent *bool) *resp {
	t.Helper()
	body := map[string]any{"oauth_request": reqID}
	if consent != nil {
		body["consent"] = *consent
	}
	var opts []reqOpt
	if access != "" {
		opts = append(opts, bearer(access))
	}
	return oauthDo(t, s, "POST", "/oauth2/authorize/continue", body, opts...)
}

var (
	yes = func() *bool { b := true; return &b }()
	no  = func() *bool { b := false; return &b }()
)

// oauthRedirectTo asserts r is 200 {"redirect"} to the registered redirect
// URI and returns the redirect's query.
func oauthRedirectTo(t *testing.T, r *resp) url.Values {
	t.Helper()
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	raw, _ := r.JSON()["redirect"].(string)
	return oauthAtRedirect(t, r.req, raw)
}

// oauthAtRedirect parses a redirect that must go to the registered
// redirect URI and returns its query.
func oauthAtRedirect(t *testing.T, what, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || raw == "" {
		t.Fatalf("%s: redirect %q is not a URL", what, raw)
	}
	if u.Fragment != "" {
		t.Errorf("%s: redirect %q has a fragment; response_mode query puts everything in the query", what, raw)
	}
	if base := u.Scheme + "://" + u.Host + u.Path; base != oauthRedirect {
		t.Fatalf("%s: redirect %q, want it at %s", what, raw, oauthRedirect)
	}
	return u.Query()
}

// code completes the authorization of a for the signed-in user (whose
// Gatehouse access token is access) and returns the code. consent is sent
// as given.
func (a *oauthAuthz) code(t *testing.T, s *server, access string, consent *bool) string {
	t.Helper()
	id := a.start(t, s)
	q := oauthRedirectTo(t, oauthContinue(t, s, access, id, consent))
	if q.Get("state") != a.state {
		t.Errorf("redirect state %q, want %q", q.Get("state"), a.state)
	}
	if q.Get("error") != "" {
		t.Fatalf("redirect carries error=%s (%s)", q.Get("error"), q.Get("error_description"))
	}
	c := q.Get("code")
	if c == "" {
		t.Fatalf("redirect %v has no code", q)
	}
	return c
}

// ---------------------------------------------------------------------------
// Results of a code flow
// ---------------------------------------------------------------------------

// oauthLogin is a completed code flow.
type oauthLogin struct {
	authz   *oauthAuthz
	tok     *oauth2.Token
	rawID   string
	idToken *oidc.IDToken
	claims  map[string]any // the ID token's claims
	access  map[string]any // the access token's claims (unverified)
}

// login runs the whole flow for user on s: authorize, continue (consent as
// given), exchange through x/oauth2 with the verifier, and, when openid was
// asked, verification of the ID token with go-oidc (iss, aud, exp,
// signature, nonce, at_hash).
func (rp *oauthRP) login(t *testing.T, s *server, user *device, consent *bool, scopes ...string) *oauthLogin {
	t.Helper()
	a := rp.newAuthz(scopes...)
	return rp.finish(t, s, a, a.code(t, s, user.Access(), consent))
}

// finish redeems the code of authorization a on s through x/oauth2 and
// checks the answer (see login).
func (rp *oauthRP) finish(t *testing.T, s *server, a *oauthAuthz, code string) *oauthLogin {
	t.Helper()
	scopes := a.scopes
	ctx := rp.env.ctx(t, s)
	tok, err := rp.config(s, scopes...).Exchange(ctx, code, oauth2.VerifierOption(a.verifier))
	if err != nil {
		t.Fatalf("exchange of the code by x/oauth2: %v", err)
	}
	l := &oauthLogin{authz: a, tok: tok}
	if tok.TokenType != "Bearer" {
		t.Errorf("token_type %q, want Bearer", tok.TokenType)
	}
	if tok.ExpiresIn <= 0 {
		t.Errorf("expires_in %d, want > 0", tok.ExpiresIn)
	}
	l.access = oauthJWT(t, "access token", tok.AccessToken)
	if got, _ := tok.Extra("scope").(string); !sameScopes(got, scopes) {
		t.Errorf("token response scope %q, want %q", got, strings.Join(scopes, " "))
	}
	wantRefresh := slices.Contains(scopes, "offline_access")
	if (tok.RefreshToken != "") != wantRefresh {
		t.Errorf("refresh_token present = %v with scopes %v, want %v", tok.RefreshToken != "", scopes, wantRefresh)
	}
	l.rawID, _ = tok.Extra("id_token").(string)
	if !slices.Contains(scopes, "openid") {
		if l.rawID != "" {
			t.Errorf("an id_token without the openid scope")
		}
		return l
	}
	if l.rawID == "" {
		t.Fatalf("no id_token with scope openid")
	}
	l.idToken = rp.verifyID(t, s, l.rawID)
	if l.idToken.Nonce != a.nonce {
		t.Errorf("ID token nonce %q, want %q", l.idToken.Nonce, a.nonce)
	}
	if l.idToken.AccessTokenHash == "" {
		t.Errorf("ID token has no at_hash")
	} else if err := l.idToken.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Errorf("at_hash does not match the access token: %v", err)
	}
	if err := l.idToken.Claims(&l.claims); err != nil {
		t.Fatalf("ID token claims: %v", err)
	}
	return l
}

// verifyID verifies an ID token of the client with go-oidc, discovering
// the provider through instance s.
func (rp *oauthRP) verifyID(t *testing.T, s *server, raw string) *oidc.IDToken {
	t.Helper()
	ctx := rp.env.ctx(t, s)
	p := rp.env.provider(t, s)
	id, err := p.Verifier(&oidc.Config{ClientID: rp.id}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("go-oidc refused the ID token: %v", err)
	}
	return id
}

// provider is go-oidc's view of the issuer, reached through s.
func (e *oauthEnv) provider(t *testing.T, s *server) *oidc.Provider {
	t.Helper()
	p, err := oidc.NewProvider(e.ctx(t, s), e.issuer)
	if err != nil {
		t.Fatalf("go-oidc discovery of %s through %s: %v", e.issuer, s.base, err)
	}
	return p
}

// sid is the session of the login, from its access token.
func (l *oauthLogin) sid() string {
	s, _ := l.access["sid"].(string)
	return s
}

// sameScopes compares a space-separated scope string to a list, in any order.
func sameScopes(got string, want []string) bool {
	g := strings.Fields(got)
	w := slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	return slices.Equal(g, w)
}

// oauthJWT decodes a compact JWS's payload without verifying it, and
// checks that it is one.
func oauthJWT(t *testing.T, what, tok string) map[string]any {
	t.Helper()
	if strings.Count(tok, ".") != 2 {
		t.Fatalf("%s %q is not a compact JWS", what, abbrev(tok))
	}
	return atkDecodeSeg(t, strings.Split(tok, ".")[1])
}

// oauthJWTHeader decodes a compact JWS's header.
func oauthJWTHeader(t *testing.T, tok string) map[string]any {
	t.Helper()
	return atkDecodeSeg(t, strings.Split(tok, ".")[0])
}

// strs reads a JSON array of strings (nil if it is not one).
func strs(v any) []string {
	arr, ok := v.([]any)
	if !ok {
		return nil
	}
	var out []string
	for _, x := range arr {
		s, ok := x.(string)
		if !ok {
			return nil
		}
		out = append(out, s)
	}
	return out
}

// audContains reports whether a JWT aud claim (string or array) holds want.
func audContains(aud any, want string) bool {
	switch v := aud.(type) {
	case string:
		return v == want
	default:
		return slices.Contains(strs(v), want)
	}
}

// oauthAwait polls check every 50 ms for up to limit and fails with what
// when it never holds.
func oauthAwait(t *testing.T, what string, limit time.Duration, check func() bool) {
	t.Helper()
	start := time.Now()
	for {
		if check() {
			t.Logf("%s: after %v", what, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > limit {
			t.Errorf("%s: not within %v", what, limit)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mustDie asserts that a login's tokens are dead on s: the refresh
// token is refused (invalid_grant), the access token fails userinfo and
// introspection says inactive.
func (rp *oauthRP) mustDie(t *testing.T, s *server, what string, l *oauthLogin) {
	t.Helper()
	if l.tok.RefreshToken != "" {
		if r := rp.refresh(t, s, l.tok.RefreshToken); !expectTokenErr(t, r, "invalid_grant") {
			t.Errorf("  ^ %s: the refresh token should be dead", what)
		}
	}
	rp.accessDead(t, s, what, l.tok.AccessToken)
}

// accessDead asserts an access token fails userinfo and is inactive.
func (rp *oauthRP) accessDead(t *testing.T, s *server, what, access string) {
	t.Helper()
	if r := userinfo(t, s, access); r.Status != http.StatusUnauthorized {
		t.Errorf("%s: userinfo with the dead access token: %s, want 401", what, r)
	}
	if rp.active(t, s, access) {
		t.Errorf("%s: introspection says the access token is still active", what)
	}
}

// accessLive asserts that the access token works at userinfo and is active.
func (rp *oauthRP) accessLive(t *testing.T, s *server, what, access string) {
	t.Helper()
	if r := userinfo(t, s, access); r.Status != http.StatusOK {
		t.Errorf("%s: userinfo: %s, want 200", what, r)
	}
	if !rp.active(t, s, access) {
		t.Errorf("%s: introspection says the access token is inactive", what)
	}
}

// oauthTry sends a form to s without failing the test on a transport
// error, for use from many goroutines; the answer is still validated.
func oauthTry(t *testing.T, s *server, path string, form url.Values, opts ...reqOpt) (int, map[string]any, error) {
	req, err := http.NewRequestWithContext(withTest(context.Background(), t), "POST", s.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, o := range opts {
		o(req)
	}
	res, err := s.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return res.StatusCode, nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return res.StatusCode, nil, fmt.Errorf("%s: body %q is not a JSON object", path, abbrevBody(b))
	}
	return res.StatusCode, m, nil
}
