package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"
)

const testRedirect = "http://127.0.0.1:1/auth/idps/testop/callback"

// startOP serves the provider on a loopback test server; returns its issuer.
func startOP(t *testing.T, idTokenClaims bool, users ...string) string {
	t.Helper()
	var h http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	store, err := parseUsers(users, "gatehouse")
	if err != nil {
		t.Fatal(err)
	}
	h, err = newProvider(srv.URL, opConfig{clientID: "gatehouse", clientSecret: "s3cret", redirects: []string{testRedirect}, users: store, userinfoInIDToken: idTokenClaims})
	if err != nil {
		t.Fatal(err)
	}
	return srv.URL
}

var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// authorize starts a code flow with PKCE and returns the login page's auth request id.
func authorize(t *testing.T, issuer, verifier string) string {
	t.Helper()
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"client_id": {"gatehouse"}, "redirect_uri": {testRedirect}, "response_type": {"code"},
		"scope": {"openid email profile"}, "state": {"st4te"}, "nonce": {"n0nce"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	res, err := noRedirects.Get(issuer + "/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc, err := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusFound || err != nil || loc.Path != "/login/username" {
		t.Fatalf("authorize: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	return loc.Query().Get("authRequestID")
}

// post submits a form of the login page and returns the redirect it answers with (resolved).
func post(t *testing.T, issuer, path string, form url.Values) *url.URL {
	t.Helper()
	res, err := noRedirects.PostForm(issuer+path, form)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusFound {
		t.Fatalf("POST %s: %d, want 302", path, res.StatusCode)
	}
	loc, err := res.Request.URL.Parse(res.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// login signs a user in on the login page and follows the op's own callback; returns the
// redirect to the client.
func login(t *testing.T, issuer, id, user, password string) *url.URL {
	t.Helper()
	next := post(t, issuer, "/login/username", url.Values{"id": {id}, "username": {user}, "password": {password}})
	res, err := noRedirects.Get(next.String())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	back, err := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(back.String(), testRedirect+"?") {
		t.Fatalf("op callback: %d %q, want a redirect to the client", res.StatusCode, res.Header.Get("Location"))
	}
	return back
}

func TestCodeFlowGivesTheUsersEmailInAVerifiedIDToken(t *testing.T) {
	for _, inIDToken := range []bool{true, false} {
		issuer := startOP(t, inIDToken, "alice:pw:alice@example.com", "bob:pw:bob@example.com:unverified")
		ctx := t.Context()
		relying, err := rp.NewRelyingPartyOIDC(ctx, issuer, "gatehouse", "s3cret", testRedirect, []string{"openid", "email", "profile"},
			rp.WithVerifierOpts(rp.WithNonce(func(context.Context) string { return "n0nce" })))
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range []struct {
			name     string
			verified bool
		}{{"alice", true}, {"bob", false}} {
			verifier := strings.Repeat("v", 43) + u.name
			id := authorize(t, issuer, verifier)
			res, err := noRedirects.PostForm(issuer+"/login/username", url.Values{"id": {id}, "username": {u.name}, "password": {"wrong"}})
			if err != nil || res.StatusCode != http.StatusOK {
				t.Fatalf("a wrong password must show the form again, got %v %v", res, err)
			}
			res.Body.Close()
			back := login(t, issuer, id, u.name, "pw")
			if back.Query().Get("state") != "st4te" || back.Query().Get("code") == "" {
				t.Fatalf("redirect %s: want the state and a code", back)
			}
			if _, err := rp.CodeExchange[*oidc.IDTokenClaims](ctx, back.Query().Get("code"), relying, rp.WithCodeVerifier("wrong"+verifier)); err == nil {
				t.Fatal("a wrong PKCE verifier was accepted")
			}
			id = authorize(t, issuer, verifier)
			back = login(t, issuer, id, u.name, "pw")
			tokens, err := rp.CodeExchange[*oidc.IDTokenClaims](ctx, back.Query().Get("code"), relying, rp.WithCodeVerifier(verifier))
			if err != nil {
				t.Fatalf("code exchange: %v", err)
			}
			c := tokens.IDTokenClaims
			if c.Subject != "sub-"+u.name {
				t.Errorf("sub %q", c.Subject)
			}
			wantEmail := ""
			if inIDToken {
				wantEmail = u.name + "@example.com"
			}
			if c.Email != wantEmail || (inIDToken && bool(c.EmailVerified) != u.verified) {
				t.Errorf("id-token-claims=%v: ID token email %q verified %v", inIDToken, c.Email, c.EmailVerified)
			}
			info, err := rp.Userinfo[*oidc.UserInfo](ctx, tokens.AccessToken, tokens.TokenType, c.Subject, relying)
			if err != nil || info.Email != u.name+"@example.com" || bool(info.EmailVerified) != u.verified {
				t.Errorf("userinfo %+v, %v", info, err)
			}
		}
	}
}

func TestCancelAnswersAccessDenied(t *testing.T) {
	issuer := startOP(t, true, "alice:pw:alice@example.com")
	id := authorize(t, issuer, strings.Repeat("v", 43))
	back := post(t, issuer, "/login/cancel", url.Values{"id": {id}})
	if !strings.HasPrefix(back.String(), testRedirect+"?") || back.Query().Get("error") != "access_denied" || back.Query().Get("state") != "st4te" {
		t.Fatalf("cancel redirected to %s, want the client's redirect URI with error=access_denied and the state", back)
	}
}

func TestParseUsersRefusesBadSpecs(t *testing.T) {
	for _, spec := range []string{"alice", "alice:pw", ":pw:a@example.com", "alice::a@example.com", "a:pw:a@example.com:maybe", "a:pw:a@example.com:unverified:x"} {
		if _, err := parseUsers([]string{spec}, "c"); err == nil {
			t.Errorf("%q was accepted", spec)
		}
	}
	if _, err := parseUsers([]string{"a:pw:a@example.com", "a:pw2:b@example.com"}, "c"); err == nil {
		t.Error("a username given twice was accepted")
	}
}
