package e2e

// Helpers for the external identity provider tests (idp_*_test.go): a real
// OpenID provider in the test process (mockoidc: discovery, JWKS, the code
// flow with PKCE and nonce, single-use codes), with a middleware that can
// take it down, slow it, count its key-set fetches, or replace the ID token
// it issues by one the test forges (other aud, iss, exp, nonce, alg none,
// a key not in its JWKS); and a browser-like device that follows the
// redirects between Gatehouse and the provider.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5"
	"github.com/oauth2-proxy/mockoidc"
)

const idpFlowCookie = "__Host-gatehouse_idp_flow"

// idpOP is a running OpenID provider of one test.
type idpOP struct {
	m *mockoidc.MockOIDC

	mu sync.Mutex
	// forge, when set, replaces the ID token of the token endpoint's
	// answers: it gets the real token's claims and returns another token.
	forge func(claims map[string]any) string
	// keys, when set, is the JWKS served instead of the real one.
	keys *jose.JSONWebKeySet

	jwksHits atomic.Int64
	delay    atomic.Int64 // nanoseconds added before every answer
	down     atomic.Bool  // answer 503 to everything
}

// idpStartOP starts a provider on a free loopback port for this test.
func idpStartOP(t *testing.T) *idpOP {
	t.Helper()
	m, err := mockoidc.NewServer(nil)
	if err != nil {
		t.Fatalf("mockoidc: %v", err)
	}
	if _, err := m.Keypair.KeyID(); err != nil { // computed once, before any request races on it
		t.Fatalf("mockoidc key id: %v", err)
	}
	o := &idpOP{m: m}
	if err := m.AddMiddleware(o.middleware); err != nil {
		t.Fatalf("mockoidc middleware: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	if err := m.Start(ln, nil); err != nil {
		t.Fatalf("mockoidc start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Server.Shutdown(ctx)
	})
	return o
}

func (o *idpOP) Issuer() string { return o.m.Issuer() }

// queue makes the next authorization sign in this user.
func (o *idpOP) queue(sub, email string, verified bool) {
	o.m.QueueUser(&mockoidc.MockUser{Subject: sub, Email: email, EmailVerified: verified, PreferredUsername: "idp-user"})
}

func (o *idpOP) setForge(f func(map[string]any) string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.forge = f
}

func (o *idpOP) setKeys(k *jose.JSONWebKeySet) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.keys = k
}

func (o *idpOP) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The browser's visit to the authorization endpoint is never
		// slowed: the faults are in what Gatehouse asks of the provider.
		if d := o.delay.Load(); d > 0 && r.URL.Path != mockoidc.AuthorizationEndpoint {
			select {
			case <-time.After(time.Duration(d)):
			case <-r.Context().Done():
				return
			}
		}
		if o.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		o.mu.Lock()
		forge, keys := o.forge, o.keys
		o.mu.Unlock()
		switch {
		case r.URL.Path == mockoidc.JWKSEndpoint:
			o.jwksHits.Add(1)
			if keys != nil {
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(keys)
				return
			}
		case r.URL.Path == mockoidc.TokenEndpoint && forge != nil:
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			var body map[string]any
			if rec.Code == http.StatusOK && json.Unmarshal(rec.Body.Bytes(), &body) == nil {
				if raw, ok := body["id_token"].(string); ok {
					body["id_token"] = forge(idpClaimsOf(raw))
				}
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(body)
				return
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			return
		}
		next.ServeHTTP(w, r)
	})
}

// idpClaimsOf reads the payload of a compact JWS without verifying it.
func idpClaimsOf(tok string) map[string]any {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// idpSign signs claims with key under kid (RS256).
func idpSign(t *testing.T, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatalf("signer: %v", err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return s
}

// idpOPSign signs claims with the provider's own key, as it would.
func (o *idpOP) sign(t *testing.T, claims map[string]any) string {
	t.Helper()
	kid, _ := o.m.Keypair.KeyID()
	return idpSign(t, o.m.Keypair.PrivateKey, kid, claims)
}

func idpRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("rsa: %v", err)
	}
	return k
}

// --- configuration ------------------------------------------------------------

// idpAdd registers the provider with `gatehouse idp add` against env's
// database (the running server reads it at the next sign-in).
func idpAdd(t *testing.T, env *hrEnv, name string, extra ...string) cliResult {
	t.Helper()
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(idpSecretFor(t, extra)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"idp", "add", name, "--database", env.db, "--client-secret-file", secretFile}
	if env.key != "" {
		args = append(args, "--master-key", env.key)
	}
	args = append(args, idpWithoutSecret(extra)...)
	res := runCLI(t, "", nil, args...)
	if res.code != 0 {
		t.Fatalf("gatehouse idp add %s: exit %d\nstdout: %s\nstderr: %s", name, res.code, res.stdout, res.stderr)
	}
	return res
}

// idpSecret is a pseudo-flag of idpAdd's extra arguments carrying the
// client secret, which the CLI reads from a file.
const idpSecret = "--secret="

func idpSecretFor(t *testing.T, extra []string) string {
	for _, a := range extra {
		if strings.HasPrefix(a, idpSecret) {
			return strings.TrimPrefix(a, idpSecret)
		}
	}
	t.Fatal("idpAdd needs " + idpSecret + "...")
	return ""
}

func idpWithoutSecret(extra []string) []string {
	var out []string
	for _, a := range extra {
		if !strings.HasPrefix(a, idpSecret) {
			out = append(out, a)
		}
	}
	return out
}

// addOP registers op as provider name.
func (o *idpOP) addTo(t *testing.T, env *hrEnv, name string, extra ...string) {
	t.Helper()
	args := append([]string{"--issuer", o.Issuer(), "--client-id", o.m.ClientID, idpSecret + o.m.ClientSecret}, extra...)
	idpAdd(t, env, name, args...)
}

// idpSQL runs a statement on the server's database (? placeholders are
// rewritten for PostgreSQL) and returns the rows it changed.
func idpSQL(t *testing.T, env *hrEnv, query string, args ...any) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if env.backend == "postgres" {
		n := 0
		pg := ""
		for _, r := range query {
			if r == '?' {
				n++
				pg += fmt.Sprintf("$%d", n)
				continue
			}
			pg += string(r)
		}
		conn, err := pgx.Connect(ctx, env.db)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer conn.Close(context.Background())
		tag, err := conn.Exec(ctx, pg, args...)
		if err != nil {
			t.Fatalf("%s: %v", pg, err)
		}
		return tag.RowsAffected()
	}
	db, err := sql.Open("sqlite", "file:"+env.s.dbPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatalf("open %s: %v", env.s.dbPath, err)
	}
	defer db.Close()
	res, err := db.ExecContext(ctx, query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	n, _ := res.RowsAffected()
	return n
}

// idpVerify marks a local account's email verified in the database (as a
// verification link would).
func idpVerify(t *testing.T, env *hrEnv, userID string) {
	t.Helper()
	v := any(1)
	if env.backend == "postgres" {
		v = true
	}
	if n := idpSQL(t, env, `UPDATE users SET email_verified = ? WHERE id = ?`, v, userID); n != 1 {
		t.Fatalf("verify %s: %d rows", userID, n)
	}
}

// --- the browser's round trip ----------------------------------------------

// idpFlow is one sign-in in progress.
type idpFlow struct {
	authorize *resp  // Gatehouse's answer to authorize
	providerQ string // the authorization request sent to the provider
	callback  string // path and query of the callback the provider sent back
}

// idpAuthorize asks Gatehouse to start a flow on device d.
func idpAuthorize(t *testing.T, d *device, provider string, q url.Values) *resp {
	t.Helper()
	path := "/auth/idps/" + provider + "/authorize"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return d.do(t, "GET", path, nil)
}

// idpToProvider follows Gatehouse's redirect to the provider, which signs
// the queued user in and redirects back; it returns the callback's path
// and query.
func idpToProvider(t *testing.T, r *resp) string {
	t.Helper()
	if r.Status != http.StatusFound {
		t.Fatalf("%s: want 302 to the provider", r)
	}
	loc := r.Header.Get("Location")
	hc := &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(loc)
	if err != nil {
		t.Fatalf("GET %s: %v", loc, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("provider answered %d to %s: %s", resp.StatusCode, loc, body)
	}
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("provider redirect: %v", err)
	}
	return back.RequestURI()
}

// idpBegin runs authorize and the provider's part, returning the flow.
func idpBegin(t *testing.T, d *device, provider string, q url.Values) idpFlow {
	t.Helper()
	r := idpAuthorize(t, d, provider, q)
	if !expect(t, r, http.StatusFound, "") {
		t.FailNow()
	}
	return idpFlow{authorize: r, providerQ: r.Header.Get("Location"), callback: idpToProvider(t, r)}
}

// idpOutcome is where a callback sent the browser.
type idpOutcome struct {
	r        *resp
	base     string     // the redirect without fragment
	fragment url.Values // parsed fragment
}

func (o idpOutcome) err() string { return o.fragment.Get("error") }

// idpCallback delivers the callback to d's server.
func idpCallback(t *testing.T, d *device, callback string) idpOutcome {
	t.Helper()
	r := d.do(t, "GET", callback, nil)
	if r.Status != http.StatusFound {
		t.Fatalf("%s: callback must answer 302", r)
	}
	loc := r.Header.Get("Location")
	base, frag, _ := strings.Cut(loc, "#")
	f, err := url.ParseQuery(frag)
	if err != nil {
		t.Fatalf("callback fragment %q: %v", frag, err)
	}
	if c := r.Cookie(idpFlowCookie); c == nil || c.MaxAge >= 0 && c.Value != "" {
		t.Errorf("%s: the callback must clear the flow cookie", r.req)
	}
	if strings.Contains(base, "?code=") || strings.Contains(loc, "login_code=") && strings.Contains(base, "login_code") {
		t.Errorf("%s: outcome in the query of %q, want it only in the fragment", r.req, loc)
	}
	return idpOutcome{r: r, base: base, fragment: f}
}

// idpRefused asserts a callback failed with code and started no session.
func idpRefused(t *testing.T, o idpOutcome, code string) {
	t.Helper()
	if o.err() != code {
		t.Errorf("%s: Location %q: want #error=%s", o.r.req, o.r.Header.Get("Location"), code)
	}
	if c := o.r.Cookie(refreshCookie); c != nil && c.Value != "" {
		t.Errorf("%s: a refused sign-in set a refresh cookie", o.r.req)
	}
	if o.fragment.Get("login_code") != "" {
		t.Errorf("%s: a refused sign-in handed out a login_code", o.r.req)
	}
}

// idpSignedIn asserts a cookie-mode callback signed d in, refreshes to get
// an access token, checks amr ["fed"] and returns the user.
func idpSignedIn(t *testing.T, d *device, o idpOutcome) map[string]any {
	t.Helper()
	if o.err() != "" {
		t.Fatalf("%s: sign-in failed: Location %q", o.r.req, o.r.Header.Get("Location"))
	}
	if o.r.Cookie(refreshCookie) == nil || o.r.Cookie(csrfCookie) == nil {
		t.Fatalf("%s: no session cookies set", o.r.req)
	}
	r := d.refreshReq(t)
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	checkTokenResponse(t, r, false)
	if amr := mailAMR(t, d.Access()); len(amr) != 1 || amr[0] != "fed" {
		t.Errorf("amr = %v, want [fed]", amr)
	}
	me := d.me(t)
	if !expect(t, me, http.StatusOK, "") {
		t.FailNow()
	}
	u, _ := me.JSON()["user"].(map[string]any)
	return u
}

// idpSignIn runs a whole cookie-mode sign-in of the queued user.
func idpSignIn(t *testing.T, s *server, provider string) (*device, map[string]any) {
	t.Helper()
	d := s.newDevice(false)
	f := idpBegin(t, d, provider, nil)
	return d, idpSignedIn(t, d, idpCallback(t, d, f.callback))
}

// idpTry runs a whole flow and returns its outcome without judging it.
func idpTry(t *testing.T, s *server, provider string) idpOutcome {
	t.Helper()
	d := s.newDevice(false)
	f := idpBegin(t, d, provider, nil)
	return idpCallback(t, d, f.callback)
}

// idpIdentities lists the identities of the device's user.
func idpIdentities(t *testing.T, d *device) []map[string]any {
	t.Helper()
	r := d.srv.do(t, "GET", "/auth/identities", nil, bearer(d.Access()))
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	list, _ := r.JSON()["identities"].([]any)
	var out []map[string]any
	for _, x := range list {
		m, _ := x.(map[string]any)
		out = append(out, m)
	}
	return out
}

// idpUserCount counts the accounts with email (case-insensitively).
func idpUserCount(t *testing.T, env *hrEnv, email string) int64 {
	t.Helper()
	// An UPDATE that changes nothing counts the matching rows on both
	// backends without a query helper of its own.
	return idpSQL(t, env, `UPDATE users SET name = name WHERE email_key = ?`, strings.ToLower(email))
}
