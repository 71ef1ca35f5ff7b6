package e2e

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestOAuthMultiInstance: two instances on PostgreSQL + Redis behind one
// issuer. A flow may hop between them (authorize and continue on A, token
// on B), and whatever ends an authorization on one instance ends it on the
// other within a second: revocation of the refresh token, RP-initiated
// logout, a replayed code.
func TestOAuthMultiInstance(t *testing.T) {
	t.Parallel()
	env := oauthStart(t, "postgres")
	a, b := env.a, env.b
	rp := env.webClient(t, "Multi App", "--first-party")
	user := a.newUser(t, true)

	// refusedOn polls introspection of access on s every 50 ms and fails
	// after a second.
	refusedOn := func(t *testing.T, s *server, what, access string) {
		t.Helper()
		oauthAwait(t, what, time.Second, func() bool { return !rp.active(t, s, access) })
	}

	t.Run("AuthorizeOnATokenOnB", func(t *testing.T) {
		az := rp.newAuthz("openid", "email", "offline_access")
		code := az.code(t, a, user.Access(), nil)
		l := rp.finish(t, b, az, code) // exchange and ID token verification through B
		oauthCheckIDToken(t, env, rp, user, l, true)
		// The ID token verifies through A as well: the keys are shared.
		rp.verifyID(t, a, l.rawID)
		rp.accessLive(t, a, "token from B, used on A", l.tok.AccessToken)

		// Refresh on A, then revoke the new refresh token on B.
		ctx := env.ctx(t, a)
		t2, err := rp.config(a, az.scopes...).TokenSource(ctx, &oauth2.Token{RefreshToken: l.tok.RefreshToken, Expiry: time.Now().Add(-time.Minute)}).Token()
		if err != nil {
			t.Fatalf("refresh on A: %v", err)
		}
		rp.accessLive(t, b, "refreshed on A, used on B", t2.AccessToken)
		rp.revoke(t, b, t2.RefreshToken)
		refusedOn(t, a, "access token inactive on A after the refresh token was revoked on B", t2.AccessToken)
		refusedOn(t, a, "the first access token too", l.tok.AccessToken)
		expectTokenErr(t, rp.refresh(t, a, t2.RefreshToken), "invalid_grant")
		if r := userinfo(t, a, t2.AccessToken); r.Status != http.StatusUnauthorized {
			t.Errorf("userinfo on A after revocation on B: %s, want 401", r)
		}
	})

	t.Run("RevokeAccessTokenOnB", func(t *testing.T) {
		l := rp.login(t, a, user, nil, "openid", "offline_access")
		rp.revoke(t, b, l.tok.AccessToken)
		refusedOn(t, a, "access token inactive on A after its revocation on B", l.tok.AccessToken)
		// Revoking an access token ends its session (the contract's rule).
		expectTokenErr(t, rp.refresh(t, a, l.tok.RefreshToken), "invalid_grant")
	})

	t.Run("LogoutOnB", func(t *testing.T) {
		// A sign-in of its own: RP-initiated logout ends the browser's
		// sign-in the app was authorized from, on both instances.
		browser := user.another(t, true)
		l := rp.login(t, a, browser, nil, "openid", "offline_access")
		q := url.Values{"id_token_hint": {l.rawID}, "post_logout_redirect_uri": {oauthPostLogout}, "state": {"s1"}}
		r := oauthDo(t, b, "GET", "/oauth2/logout?"+q.Encode(), nil)
		if r.Status != http.StatusFound || r.Header.Get("Location") != oauthPostLogout+"?state=s1" {
			t.Errorf("%s: Location %q, want 302 to %s?state=s1", r, r.Header.Get("Location"), oauthPostLogout)
		}
		refusedOn(t, a, "access token inactive on A after logout on B", l.tok.AccessToken)
		rp.mustDie(t, a, "after logout on B", l)
		browser.assertDead(t, "the sign-in on A the app was authorized from, after logout on B")
		expect(t, user.me(t), http.StatusOK, "") // another sign-in of the same user lives
	})

	t.Run("CodeReplayAcrossInstances", func(t *testing.T) {
		az := rp.newAuthz("openid", "offline_access")
		code := az.code(t, a, user.Access(), nil)
		r := rp.exchange(t, a, code, az.verifier)
		if !expect(t, r, http.StatusOK, "") {
			t.FailNow()
		}
		at, _ := r.JSON()["access_token"].(string)
		rt, _ := r.JSON()["refresh_token"].(string)
		expectTokenErr(t, rp.exchange(t, b, code, az.verifier), "invalid_grant")
		refusedOn(t, a, "first redemption's access token inactive on A after the replay on B", at)
		expectTokenErr(t, rp.refresh(t, a, rt), "invalid_grant")
	})

	t.Run("ConsentOnBothInstances", func(t *testing.T) {
		third := env.webClient(t, "Third App")
		az := third.newAuthz("openid")
		id := az.start(t, a)
		// The pending request lives in the shared store: B continues it.
		expectOAuthErr(t, oauthContinue(t, b, user.Access(), id, nil), "consent_required", http.StatusForbidden)
		code := oauthRedirectTo(t, oauthContinue(t, a, user.Access(), id, yes)).Get("code")
		third.finish(t, b, az, code)
		// The consent given on A is known on B.
		third.login(t, b, user, nil, "openid")
	})
}
