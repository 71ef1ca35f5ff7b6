package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// TestOAuthAttacks: what an attacker tries against the authorization and
// token endpoints: PKCE left out, downgraded or wrong; redirect URIs that
// are almost the registered one; codes replayed or stolen by another
// client; grants and scopes the client was not given; error responses as
// open redirects; forged continue calls; cross-client revocation.
func TestOAuthAttacks(t *testing.T) {
	t.Parallel()
	env := oauthStart(t, "sqlite")
	s := env.a
	rp := env.webClient(t, "Target App", "--first-party")
	// Registered with the very same redirect URI: only the client differs.
	other := env.webClient(t, "Other App", "--first-party")
	pub := env.webClient(t, "Public App", "--public", "--first-party")
	env.inspector = rp
	user := s.newUser(t, true)

	// valid is a well-formed authorization request of c.
	valid := func(c *oauthRP) (url.Values, string) {
		v := oauth2.GenerateVerifier()
		return url.Values{
			"response_type":         {"code"},
			"client_id":             {c.id},
			"redirect_uri":          {oauthRedirect},
			"scope":                 {"openid offline_access"},
			"state":                 {"st-" + randHex(6)},
			"nonce":                 {"n-" + randHex(6)},
			"code_challenge":        {oauth2.S256ChallengeFromVerifier(v)},
			"code_challenge_method": {"S256"},
		}, v
	}

	t.Run("ValidRequestIsAccepted", func(t *testing.T) {
		q, _ := valid(rp)
		oauthPending(t, oauthAuthorize(t, s, q))
	})

	t.Run("NoPKCE", func(t *testing.T) {
		q, _ := valid(rp)
		q.Del("code_challenge")
		q.Del("code_challenge_method")
		oauthErrorAtRedirect(t, oauthAuthorize(t, s, q), "invalid_request", q.Get("state"))
		// A public client is no exception.
		q, _ = valid(pub)
		q.Del("code_challenge")
		q.Del("code_challenge_method")
		oauthErrorAtRedirect(t, oauthAuthorize(t, s, q), "invalid_request", q.Get("state"))
	})

	t.Run("PlainPKCE", func(t *testing.T) {
		q, v := valid(rp)
		q.Set("code_challenge", v)
		q.Set("code_challenge_method", "plain")
		oauthErrorAtRedirect(t, oauthAuthorize(t, s, q), "invalid_request", q.Get("state"))
		// A challenge without a method is plain (RFC 7636 4.3).
		q.Del("code_challenge_method")
		oauthErrorAtRedirect(t, oauthAuthorize(t, s, q), "invalid_request", q.Get("state"))
	})

	t.Run("WrongVerifier", func(t *testing.T) {
		a := rp.newAuthz("openid", "offline_access")
		code := a.code(t, s, user.Access(), nil)
		expectTokenErr(t, rp.exchange(t, s, code, oauth2.GenerateVerifier()), "invalid_grant")
		// The challenge itself is not a verifier either.
		a = rp.newAuthz("openid")
		code = a.code(t, s, user.Access(), nil)
		expectTokenErr(t, rp.exchange(t, s, code, oauth2.S256ChallengeFromVerifier(a.verifier)), "invalid_grant")
	})

	t.Run("RedirectURINotExact", func(t *testing.T) {
		for _, variant := range []string{
			oauthRedirect + "/more",            // a path
			oauthRedirect + "?next=/admin",     // a query
			oauthRedirect + "/",                // a trailing slash
			"https://RP.e2e.test/callback",     // case of the host
			"https://rp.e2e.test/Callback",     // case of the path
			"http://rp.e2e.test/callback",      // the scheme
			"https://rp.e2e.test:443/callback", // an explicit port
			"https://rp.e2e.test/callback#x",   // a fragment
		} {
			q, _ := valid(rp)
			q.Set("redirect_uri", variant)
			r := oauthAuthorize(t, s, q)
			oauthNoRedirect(t, r, "redirect_uri "+variant)
		}
	})

	t.Run("RedirectURIAtTokenEndpoint", func(t *testing.T) {
		a := rp.newAuthz("openid")
		code := a.code(t, s, user.Access(), nil)
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {oauthRedirect + "/"}, "code_verifier": {a.verifier}}
		expectTokenErr(t, rp.token(t, s, form), "invalid_grant")
	})

	t.Run("CodeReplay", func(t *testing.T) {
		a := rp.newAuthz("openid", "offline_access")
		code := a.code(t, s, user.Access(), nil)
		r := rp.exchange(t, s, code, a.verifier)
		if !expect(t, r, http.StatusOK, "") {
			t.FailNow()
		}
		at, _ := r.JSON()["access_token"].(string)
		rt, _ := r.JSON()["refresh_token"].(string)
		rp.accessLive(t, s, "tokens of the first redemption", at)
		expectTokenErr(t, rp.exchange(t, s, code, a.verifier), "invalid_grant")
		// The second use revokes what the first issued.
		l := &oauthLogin{tok: &oauth2.Token{AccessToken: at, RefreshToken: rt}}
		rp.mustDie(t, s, "after a code replay", l)
	})

	t.Run("CodeOfAnotherClient", func(t *testing.T) {
		a := rp.newAuthz("openid")
		code := a.code(t, s, user.Access(), nil)
		expectTokenErr(t, other.exchange(t, s, code, a.verifier), "invalid_grant")
		expectTokenErr(t, pub.exchange(t, s, code, a.verifier), "invalid_grant")
	})

	t.Run("ClientCredentialsNotGranted", func(t *testing.T) {
		// A public client has no credentials to grant.
		r := oauthDo(t, s, "POST", "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {pub.id}})
		if e := oauthErr(r); (e != "invalid_client" && e != "unauthorized_client") || (r.Status != http.StatusBadRequest && r.Status != http.StatusUnauthorized) {
			t.Errorf("%s: want 400/401 invalid_client or unauthorized_client", r)
		}
		// A confidential client not registered for the grant.
		r = rp.token(t, s, url.Values{"grant_type": {"client_credentials"}})
		expectOAuthErr(t, r, "unauthorized_client", http.StatusBadRequest)
		// An unknown grant type.
		r = rp.token(t, s, url.Values{"grant_type": {"password"}, "username": {user.email}, "password": {user.password}})
		expectOAuthErr(t, r, "unsupported_grant_type", http.StatusBadRequest)
	})

	t.Run("WrongClientSecret", func(t *testing.T) {
		a := rp.newAuthz("openid")
		code := a.code(t, s, user.Access(), nil)
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {oauthRedirect}, "code_verifier": {a.verifier}}
		expectTokenErr(t, oauthDo(t, s, "POST", "/oauth2/token", form, basic(rp.id, other.secret)), "invalid_client")
		// A confidential client cannot pass as public.
		form.Set("client_id", rp.id)
		expectTokenErr(t, oauthDo(t, s, "POST", "/oauth2/token", form), "invalid_client")
	})

	t.Run("ScopeBeyondClient", func(t *testing.T) {
		q, _ := valid(rp)
		q.Set("scope", "openid admin:everything")
		oauthErrorAtRedirect(t, oauthAuthorize(t, s, q), "invalid_scope", q.Get("state"))
	})

	t.Run("NoOpenRedirectThroughErrors", func(t *testing.T) {
		const evil = "https://evil.e2e.test/cb"
		for name, spoil := range map[string]func(url.Values){
			"no PKCE":           func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") },
			"plain PKCE":        func(q url.Values) { q.Set("code_challenge_method", "plain") },
			"response_type":     func(q url.Values) { q.Set("response_type", "token") },
			"scope":             func(q url.Values) { q.Set("scope", "openid admin:everything") },
			"unknown client":    func(q url.Values) { q.Set("client_id", "gh_client_"+randHex(8)) },
			"no client":         func(q url.Values) { q.Del("client_id") },
			"otherwise correct": func(url.Values) {},
		} {
			q, _ := valid(rp)
			spoil(q)
			q.Set("redirect_uri", evil)
			oauthNoRedirect(t, oauthAuthorize(t, s, q), name+" with an unregistered redirect_uri")
		}
	})

	t.Run("UnknownClient", func(t *testing.T) {
		q, _ := valid(rp)
		q.Set("client_id", "gh_client_"+randHex(8))
		oauthNoRedirect(t, oauthAuthorize(t, s, q), "unknown client_id")
		r := oauthDo(t, s, "POST", "/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, basic("gh_client_"+randHex(8), "x"))
		expectTokenErr(t, r, "invalid_client")
	})

	t.Run("BadResponseType", func(t *testing.T) {
		q, _ := valid(rp)
		q.Set("response_type", "token")
		r := oauthAuthorize(t, s, q)
		if r.Status != http.StatusFound {
			t.Fatalf("%s: a validated redirect URI gets the error", r)
		}
		back := oauthAtRedirect(t, r.req, r.Header.Get("Location"))
		// RFC 6749 4.1.2.1 allows either: the server does not issue tokens
		// this way, or this client may not ask for them.
		if e := back.Get("error"); e != "unsupported_response_type" && e != "unauthorized_client" {
			t.Errorf("%s: error %q, want unsupported_response_type or unauthorized_client", r.req, e)
		}
		if back.Get("code") != "" || back.Get("access_token") != "" {
			t.Errorf("%s: Location %q carries a credential", r.req, r.Header.Get("Location"))
		}
	})

	t.Run("ContinueGuards", func(t *testing.T) {
		q, _ := valid(rp)
		id := oauthPending(t, oauthAuthorize(t, s, q))
		expectOAuthErr(t, oauthContinue(t, s, "", id, nil), "invalid_token", http.StatusUnauthorized)
		expectOAuthErr(t, oauthContinue(t, s, "junk.junk.junk", id, nil), "invalid_token", http.StatusUnauthorized)
		expectOAuthErr(t, oauthContinue(t, s, user.Access(), "nope-"+randHex(16), nil), "invalid_request", http.StatusBadRequest)
		// The request survived the failed attempts, and is single use.
		oauthRedirectTo(t, oauthContinue(t, s, user.Access(), id, nil))
		expectOAuthErr(t, oauthContinue(t, s, user.Access(), id, nil), "invalid_request", http.StatusBadRequest)
		// A logged-out user's token cannot continue.
		d := s.newUser(t, true)
		expect(t, d.do(t, "POST", "/auth/logout", nil, bearer(d.Access())), http.StatusNoContent, "")
		id = oauthPending(t, oauthAuthorize(t, s, q))
		expectOAuthErr(t, oauthContinue(t, s, d.Access(), id, nil), "invalid_token", http.StatusUnauthorized)
	})

	t.Run("IntrospectionNeedsASecret", func(t *testing.T) {
		r := oauthDo(t, s, "POST", "/oauth2/introspect", url.Values{"token": {user.Access()}, "client_id": {pub.id}})
		if r.Status != http.StatusUnauthorized && r.Status != http.StatusBadRequest || oauthErr(r) != "invalid_client" {
			t.Errorf("%s: want 401 invalid_client: introspection is for authenticated clients", r)
		}
		// Without any client authentication: refused, as a failed client
		// authentication (RFC 6749 5.2) or a malformed request.
		r = oauthDo(t, s, "POST", "/oauth2/introspect", url.Values{"token": {user.Access()}})
		if e := oauthErr(r); r.Status != http.StatusUnauthorized && r.Status != http.StatusBadRequest || e != "invalid_client" && e != "invalid_request" {
			t.Errorf("%s: want 401 invalid_client (or 400 invalid_request) without client authentication", r)
		}
		if _, ok := r.JSON()["active"]; ok {
			t.Errorf("%s: an unauthenticated introspection answered about the token", r)
		}
	})

	t.Run("RevokeAnotherClientsToken", func(t *testing.T) {
		l := rp.login(t, s, user, nil, "openid", "offline_access")
		// RFC 7009: 200 whatever the token, but only a client's own
		// tokens are revoked.
		other.revoke(t, s, l.tok.RefreshToken)
		other.revoke(t, s, l.tok.AccessToken)
		rp.accessLive(t, s, "after another client's revocation attempt", l.tok.AccessToken)
		if r := rp.refresh(t, s, l.tok.RefreshToken); r.Status != http.StatusOK {
			t.Errorf("after another client's revocation attempt: %s, want 200", r)
		}
		other.revoke(t, s, "not-a-token")
	})
}

// oauthErrorAtRedirect asserts that r sends the user agent to the
// registered redirect URI with error want and the request's state.
func oauthErrorAtRedirect(t *testing.T, r *resp, want, state string) {
	t.Helper()
	if r.Status != http.StatusFound && r.Status != http.StatusSeeOther {
		t.Errorf("%s: want a redirect to %s with error=%s", r, oauthRedirect, want)
		return
	}
	q := oauthAtRedirect(t, r.req, r.Header.Get("Location"))
	if q.Get("error") != want || q.Get("state") != state || q.Get("code") != "" {
		t.Errorf("%s: Location %q, want error=%s, state=%s and no code", r.req, r.Header.Get("Location"), want, state)
	}
}

// oauthNoRedirect asserts a 400 that sends the user agent nowhere.
func oauthNoRedirect(t *testing.T, r *resp, what string) {
	t.Helper()
	if r.Status != http.StatusBadRequest {
		t.Errorf("%s: %s, want 400", what, r)
	}
	if loc, ok := r.Header["Location"]; ok {
		t.Errorf("%s: %s: Location %q, want no Location header at all", what, r.req, loc)
	}
	if r.Status < 400 {
		return
	}
	if ct := r.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/json") && oauthErr(r) == "" {
		t.Errorf("%s: %s: a JSON error without an error member", what, r)
	}
}
