package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// idpSQLiteEnv starts one SQLite server with the provider registered as
// "corp" and an allowlisted app URL.
func idpSQLiteEnv(t *testing.T) (*idpOP, *hrEnv) {
	t.Helper()
	op := idpStartOP(t)
	env := hrStart(t, "sqlite", "--redirect-allowlist", "https://app.example.com/return,com.example.app:/oauth")
	op.addTo(t, env, "corp")
	return op, env
}

// withQuery returns the callback with query parameter k set to v (or
// removed when v is empty).
func withQuery(t *testing.T, callback, k, v string) string {
	t.Helper()
	u, err := url.Parse(callback)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if v == "" {
		q.Del(k)
	} else {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	return u.RequestURI()
}

// TestIdPAttackState: the callback's state is checked against the
// browser's flow cookie and is single use; a callback without the cookie
// (login CSRF), with a forged one, a missing, wrong or replayed state, or a
// code replayed into a fresh flow, starts no session.
func TestIdPAttackState(t *testing.T) {
	t.Parallel()
	op, env := idpSQLiteEnv(t)
	s := env.s
	account := "http://" + strings.TrimPrefix(s.base, "http://") + "/account"

	t.Run("MissingState", func(t *testing.T) {
		op.queue("sub-"+randHex(6), newEmail(), true)
		d := s.newDevice(false)
		f := idpBegin(t, d, "corp", nil)
		idpRefused(t, idpCallback(t, d, withQuery(t, f.callback, "state", "")), "invalid_state")
	})
	t.Run("WrongState", func(t *testing.T) {
		op.queue("sub-"+randHex(6), newEmail(), true)
		other := s.newDevice(false)
		otherFlow := idpBegin(t, other, "corp", nil)
		otherState, _ := url.ParseQuery(otherFlow.callback[strings.IndexByte(otherFlow.callback, '?')+1:])
		op.queue("sub-"+randHex(6), newEmail(), true)
		d := s.newDevice(false)
		f := idpBegin(t, d, "corp", nil)
		// A real state of another flow: valid at the server, not this browser's.
		idpRefused(t, idpCallback(t, d, withQuery(t, f.callback, "state", otherState.Get("state"))), "invalid_state")
		idpRefused(t, idpCallback(t, d, withQuery(t, f.callback, "state", "x"+randHex(20))), "invalid_state")
	})
	t.Run("ReplayedState", func(t *testing.T) {
		email := newEmail()
		op.queue("sub-"+randHex(6), email, true)
		d := s.newDevice(false)
		f := idpBegin(t, d, "corp", nil)
		cookie := d.cookie(idpFlowCookie)
		idpSignedIn(t, d, idpCallback(t, d, f.callback))
		// The same callback with the same cookie, again (an attacker who
		// captured both, or a browser's history).
		replay := s.newDevice(false)
		replay.setCookie(idpFlowCookie, cookie, "/")
		idpRefused(t, idpCallback(t, replay, f.callback), "invalid_state")
	})
	t.Run("CallbackWithoutCookieLoginCSRF", func(t *testing.T) {
		// The attacker starts a flow with their own provider account and
		// plants the callback in the victim's browser.
		op.queue("attacker-"+randHex(6), "attacker-"+newEmail(), true)
		attacker := s.newDevice(false)
		f := idpBegin(t, attacker, "corp", nil)
		victim := s.newDevice(false)
		o := idpCallback(t, victim, f.callback)
		idpRefused(t, o, "invalid_state")
		if o.base != account {
			t.Errorf("without a flow cookie the answer goes to the account page %s, got %q", account, o.base)
		}
		// The victim started a flow of their own: the attacker's callback
		// still does not match it.
		op.queue("victim-"+randHex(6), newEmail(), true)
		idpBegin(t, victim, "corp", nil)
		idpRefused(t, idpCallback(t, victim, f.callback), "invalid_state")
	})
	t.Run("ForgedCookie", func(t *testing.T) {
		op.queue("sub-"+randHex(6), newEmail(), true)
		d := s.newDevice(false)
		f := idpBegin(t, d, "corp", nil)
		c := []byte(d.cookie(idpFlowCookie))
		c[len(c)/2] ^= 1
		d.setCookie(idpFlowCookie, string(c), "/")
		idpRefused(t, idpCallback(t, d, f.callback), "invalid_state")
	})
	t.Run("CodeReplayed", func(t *testing.T) {
		op.queue("sub-"+randHex(6), newEmail(), true)
		d := s.newDevice(false)
		first := idpBegin(t, d, "corp", nil)
		idpSignedIn(t, d, idpCallback(t, d, first.callback))
		firstQ, _ := url.ParseQuery(first.callback[strings.IndexByte(first.callback, '?')+1:])
		// A fresh flow of the same browser, fed the code already redeemed.
		op.queue("sub-"+randHex(6), newEmail(), true)
		d2 := s.newDevice(false)
		second := idpBegin(t, d2, "corp", nil)
		idpRefused(t, idpCallback(t, d2, withQuery(t, second.callback, "code", firstQ.Get("code"))), "provider_error")
	})
	t.Run("ProviderError", func(t *testing.T) {
		op.queue("sub-"+randHex(6), newEmail(), true)
		d := s.newDevice(false)
		f := idpBegin(t, d, "corp", nil)
		cb := withQuery(t, withQuery(t, f.callback, "code", ""), "error", "access_denied")
		idpRefused(t, idpCallback(t, d, cb), "access_denied")
	})
}

// TestIdPAttackIDToken: an ID token the provider's token endpoint returns
// is refused unless it is signed by a key of the provider's JWKS with an
// announced algorithm, for our client, by the provider, unexpired, with
// the flow's nonce.
func TestIdPAttackIDToken(t *testing.T) {
	t.Parallel()
	op, env := idpSQLiteEnv(t)
	rogue := idpRSAKey(t)
	opKid, _ := op.m.Keypair.KeyID()
	cases := map[string]func(c map[string]any) string{
		"OtherAudience": func(c map[string]any) string { c["aud"] = "another-client"; return op.sign(t, c) },
		"OtherIssuer":   func(c map[string]any) string { c["iss"] = "https://evil.example"; return op.sign(t, c) },
		"Expired": func(c map[string]any) string {
			now := time.Now().Unix()
			c["iat"], c["exp"] = now-7200, now-3600
			return op.sign(t, c)
		},
		"WrongNonce": func(c map[string]any) string { c["nonce"] = "not-the-flows-nonce"; return op.sign(t, c) },
		"NoNonce":    func(c map[string]any) string { delete(c, "nonce"); return op.sign(t, c) },
		"AlgNone": func(c map[string]any) string {
			tok := op.sign(t, c)
			parts := strings.Split(tok, ".")
			return b64.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
		},
		"KeyNotInJWKS":     func(c map[string]any) string { return idpSign(t, rogue, "rogue-kid", c) },
		"ProviderKidRogue": func(c map[string]any) string { return idpSign(t, rogue, opKid, c) },
		"SignatureCut": func(c map[string]any) string {
			tok := op.sign(t, c)
			return tok[:strings.LastIndexByte(tok, '.')+1]
		},
	}
	for name, forge := range cases {
		t.Run(name, func(t *testing.T) {
			op.setForge(forge)
			defer op.setForge(nil)
			email := newEmail()
			op.queue("sub-"+randHex(6), email, true)
			idpRefused(t, idpTry(t, env.s, "corp"), "invalid_id_token")
			if n := idpUserCount(t, env, email); n != 0 {
				t.Errorf("a refused ID token created an account")
			}
		})
	}
	// The control: the same forging path with nothing changed signs in,
	// so the refusals above are the checks' doing.
	t.Run("ControlUnchanged", func(t *testing.T) {
		op.setForge(func(c map[string]any) string { return op.sign(t, c) })
		defer op.setForge(nil)
		op.queue("sub-"+randHex(6), newEmail(), true)
		idpSignIn(t, env.s, "corp")
	})
}

// TestIdPAttackOpenRedirect: redirect_to must be on the public origin or
// under an allowlist entry; anything else is a 400 invalid_redirect and no
// redirect at all.
func TestIdPAttackOpenRedirect(t *testing.T) {
	t.Parallel()
	op, env := idpSQLiteEnv(t)
	s := env.s
	host := strings.TrimPrefix(s.base, "http://")
	for _, bad := range []string{
		"https://evil.example/", "//evil.example", "//evil.example/account", "/\\evil.example", "\\\\evil.example",
		"https:evil.example", "http:evil.example", "https:/evil.example", "https:///evil.example",
		"http://" + host + "@evil.example/", "http://evil.example@" + host + "/account",
		"http://" + host + "\\@evil.example", "https://app.example.com@evil.example/return",
		"https://app.example.com/returned", "https://app.example.com/return/../admin",
		"https://app.example.com/return/%2e%2e/admin", "https://app.example.com.evil.example/return",
		"http://app.example.com/return", "javascript:alert(1)", "com.example.app:oauth", "com.evil.app:/oauth",
		"/account#fragment", "/account\r\nLocation: https://evil.example",
	} {
		r := idpAuthorize(t, s.newDevice(false), "corp", url.Values{"redirect_to": {bad}})
		if expect(t, r, http.StatusBadRequest, "invalid_redirect") && r.Header.Get("Location") != "" {
			t.Errorf("%s: a refused redirect_to still redirects to %q", r.req, r.Header.Get("Location"))
		}
		if r.Cookie(idpFlowCookie) != nil {
			t.Errorf("%s: a refused authorize set a flow cookie", r.req)
		}
	}
	// Allowed ones come back where asked.
	for _, good := range []string{"/account?tab=linked", s.base + "/account", "https://app.example.com/return/x"} {
		op.queue("sub-"+randHex(6), newEmail(), true)
		d := s.newDevice(false)
		f := idpBegin(t, d, "corp", url.Values{"redirect_to": {good}})
		o := idpCallback(t, d, f.callback)
		want := good
		if strings.HasPrefix(good, "/") {
			want = s.base + good
		}
		if o.base != want || o.err() != "" {
			t.Errorf("redirect_to %q: came back to %q (error %q), want %q", good, o.base, o.err(), want)
		}
	}
	// An unknown provider is a 404, not a redirect.
	r := idpAuthorize(t, s.newDevice(false), "nope", nil)
	expect(t, r, http.StatusNotFound, "not_found")
}

// TestIdPAttackPreHijacking: an address counts only when both sides proved
// it. An unverified provider address never links (nor creates an account),
// and a local account with an unverified address is never linked to.
func TestIdPAttackPreHijacking(t *testing.T) {
	hrEachBackend(t, func(t *testing.T, backend string) {
		op := idpStartOP(t)
		env := hrStart(t, backend)
		op.addTo(t, env, "corp")
		s := env.s

		t.Run("UnverifiedProviderEmailNeverLinks", func(t *testing.T) {
			victim := s.newUser(t, true)
			idpVerify(t, env, victim.user.ID)
			op.queue("attacker-"+randHex(6), strings.ToUpper(victim.email), false)
			idpRefused(t, idpTry(t, s, "corp"), "account_exists")
			if n := len(idpIdentities(t, victim)); n != 0 {
				t.Errorf("the victim's account got %d identities", n)
			}
			victim.assertAlive(t, "the victim's session")
		})
		t.Run("UnverifiedLocalAccountNeverLinked", func(t *testing.T) {
			// The attacker signed up first with the victim's address.
			planted := s.newUser(t, true)
			op.queue("victim-"+randHex(6), planted.email, true)
			idpRefused(t, idpTry(t, s, "corp"), "account_exists")
			if n := len(idpIdentities(t, planted)); n != 0 {
				t.Errorf("the planted account got %d identities", n)
			}
		})
		t.Run("UnverifiedProviderEmailCreatesNothing", func(t *testing.T) {
			email := newEmail()
			op.queue("sub-"+randHex(6), email, false)
			idpRefused(t, idpTry(t, s, "corp"), "email_not_verified")
			if n := idpUserCount(t, env, email); n != 0 {
				t.Errorf("an unverified provider address created an account")
			}
		})
		t.Run("BothVerifiedLinks", func(t *testing.T) {
			local := s.newUser(t, true)
			idpVerify(t, env, local.user.ID)
			op.queue("sub-"+randHex(6), strings.ToUpper(local.email), true)
			d, u := idpSignIn(t, s, "corp")
			if u["id"] != local.user.ID {
				t.Errorf("signed in as %v, want the verified local account %s", u["id"], local.user.ID)
			}
			if n := len(idpIdentities(t, d)); n != 1 {
				t.Errorf("identities = %d, want 1", n)
			}
		})
	})
}

// TestIdPAttackLoginCode: a login_code is single use, dies after 60 s, and
// nothing else passes for one.
func TestIdPAttackLoginCode(t *testing.T) {
	t.Parallel()
	op, env := idpSQLiteEnv(t)
	s := env.s
	code := func() string {
		op.queue("sub-"+randHex(6), newEmail(), true)
		d := s.newDevice(true)
		f := idpBegin(t, d, "corp", url.Values{"token_transport": {"body"}, "redirect_to": {"com.example.app:/oauth"}})
		o := idpCallback(t, d, f.callback)
		c := o.fragment.Get("login_code")
		if c == "" {
			t.Fatalf("no login_code: Location %q", o.r.Header.Get("Location"))
		}
		return c
	}
	exchange := func(c string) *resp {
		return s.do(t, "POST", "/auth/idps/exchange", map[string]any{"login_code": c})
	}
	c := code()
	expect(t, exchange(c), http.StatusOK, "")
	expect(t, exchange(c), http.StatusUnauthorized, "invalid_code")

	old := code()
	id, _, _ := strings.Cut(old, ".")
	// 61 seconds later (the row's expiry moved back instead of waiting).
	past := time.Now().Add(-time.Second).UnixMicro()
	if n := idpSQL(t, env, `UPDATE one_time_secrets SET expires_at = ? WHERE id = ?`, past, id); n != 1 {
		t.Fatalf("expire login code: %d rows", n)
	}
	expect(t, exchange(old), http.StatusUnauthorized, "invalid_code")

	for _, bad := range []string{"x", strings.Repeat("A", 200), old + "x", "." + old} {
		expect(t, exchange(bad), http.StatusUnauthorized, "invalid_code")
	}
	expect(t, s.do(t, "POST", "/auth/idps/exchange", map[string]any{}), http.StatusUnprocessableEntity, "validation_failed")
}
