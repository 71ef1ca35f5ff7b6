package e2e

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// oauthGrace is the --reuse-grace of the flow tests: short, so that the
// test can wait past it.
const oauthGrace = 2 * time.Second

// TestOAuthFlows: Gatehouse as an OpenID provider for a relying party built
// on x/oauth2 and go-oidc, on SQLite and on two PostgreSQL + Redis instances:
// discovery, the code flow with PKCE for first- and third-party clients
// (consent remembered and revoked), public clients, the ID token, userinfo,
// introspection, refresh rotation, concurrent refreshes, reuse, RP-initiated
// logout, and the OAuth session among the user's sessions.
func TestOAuthFlows(t *testing.T) {
	hrEachBackend(t, func(t *testing.T, backend string) {
		env := oauthStart(t, backend, "--reuse-grace", oauthGrace.String())
		s := env.a
		first := env.webClient(t, "First Party App", "--first-party")
		third := env.webClient(t, "Third Party App")
		native := env.webClient(t, "Native App", "--public", "--first-party")
		env.inspector = first

		t.Run("Discovery", func(t *testing.T) {
			for _, in := range env.instances() {
				oauthCheckDiscovery(t, env, in)
			}
		})

		t.Run("FirstPartyCodeFlow", func(t *testing.T) {
			user := s.newUser(t, true)
			l := first.login(t, s, user, nil, "openid", "email", "offline_access")
			oauthCheckIDToken(t, env, first, user, l, true)
			oauthCheckAccessToken(t, env, first, user, l)

			// userinfo, through go-oidc and by both methods.
			ctx := env.ctx(t, s)
			ui, err := env.provider(t, s).UserInfo(ctx, oauth2.StaticTokenSource(l.tok))
			if err != nil {
				t.Fatalf("go-oidc userinfo: %v", err)
			}
			if ui.Subject != user.user.ID || ui.Email != user.email || ui.EmailVerified {
				t.Errorf("userinfo = {sub %q, email %q, email_verified %v}, want {%s, %s, false}", ui.Subject, ui.Email, ui.EmailVerified, user.user.ID, user.email)
			}
			for _, method := range []string{"GET", "POST"} {
				r := oauthDo(t, s, method, "/oauth2/userinfo", nil, bearer(l.tok.AccessToken))
				if expect(t, r, http.StatusOK, "") && r.JSON()["sub"] != user.user.ID {
					t.Errorf("%s: sub, want %s", r, user.user.ID)
				}
			}
			// Without a token, or with a Gatehouse session's own token
			// (not issued to a client), userinfo is 401.
			if r := oauthDo(t, s, "GET", "/oauth2/userinfo", nil); r.Status != http.StatusUnauthorized {
				t.Errorf("%s: want 401 without a token", r)
			}

			// Introspection by the client.
			in := first.introspect(t, s, l.tok.AccessToken)
			oauthCheckIntrospection(t, in, env, user.user.ID, first.id, l)
			if rt := first.introspect(t, s, l.tok.RefreshToken); rt["active"] != true || rt["sub"] != user.user.ID || rt["client_id"] != first.id {
				t.Errorf("introspection of the refresh token = %v, want active for %s, client %s", rt, user.user.ID, first.id)
			}
			if own := first.introspect(t, s, user.Access()); own["active"] != true || own["sub"] != user.user.ID {
				t.Errorf("introspection of the user's Gatehouse access token = %v, want active, sub %s", own, user.user.ID)
			}
			if junk := first.introspect(t, s, "not-a-token"); junk["active"] != false {
				t.Errorf("introspection of junk = %v, want {active:false}", junk)
			}

			// The OAuth session is one of the user's sessions.
			r := s.do(t, "GET", "/auth/sessions", nil, bearer(user.Access()))
			if !expect(t, r, http.StatusOK, "") {
				t.FailNow()
			}
			var ids []string
			for _, x := range r.JSON()["sessions"].([]any) {
				m, _ := x.(map[string]any)
				id, _ := m["id"].(string)
				ids = append(ids, id)
			}
			if !slices.Contains(ids, l.sid()) || !slices.Contains(ids, user.sid) {
				t.Errorf("GET /auth/sessions = %v, want the OAuth session %s and the sign-in %s", ids, l.sid(), user.sid)
			}

			// Without scope email: no email in the ID token or userinfo;
			// without offline_access: no refresh token.
			l2 := first.login(t, s, user, nil, "openid")
			if _, ok := l2.claims["email"]; ok {
				t.Errorf("ID token without scope email carries email: %v", l2.claims)
			}
			r = userinfo(t, s, l2.tok.AccessToken)
			if expect(t, r, http.StatusOK, "") {
				if _, ok := r.JSON()["email"]; ok || r.JSON()["sub"] != user.user.ID {
					t.Errorf("%s: want sub alone without scope email", r)
				}
			}
		})

		t.Run("PublicClient", func(t *testing.T) {
			user := s.newUser(t, true)
			l := native.login(t, s, user, nil, "openid", "offline_access")
			oauthCheckIDToken(t, env, native, user, l, false)
			// Public clients authenticate by client_id alone, refresh too.
			r := native.refresh(t, env.other(), l.tok.RefreshToken)
			if expect(t, r, http.StatusOK, "") {
				m := r.JSON()
				if rt, _ := m["refresh_token"].(string); rt == "" || rt == l.tok.RefreshToken {
					t.Errorf("%s: the refresh token did not rotate", r)
				}
			}
			// The code is bound to the PKCE verifier: a public client has
			// nothing else.
			a := native.newAuthz("openid")
			code := a.code(t, s, user.Access(), nil)
			if r := native.exchange(t, s, code, ""); r.Status != http.StatusBadRequest || (oauthErr(r) != "invalid_grant" && oauthErr(r) != "invalid_request") {
				t.Errorf("%s: a code exchanged without its verifier, want 400 invalid_grant or invalid_request", r)
			}
		})

		t.Run("ThirdPartyConsent", func(t *testing.T) {
			user := s.newUser(t, true)
			scopes := []string{"openid", "email", "offline_access"}
			a := third.newAuthz(scopes...)
			id := a.start(t, s)
			r := oauthContinue(t, s, user.Access(), id, nil)
			if expectOAuthErr(t, r, "consent_required", http.StatusForbidden) {
				m := r.JSON()
				c, _ := m["client"].(map[string]any)
				if c["client_id"] != third.id || c["name"] != third.name {
					t.Errorf("%s: client = %v, want {%s, %s}", r.req, c, third.id, third.name)
				}
				if got := strs(m["scopes"]); !sameScopes(strings.Join(got, " "), scopes) {
					t.Errorf("%s: scopes = %v, want %v", r.req, m["scopes"], scopes)
				}
			}
			// The request is still usable, now with consent.
			q := oauthRedirectTo(t, oauthContinue(t, s, user.Access(), id, yes))
			if q.Get("state") != a.state || q.Get("code") == "" {
				t.Fatalf("consent true: redirect query %v, want code and state %s", q, a.state)
			}
			l1 := third.finish(t, s, a, q.Get("code"))
			oauthCheckIDToken(t, env, third, user, l1, true)
			// Single use: once the code is issued, the request is gone.
			expectOAuthErr(t, oauthContinue(t, s, user.Access(), id, yes), "invalid_request", http.StatusBadRequest)

			// A second authorization skips the consent page.
			l2 := third.login(t, s, user, nil, scopes...)
			// A narrower one too.
			third.login(t, s, user, nil, "openid")

			// Connected apps.
			r = s.do(t, "GET", "/auth/consents", nil, bearer(user.Access()))
			if expect(t, r, http.StatusOK, "") {
				list, _ := r.JSON()["consents"].([]any)
				if len(list) != 1 {
					t.Fatalf("%s: want exactly the third-party app (first-party ones need no consent)", r)
				}
				c, _ := list[0].(map[string]any)
				if c["client_id"] != third.id || c["client_name"] != third.name || !sameScopes(strings.Join(strs(c["scopes"]), " "), scopes) {
					t.Errorf("%s: consent = %v", r.req, c)
				}
				if ca, _ := c["created_at"].(string); !isRFC3339UTC(ca) {
					t.Errorf("%s: created_at %q", r.req, ca)
				}
			}
			stranger := s.newUser(t, true)
			r = s.do(t, "GET", "/auth/consents", nil, bearer(stranger.Access()))
			if expect(t, r, http.StatusOK, "") {
				if list, _ := r.JSON()["consents"].([]any); len(list) != 0 {
					t.Errorf("%s: another user sees consents", r)
				}
			}
			expect(t, s.do(t, "DELETE", "/auth/consents/"+third.id, nil, bearer(stranger.Access())), http.StatusNotFound, "not_found")
			third.accessLive(t, s, "after a stranger's attempt to revoke", l2.tok.AccessToken)

			// Revoking the consent ends the app's sessions of the user.
			expect(t, s.do(t, "DELETE", "/auth/consents/"+third.id, nil, bearer(user.Access())), http.StatusNoContent, "")
			third.mustDie(t, s, "after DELETE /auth/consents", l1)
			third.mustDie(t, s, "after DELETE /auth/consents", l2)
			for _, other := range env.instances()[1:] {
				oauthAwait(t, "the other instance refuses the app's access token", time.Second, func() bool {
					return !third.active(t, other, l2.tok.AccessToken)
				})
			}
			expect(t, user.me(t), http.StatusOK, "") // the user's own sign-in is untouched
			expect(t, s.do(t, "DELETE", "/auth/consents/"+third.id, nil, bearer(user.Access())), http.StatusNotFound, "not_found")
			// Consent is asked again.
			a = third.newAuthz(scopes...)
			id = a.start(t, s)
			expectOAuthErr(t, oauthContinue(t, s, user.Access(), id, nil), "consent_required", http.StatusForbidden)

			// Denied: access_denied at the redirect URI, and the request is gone.
			q = oauthRedirectTo(t, oauthContinue(t, s, user.Access(), id, no))
			if q.Get("error") != "access_denied" || q.Get("state") != a.state || q.Get("code") != "" {
				t.Errorf("consent false: redirect query %v, want error=access_denied, state %s, no code", q, a.state)
			}
			expectOAuthErr(t, oauthContinue(t, s, user.Access(), id, yes), "invalid_request", http.StatusBadRequest)
			r = s.do(t, "GET", "/auth/consents", nil, bearer(user.Access()))
			if list, _ := r.JSON()["consents"].([]any); len(list) != 0 {
				t.Errorf("%s: a denied consent was remembered", r)
			}
		})

		t.Run("RefreshRotation", func(t *testing.T) {
			user := s.newUser(t, true)
			l := first.login(t, s, user, nil, "openid", "email", "offline_access")
			// x/oauth2 refreshes an expired token by itself.
			ctx := env.ctx(t, s)
			old := &oauth2.Token{AccessToken: l.tok.AccessToken, RefreshToken: l.tok.RefreshToken, Expiry: time.Now().Add(-time.Minute)}
			t2, err := first.config(s, l.authz.scopes...).TokenSource(ctx, old).Token()
			if err != nil {
				t.Fatalf("x/oauth2 refresh: %v", err)
			}
			if t2.RefreshToken == "" || t2.RefreshToken == l.tok.RefreshToken {
				t.Errorf("refresh did not rotate the refresh token")
			}
			if t2.AccessToken == l.tok.AccessToken {
				t.Errorf("refresh returned the same access token")
			}
			c2 := oauthJWT(t, "refreshed access token", t2.AccessToken)
			if c2["sid"] != l.sid() || c2["sub"] != user.user.ID || c2["client_id"] != first.id {
				t.Errorf("refreshed access token = %v, want sid %s, sub %s, client_id %s", c2, l.sid(), user.user.ID, first.id)
			}
			if got, _ := c2["scope"].(string); !sameScopes(got, l.authz.scopes) {
				t.Errorf("refreshed access token scope %q, want %v", got, l.authz.scopes)
			}
			if got := strs(c2["amr"]); !slices.Contains(got, "pwd") {
				t.Errorf("refreshed access token amr %v: the session's amr must be kept", got)
			}
			if id, _ := t2.Extra("id_token").(string); id != "" {
				t.Errorf("a refresh answered an id_token; the contract issues it at the code exchange only")
			}
			first.accessLive(t, s, "refreshed access token", t2.AccessToken)

			// Rotation goes on, on the other instance too.
			r := first.refresh(t, env.other(), t2.RefreshToken)
			if expect(t, r, http.StatusOK, "") {
				if rt, _ := r.JSON()["refresh_token"].(string); rt == "" || rt == t2.RefreshToken {
					t.Errorf("%s: the refresh token did not rotate", r)
				}
				if cc, _ := r.Header["Cache-Control"]; !slices.ContainsFunc(cc, func(v string) bool { return strings.Contains(v, "no-store") }) {
					t.Errorf("%s: token response without Cache-Control: no-store", r.req)
				}
			}
			// Another client cannot use it.
			expectTokenErr(t, third.refresh(t, s, t2.RefreshToken), "invalid_grant")
		})

		t.Run("ConcurrentRefreshes", func(t *testing.T) {
			user := s.newUser(t, true)
			l := first.login(t, s, user, nil, "openid", "offline_access")
			const n = 20
			type answer struct {
				status int
				body   map[string]any
				err    error
			}
			answers := make([]answer, n)
			var mu sync.Mutex
			insts := env.instances()
			atOnce(n, func(i int) {
				form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {l.tok.RefreshToken}}
				st, m, err := oauthTry(t, insts[i%len(insts)], "/oauth2/token", form, basic(first.id, first.secret))
				mu.Lock()
				answers[i] = answer{st, m, err}
				mu.Unlock()
			})
			successors := map[string]int{}
			var accesses []string
			for i, a := range answers {
				if a.err != nil || a.status != http.StatusOK {
					t.Errorf("concurrent refresh %d: %d %v (%v), want 200 within the grace window", i, a.status, a.body, a.err)
					continue
				}
				rt, _ := a.body["refresh_token"].(string)
				at, _ := a.body["access_token"].(string)
				successors[rt]++
				accesses = append(accesses, at)
				if c := oauthJWT(t, "access token", at); c["sid"] != l.sid() {
					t.Errorf("concurrent refresh %d: access token of session %v, want %s", i, c["sid"], l.sid())
				}
			}
			if len(successors) != 1 {
				t.Errorf("%d concurrent refreshes of one token gave %d distinct successors, want one", n, len(successors))
			}
			var successor string
			for rt := range successors {
				successor = rt
			}
			if successor == l.tok.RefreshToken {
				t.Fatalf("the successor is the presented token")
			}
			if len(accesses) == 0 {
				t.FailNow()
			}
			first.accessLive(t, s, "access token of a concurrent refresh", accesses[0])

			// Past the grace window, the old token is reuse: the session dies.
			time.Sleep(oauthGrace + 500*time.Millisecond)
			expectTokenErr(t, first.refresh(t, s, l.tok.RefreshToken), "invalid_grant")
			expectTokenErr(t, first.refresh(t, s, successor), "invalid_grant")
			for _, in := range env.instances() {
				for _, at := range []string{l.tok.AccessToken, accesses[len(accesses)-1]} {
					oauthAwait(t, "access token refused after reuse on "+in.base, time.Second, func() bool {
						return !first.active(t, in, at)
					})
					if r := userinfo(t, in, at); r.Status != http.StatusUnauthorized {
						t.Errorf("after reuse: %s, want 401", r)
					}
				}
			}
		})

		t.Run("ReuseRevokesTheAuthorization", func(t *testing.T) {
			user := s.newUser(t, true)
			l := first.login(t, s, user, nil, "openid", "offline_access")
			rt0 := l.tok.RefreshToken
			var rts, ats []string
			rt := rt0
			for range 2 {
				r := first.refresh(t, s, rt)
				if !expect(t, r, http.StatusOK, "") {
					t.FailNow()
				}
				rt, _ = r.JSON()["refresh_token"].(string)
				at, _ := r.JSON()["access_token"].(string)
				rts, ats = append(rts, rt), append(ats, at)
			}
			// rt0 is two generations old: reuse even inside the grace window.
			expectTokenErr(t, first.refresh(t, s, rt0), "invalid_grant")
			expectTokenErr(t, first.refresh(t, s, rts[1]), "invalid_grant")
			for _, at := range append(ats, l.tok.AccessToken) {
				first.accessDead(t, s, "after refresh token reuse", at)
			}
			// The user's other sessions live on.
			expect(t, user.me(t), http.StatusOK, "")
		})

		t.Run("RPInitiatedLogout", func(t *testing.T) {
			// RP-initiated logout logs the user out of Gatehouse: the app's
			// session, the browser's sign-in it was authorized from, and the
			// other app sessions authorized from that sign-in all end on
			// every instance. Another device's sign-in and its app session
			// live on.
			user := s.newUser(t, true)
			elsewhere := user.another(t, true)
			l := first.login(t, s, user, nil, "openid", "offline_access")
			sibling := first.login(t, s, user, nil, "openid", "offline_access")
			keep := first.login(t, s, elsewhere, nil, "openid", "offline_access")
			if sibling.sid() == l.sid() || keep.sid() == l.sid() {
				t.Fatalf("two authorizations share session %s", l.sid())
			}
			q := url.Values{"id_token_hint": {l.rawID}, "post_logout_redirect_uri": {oauthPostLogout}, "state": {"bye-1"}, "client_id": {first.id}}
			r := oauthDo(t, env.other(), "GET", "/oauth2/logout?"+q.Encode(), nil)
			if r.Status != http.StatusFound {
				t.Errorf("%s: want 302", r)
			} else if loc := r.Header.Get("Location"); loc != oauthPostLogout+"?state=bye-1" {
				t.Errorf("%s: Location %q, want %s?state=bye-1", r.req, loc, oauthPostLogout)
			}
			for _, in := range env.instances() {
				oauthAwait(t, "introspection inactive after logout on "+in.base, time.Second, func() bool {
					return !first.active(t, in, l.tok.AccessToken)
				})
				first.mustDie(t, in, "after RP-initiated logout", l)
				first.mustDie(t, in, "another app session of the same sign-in, after RP-initiated logout", sibling)
				oauthAwait(t, "the browser's sign-in ended on "+in.base, time.Second, func() bool {
					return in.do(t, "GET", "/auth/me", nil, bearer(user.Access())).Status == http.StatusUnauthorized
				})
				first.accessLive(t, in, "the app session of another device", keep.tok.AccessToken)
				expect(t, in.do(t, "GET", "/auth/me", nil, bearer(elsewhere.Access())), http.StatusOK, "")
			}
			user.assertDead(t, "the browser's sign-in after RP-initiated logout")
			elsewhere.assertAlive(t, "another device's sign-in after RP-initiated logout")
			// The same hint again: nothing left to end, the same redirect.
			r = oauthDo(t, s, "GET", "/oauth2/logout?"+q.Encode(), nil)
			if r.Status != http.StatusFound || r.Header.Get("Location") != oauthPostLogout+"?state=bye-1" {
				t.Errorf("%s: a repeated logout: Location %q", r, r.Header.Get("Location"))
			}
			user = s.newUser(t, true)

			// Without a registered post_logout_redirect_uri: never to it.
			l3 := first.login(t, s, user, nil, "openid")
			q = url.Values{"id_token_hint": {l3.rawID}, "post_logout_redirect_uri": {"https://evil.e2e.test/x"}, "state": {"s"}}
			r = oauthDo(t, s, "GET", "/oauth2/logout?"+q.Encode(), nil)
			if strings.Contains(r.Header.Get("Location"), "evil.e2e.test") {
				t.Errorf("%s: Location %q: logout redirected to an unregistered URI", r.req, r.Header.Get("Location"))
			}
			// Without a redirect URI: to the account page. (The logout above
			// ended user's sign-in too: a new one.)
			user = s.newUser(t, true)
			l4 := first.login(t, s, user, nil, "openid")
			r = oauthDo(t, s, "GET", "/oauth2/logout?"+url.Values{"id_token_hint": {l4.rawID}}.Encode(), nil)
			if r.Status != http.StatusFound || !strings.HasSuffix(strings.SplitN(r.Header.Get("Location"), "?", 2)[0], "/account") {
				t.Errorf("%s: Location %q, want 302 to /account", r, r.Header.Get("Location"))
			}
			first.accessDead(t, s, "after logout without a redirect", l4.tok.AccessToken)
		})
	})
}

// oauthCheckDiscovery asserts the provider metadata s serves.
func oauthCheckDiscovery(t *testing.T, env *oauthEnv, s *server) {
	t.Helper()
	r := s.do(t, "GET", "/.well-known/openid-configuration", nil)
	if !expect(t, r, http.StatusOK, "") {
		return
	}
	m := r.JSON()
	if m["issuer"] != env.issuer {
		t.Errorf("%s: issuer %v, want %s (the same on every instance)", r.req, m["issuer"], env.issuer)
	}
	for k, p := range map[string]string{
		"authorization_endpoint": "/oauth2/authorize",
		"token_endpoint":         "/oauth2/token",
		"userinfo_endpoint":      "/oauth2/userinfo",
		"introspection_endpoint": "/oauth2/introspect",
		"revocation_endpoint":    "/oauth2/revoke",
		"end_session_endpoint":   "/oauth2/logout",
	} {
		if m[k] != env.issuer+p {
			t.Errorf("%s: %s = %v, want %s%s", r.req, k, m[k], env.issuer, p)
		}
	}
	if js, _ := m["jwks_uri"].(string); !strings.HasPrefix(js, env.issuer+"/") {
		t.Errorf("%s: jwks_uri %q", r.req, js)
	}
	if got := strs(m["response_types_supported"]); !slices.Equal(got, []string{"code"}) {
		t.Errorf("%s: response_types_supported %v, want [code]", r.req, m["response_types_supported"])
	}
	if got := strs(m["code_challenge_methods_supported"]); !slices.Equal(got, []string{"S256"}) {
		t.Errorf("%s: code_challenge_methods_supported %v, want [S256]", r.req, m["code_challenge_methods_supported"])
	}
	for k, want := range map[string][]string{
		"grant_types_supported":                 {"authorization_code", "refresh_token", "client_credentials"},
		"token_endpoint_auth_methods_supported": {"client_secret_basic", "client_secret_post", "none"},
		"scopes_supported":                      {"openid", "profile", "email", "offline_access"},
	} {
		got := strs(m[k])
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("%s: %s = %v lacks %s", r.req, k, m[k], w)
			}
		}
	}
	if got := strs(m["id_token_signing_alg_values_supported"]); len(got) == 0 || slices.Contains(got, "none") {
		t.Errorf("%s: id_token_signing_alg_values_supported %v", r.req, m["id_token_signing_alg_values_supported"])
	}
}

// oauthCheckIDToken asserts the claims of a verified ID token (go-oidc
// already checked iss, aud, exp, signature, nonce and at_hash).
func oauthCheckIDToken(t *testing.T, env *oauthEnv, rp *oauthRP, user *device, l *oauthLogin, email bool) {
	t.Helper()
	c := l.claims
	if l.idToken.Issuer != env.issuer || !slices.Contains(l.idToken.Audience, rp.id) || l.idToken.Subject != user.user.ID {
		t.Errorf("ID token iss %q aud %v sub %q, want %s, [%s], %s", l.idToken.Issuer, l.idToken.Audience, l.idToken.Subject, env.issuer, rp.id, user.user.ID)
	}
	if c["azp"] != rp.id {
		t.Errorf("ID token azp %v, want %s", c["azp"], rp.id)
	}
	if sid, _ := c["sid"].(string); sid == "" || sid != l.sid() {
		t.Errorf("ID token sid %v, want the access token's %q", c["sid"], l.sid())
	}
	if amr := strs(c["amr"]); !slices.Contains(amr, "pwd") {
		t.Errorf("ID token amr %v, want pwd (a password sign-in)", c["amr"])
	}
	at, ok := c["auth_time"].(float64)
	if !ok {
		t.Errorf("ID token has no numeric auth_time: %v", c)
	} else if d := time.Since(time.Unix(int64(at), 0)); d < -time.Minute || d > 10*time.Minute {
		t.Errorf("ID token auth_time %v is %v away from now", at, d)
	}
	if iat, _ := c["iat"].(float64); iat == 0 || l.idToken.Expiry.Before(time.Now()) {
		t.Errorf("ID token iat %v exp %v", c["iat"], l.idToken.Expiry)
	}
	if email {
		if c["email"] != user.email || c["email_verified"] != false {
			t.Errorf("ID token email %v verified %v, want %s, false", c["email"], c["email_verified"], user.email)
		}
	}
	h := oauthJWTHeader(t, l.rawID)
	if h["alg"] == "none" || h["kid"] == nil {
		t.Errorf("ID token header %v", h)
	}
}

// oauthCheckAccessToken asserts the form of an access token issued to rp.
func oauthCheckAccessToken(t *testing.T, env *oauthEnv, rp *oauthRP, user *device, l *oauthLogin) {
	t.Helper()
	if h := oauthJWTHeader(t, l.tok.AccessToken); h["typ"] != "at+jwt" {
		t.Errorf("access token typ %v, want at+jwt", h["typ"])
	}
	c := l.access
	own := oauthJWT(t, "Gatehouse access token", user.Access())
	if c["iss"] != env.issuer || c["sub"] != user.user.ID || c["client_id"] != rp.id || c["role"] != "user" {
		t.Errorf("access token = %v, want iss %s, sub %s, client_id %s, role user", c, env.issuer, user.user.ID, rp.id)
	}
	if !audContains(c["aud"], "gatehouse") || !audContains(own["aud"], "gatehouse") {
		t.Errorf("access token aud %v (Gatehouse's own %v), want Gatehouse's audience for a client without one", c["aud"], own["aud"])
	}
	if got, _ := c["scope"].(string); !sameScopes(got, l.authz.scopes) {
		t.Errorf("access token scope %q, want %v", got, l.authz.scopes)
	}
	for _, k := range []string{"sid", "jti"} {
		if v, _ := c[k].(string); v == "" {
			t.Errorf("access token lacks %s: %v", k, c)
		}
	}
	if c["sid"] == own["sid"] {
		t.Errorf("the OAuth authorization reused the user's sign-in session %v; it needs a session of its own", c["sid"])
	}
	exp, _ := c["exp"].(float64)
	iat, _ := c["iat"].(float64)
	if exp <= iat || iat == 0 {
		t.Errorf("access token iat %v exp %v", c["iat"], c["exp"])
	}
	if !slices.Contains(strs(c["amr"]), "pwd") {
		t.Errorf("access token amr %v, want pwd", c["amr"])
	}
	if _, ok := c["cnf"]; ok {
		t.Errorf("access token without a client certificate carries cnf: %v", c["cnf"])
	}
}

// oauthCheckIntrospection asserts an active introspection answer for a
// user's access token.
func oauthCheckIntrospection(t *testing.T, in map[string]any, env *oauthEnv, sub, clientID string, l *oauthLogin) {
	t.Helper()
	if in["active"] != true || in["sub"] != sub || in["client_id"] != clientID || in["sid"] != l.sid() || in["iss"] != env.issuer {
		t.Errorf("introspection = %v, want active, sub %s, client_id %s, sid %s, iss %s", in, sub, clientID, l.sid(), env.issuer)
	}
	if got, _ := in["scope"].(string); !sameScopes(got, l.authz.scopes) {
		t.Errorf("introspection scope %q, want %v", got, l.authz.scopes)
	}
	if in["jti"] != l.access["jti"] || in["exp"] != l.access["exp"] || in["iat"] != l.access["iat"] {
		t.Errorf("introspection jti/exp/iat %v/%v/%v, want the token's %v/%v/%v", in["jti"], in["exp"], in["iat"], l.access["jti"], l.access["exp"], l.access["iat"])
	}
	if tt, _ := in["token_type"].(string); tt == "" {
		t.Errorf("introspection lacks token_type: %v", in)
	}
	if in["aud"] == nil {
		t.Errorf("introspection lacks aud: %v", in)
	}
}
