package e2e

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
)

// ghEmail is one entry of GitHub's /user/emails answer.
type ghEmail struct {
	Email      string  `json:"email"`
	Primary    bool    `json:"primary"`
	Verified   bool    `json:"verified"`
	Visibility *string `json:"visibility"`
}

// fakeGitHub answers like github.com and api.github.com on loopback: the
// authorize redirect, the token endpoint (form-encoded, PKCE checked, JSON
// answer as asked with Accept), /user and /user/emails with their shapes.
type fakeGitHub struct {
	srv          *httptest.Server
	clientID     string
	clientSecret string

	mu     sync.Mutex
	next   ghUser            // who signs in at the next authorize
	codes  map[string]ghCode // code -> pending grant
	tokens map[string]ghUser // access token -> user
}

type ghUser struct {
	ID     int64
	Login  string
	Name   string
	Emails []ghEmail
}

type ghCode struct {
	user      ghUser
	challenge string
	redirect  string
}

func startFakeGitHub(t *testing.T) *fakeGitHub {
	t.Helper()
	g := &fakeGitHub{clientID: "Iv1." + randHex(8), clientSecret: randHex(20), codes: map[string]ghCode{}, tokens: map[string]ghUser{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login/oauth/authorize", g.authorize)
	mux.HandleFunc("POST /login/oauth/access_token", g.token)
	mux.HandleFunc("GET /api/v3/user", g.user)
	mux.HandleFunc("GET /api/v3/user/emails", g.emails)
	g.srv = httptest.NewServer(mux)
	t.Cleanup(g.srv.Close)
	return g
}

func (g *fakeGitHub) queue(u ghUser) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.next = u
}

func (g *fakeGitHub) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != g.clientID || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") == "" {
		http.Error(w, "bad authorize request", http.StatusBadRequest)
		return
	}
	code := randHex(10)
	g.mu.Lock()
	g.codes[code] = ghCode{user: g.next, challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri")}
	g.mu.Unlock()
	back, _ := url.Parse(q.Get("redirect_uri"))
	v := back.Query()
	v.Set("code", code)
	v.Set("state", q.Get("state"))
	back.RawQuery = v.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

func (g *fakeGitHub) token(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	w.Header().Set("Content-Type", "application/json")
	g.mu.Lock()
	c, ok := g.codes[r.PostForm.Get("code")]
	delete(g.codes, r.PostForm.Get("code"))
	g.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	if !ok || r.PostForm.Get("client_id") != g.clientID || r.PostForm.Get("client_secret") != g.clientSecret ||
		base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge || r.PostForm.Get("redirect_uri") != c.redirect {
		// GitHub answers a bad code with 200 and an error body.
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "bad_verification_code", "error_description": "The code passed is incorrect or expired."})
		return
	}
	tok := "gho_" + randHex(16)
	g.mu.Lock()
	g.tokens[tok] = c.user
	g.mu.Unlock()
	_ = json.NewEncoder(w).Encode(map[string]string{"access_token": tok, "token_type": "bearer", "scope": "read:user,user:email"})
}

func (g *fakeGitHub) who(w http.ResponseWriter, r *http.Request) (ghUser, bool) {
	auth := r.Header.Get("Authorization")
	g.mu.Lock()
	u, ok := g.tokens[auth[min(len(auth), len("Bearer ")):]]
	g.mu.Unlock()
	if !ok || len(auth) < 7 || auth[:7] != "Bearer " {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest"}`))
		return ghUser{}, false
	}
	return u, true
}

func (g *fakeGitHub) user(w http.ResponseWriter, r *http.Request) {
	u, ok := g.who(w, r)
	if !ok {
		return
	}
	// The public profile's email is whatever the user chose to show: not
	// to be trusted, and here deliberately another address.
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"login": u.Login, "id": u.ID, "node_id": "MDQ6VXNlcj" + strconv.FormatInt(u.ID, 10), "type": "User",
		"name": u.Name, "email": "public-" + u.Login + "@example.net", "site_admin": false,
	})
}

func (g *fakeGitHub) emails(w http.ResponseWriter, r *http.Request) {
	u, ok := g.who(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(u.Emails)
}

// TestIdPGitHub: the github preset against a fake GitHub on loopback; only
// a primary, verified address is used.
func TestIdPGitHub(t *testing.T) {
	t.Parallel()
	gh := startFakeGitHub(t)
	env := hrStart(t, "sqlite")
	idpAdd(t, env, "github", "--preset", "github", "--client-id", gh.clientID, idpSecret+gh.clientSecret,
		"--auth-url", gh.srv.URL+"/login/oauth/authorize", "--token-url", gh.srv.URL+"/login/oauth/access_token",
		"--userinfo-url", gh.srv.URL+"/api/v3/user")
	s := env.s
	public := "public"

	t.Run("PrimaryVerified", func(t *testing.T) {
		primary := newEmail()
		gh.queue(ghUser{ID: 583231, Login: "octocat", Name: "The Octocat", Emails: []ghEmail{
			{Email: "other-" + newEmail(), Verified: true, Visibility: &public},
			{Email: primary, Primary: true, Verified: true},
		}})
		d, u := idpSignIn(t, s, "github")
		if u["email"] != primary || u["email_verified"] != true || u["name"] != "The Octocat" {
			t.Errorf("user = %v, want the primary verified address %s", u, primary)
		}
		list := idpIdentities(t, d)
		if len(list) != 1 || list[0]["provider"] != "github" || list[0]["email"] != primary {
			t.Errorf("identities = %v", list)
		}
		// Again: the numeric id finds the same user.
		gh.queue(ghUser{ID: 583231, Login: "octocat", Emails: []ghEmail{{Email: primary, Primary: true, Verified: true}}})
		_, again := idpSignIn(t, s, "github")
		if again["id"] != u["id"] {
			t.Errorf("second sign-in: user %v, want %v", again["id"], u["id"])
		}
	})
	t.Run("PrimaryUnverified", func(t *testing.T) {
		primary, secondary := newEmail(), newEmail()
		gh.queue(ghUser{ID: 9001, Login: "unverified", Emails: []ghEmail{
			{Email: primary, Primary: true, Verified: false},
			{Email: secondary, Verified: true},
		}})
		idpRefused(t, idpTry(t, s, "github"), "email_not_verified")
		for _, e := range []string{primary, secondary, "public-unverified@example.net"} {
			if n := idpUserCount(t, env, e); n != 0 {
				t.Errorf("an account was made for %s", e)
			}
		}
	})
	t.Run("SecondaryVerifiedNeverLinks", func(t *testing.T) {
		// A verified local account whose address is only a secondary one
		// at GitHub is not linked; the primary makes its own account.
		local := s.newUser(t, true)
		idpVerify(t, env, local.user.ID)
		primary := newEmail()
		gh.queue(ghUser{ID: 777, Login: "second", Emails: []ghEmail{
			{Email: local.email, Verified: true},
			{Email: primary, Primary: true, Verified: true},
		}})
		_, u := idpSignIn(t, s, "github")
		if u["id"] == local.user.ID || u["email"] != primary {
			t.Errorf("signed in as %v (%v), want a new account for the primary %s", u["id"], u["email"], primary)
		}
		if n := len(idpIdentities(t, local)); n != 0 {
			t.Errorf("the local account got %d identities through a secondary address", n)
		}
	})
	t.Run("NoEmails", func(t *testing.T) {
		gh.queue(ghUser{ID: 4242, Login: "noemail"})
		idpRefused(t, idpTry(t, s, "github"), "email_not_verified")
	})
	t.Run("BadCode", func(t *testing.T) {
		gh.queue(ghUser{ID: 5, Login: "x", Emails: []ghEmail{{Email: newEmail(), Primary: true, Verified: true}}})
		d := s.newDevice(false)
		f := idpBegin(t, d, "github", nil)
		idpRefused(t, idpCallback(t, d, withQuery(t, f.callback, "code", "not-a-code")), "provider_error")
	})
}
