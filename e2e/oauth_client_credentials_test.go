package e2e

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// TestOAuthClientCredentials: machine clients with a secret on both
// backends: client_secret_basic and client_secret_post through x/oauth2's
// clientcredentials, the form of their tokens, introspection, revocation of
// one token by its jti on every instance, and the revocation feed, which a
// token with scope revocations:read may read and any other may not.
func TestOAuthClientCredentials(t *testing.T) {
	hrEachBackend(t, func(t *testing.T, backend string) {
		env := oauthStart(t, backend)
		s := env.a
		feed := env.createClient(t, "Feed Reader", "--grant", "client_credentials", "--scope", "revocations:read")
		worker := env.createClient(t, "API Worker", "--grant", "client_credentials", "--scope", "api:read", "--audience", "https://api.e2e.test")
		env.inspector = feed

		ccToken := func(t *testing.T, rp *oauthRP, style oauth2.AuthStyle, scopes ...string) *oauth2.Token {
			t.Helper()
			cc := &clientcredentials.Config{ClientID: rp.id, ClientSecret: rp.secret, TokenURL: s.base + "/oauth2/token", AuthStyle: style, Scopes: scopes}
			tok, err := cc.Token(env.ctx(t, s))
			if err != nil {
				t.Fatalf("client_credentials of %s (auth style %d): %v", rp.name, style, err)
			}
			return tok
		}

		t.Run("BasicAndPost", func(t *testing.T) {
			for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
				tok := ccToken(t, feed, style)
				if tok.TokenType != "Bearer" || tok.RefreshToken != "" || tok.Extra("id_token") != nil {
					t.Errorf("style %d: token_type %q, refresh_token %q, id_token %v: want Bearer and neither", style, tok.TokenType, tok.RefreshToken, tok.Extra("id_token"))
				}
				if got, _ := tok.Extra("scope").(string); got != "revocations:read" {
					t.Errorf("style %d: scope %q, want the client's revocations:read", style, got)
				}
				if h := oauthJWTHeader(t, tok.AccessToken); h["typ"] != "at+jwt" {
					t.Errorf("client token typ %v, want at+jwt", h["typ"])
				}
				c := oauthJWT(t, "client token", tok.AccessToken)
				if c["sub"] != feed.id || c["client_id"] != feed.id || c["iss"] != env.issuer || !audContains(c["aud"], "gatehouse") {
					t.Errorf("client token = %v, want sub = client_id = %s, iss %s, aud gatehouse", c, feed.id, env.issuer)
				}
				// No session, no role, no binding (an empty member counts as absent).
				for _, k := range []string{"sid", "role", "cnf"} {
					if v, ok := c[k]; ok && v != "" {
						t.Errorf("client token carries %s: %v", k, c)
					}
				}
				if jti, _ := c["jti"].(string); jti == "" {
					t.Errorf("client token without jti: %v", c)
				}
			}
			// The raw answer: no refresh token, no-store.
			r := feed.token(t, s, url.Values{"grant_type": {"client_credentials"}, "scope": {"revocations:read"}})
			if expect(t, r, http.StatusOK, "") {
				if _, ok := r.JSON()["refresh_token"]; ok {
					t.Errorf("%s: a refresh token for client_credentials", r)
				}
				if !strings.Contains(r.Header.Get("Cache-Control"), "no-store") {
					t.Errorf("%s: Cache-Control %q, want no-store", r.req, r.Header.Get("Cache-Control"))
				}
			}
			// client_secret_post by hand.
			r = oauthDo(t, s, "POST", "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {feed.id}, "client_secret": {feed.secret}})
			expect(t, r, http.StatusOK, "")
			// The client's audience.
			wc := oauthJWT(t, "worker token", ccToken(t, worker, oauth2.AuthStyleInHeader).AccessToken)
			if !audContains(wc["aud"], "https://api.e2e.test") || wc["scope"] != "api:read" {
				t.Errorf("worker token aud %v scope %v, want https://api.e2e.test and api:read", wc["aud"], wc["scope"])
			}
		})

		t.Run("Refusals", func(t *testing.T) {
			expectTokenErr(t, oauthDo(t, s, "POST", "/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, basic(feed.id, worker.secret)), "invalid_client")
			expectTokenErr(t, oauthDo(t, s, "POST", "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {feed.id}, "client_secret": {feed.secret + "x"}}), "invalid_client")
			expectTokenErr(t, oauthDo(t, s, "POST", "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {feed.id}}), "invalid_client")
			// Scopes beyond the client's.
			expectOAuthErr(t, feed.token(t, s, url.Values{"grant_type": {"client_credentials"}, "scope": {"api:read"}}), "invalid_scope", http.StatusBadRequest)
			// A client_credentials client has no code flow.
			q := url.Values{"response_type": {"code"}, "client_id": {feed.id}, "redirect_uri": {oauthRedirect}, "scope": {"openid"},
				"code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"}}
			oauthNoRedirect(t, oauthAuthorize(t, s, q), "authorize for a client without redirect URIs")
		})

		t.Run("Introspection", func(t *testing.T) {
			tok := ccToken(t, worker, oauth2.AuthStyleInHeader)
			c := oauthJWT(t, "worker token", tok.AccessToken)
			in := feed.introspect(t, s, tok.AccessToken)
			if in["active"] != true || in["sub"] != worker.id || in["client_id"] != worker.id || in["scope"] != "api:read" ||
				in["jti"] != c["jti"] || in["exp"] != c["exp"] || in["iat"] != c["iat"] || in["iss"] != env.issuer || !audContains(in["aud"], "https://api.e2e.test") {
				t.Errorf("introspection = %v, want active for %s with the token's claims %v", in, worker.id, c)
			}
			if sid, ok := in["sid"]; ok && sid != "" {
				t.Errorf("introspection of a client token has sid %v", sid)
			}
			if tt, _ := in["token_type"].(string); tt == "" {
				t.Errorf("introspection lacks token_type: %v", in)
			}
			// The worker may introspect too (it has a secret).
			if !worker.active(t, env.other(), tok.AccessToken) {
				t.Errorf("the token is inactive on the other instance")
			}
		})

		t.Run("RevocationByJTI", func(t *testing.T) {
			t1 := ccToken(t, worker, oauth2.AuthStyleInHeader)
			t2 := ccToken(t, worker, oauth2.AuthStyleInHeader)
			if t1.AccessToken == t2.AccessToken {
				t.Fatalf("two client_credentials grants gave the same token")
			}
			worker.revoke(t, env.other(), t1.AccessToken)
			for _, in := range env.instances() {
				oauthAwait(t, "revoked client token inactive on "+in.base, time.Second, func() bool {
					return !feed.active(t, in, t1.AccessToken)
				})
				if !feed.active(t, in, t2.AccessToken) {
					t.Errorf("%s: revoking one client token revoked another", in.base)
				}
			}
			// The feed tells resource servers.
			jti, _ := oauthJWT(t, "revoked token", t1.AccessToken)["jti"].(string)
			feedTok := ccToken(t, feed, oauth2.AuthStyleInHeader)
			found := eventually(time.Second, func() bool {
				r := s.do(t, "GET", "/auth/revocations", nil, bearer(feedTok.AccessToken))
				if r.Status != http.StatusOK {
					return false
				}
				list, _ := r.JSON()["revocations"].([]any)
				return slices.ContainsFunc(list, func(x any) bool {
					m, _ := x.(map[string]any)
					return m["kind"] == "token" && m["jti"] == jti
				})
			})
			if !found {
				t.Errorf("the revocation feed does not list the revoked client token (jti %s)", jti)
			}
		})

		t.Run("ClientFromTheAdminAPI", func(t *testing.T) {
			admin := env.admin(t)
			r := s.do(t, "POST", "/admin/clients", map[string]any{
				"name": "Admin-made Reader", "grants": []string{"client_credentials"}, "scopes": []string{"revocations:read"},
			}, bearer(admin.Access()))
			if !expect(t, r, http.StatusCreated, "") {
				t.FailNow()
			}
			c, _ := r.JSON()["client"].(map[string]any)
			rp := &oauthRP{env: env, name: "Admin-made Reader"}
			rp.id, _ = c["client_id"].(string)
			rp.secret, _ = r.JSON()["client_secret"].(string)
			if rp.id == "" || rp.secret == "" {
				t.Fatalf("%s: want client.client_id and client_secret", r)
			}
			if strings.Contains(string(s.do(t, "GET", "/admin/clients", nil, bearer(admin.Access())).Body), rp.secret) {
				t.Errorf("GET /admin/clients shows a client secret")
			}
			tok := ccToken(t, rp, oauth2.AuthStyleInHeader)
			expect(t, env.other().do(t, "GET", "/auth/revocations", nil, bearer(tok.AccessToken)), http.StatusOK, "")
			expect(t, s.do(t, "DELETE", "/admin/clients/"+rp.id, nil, bearer(admin.Access())), http.StatusNoContent, "")
			expectTokenErr(t, rp.token(t, s, url.Values{"grant_type": {"client_credentials"}}), "invalid_client")
			expect(t, s.do(t, "DELETE", "/admin/clients/"+rp.id, nil, bearer(admin.Access())), http.StatusNotFound, "not_found")
		})

		t.Run("RevocationFeedScope", func(t *testing.T) {
			tok := ccToken(t, feed, oauth2.AuthStyleInParams)
			for _, in := range env.instances() {
				r := in.do(t, "GET", "/auth/revocations", nil, bearer(tok.AccessToken))
				if expect(t, r, http.StatusOK, "") {
					if _, ok := r.JSON()["revocations"].([]any); !ok {
						t.Errorf("%s: no revocations array", r)
					}
					if c, _ := r.JSON()["cursor"].(string); c == "" {
						t.Errorf("%s: no cursor", r)
					}
				}
				wt := ccToken(t, worker, oauth2.AuthStyleInHeader)
				expect(t, in.do(t, "GET", "/auth/revocations", nil, bearer(wt.AccessToken)), http.StatusForbidden, "insufficient_scope")
			}
			// A user's OAuth token is no feed credential either (Gatehouse's
			// API refuses a user's app tokens outright, or for the scope).
			web := env.webClient(t, "Web App", "--first-party")
			user := s.newUser(t, true)
			l := web.login(t, s, user, nil, "openid")
			if r := s.do(t, "GET", "/auth/revocations", nil, bearer(l.tok.AccessToken)); r.Status != http.StatusUnauthorized && r.Status != http.StatusForbidden {
				t.Errorf("%s: want 401 invalid_token or 403 insufficient_scope", r)
			}
		})
	})
}
