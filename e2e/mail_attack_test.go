package e2e

// Attacks on the mail flows: enumeration through forgot and magic-link,
// used, voided, tampered, truncated, other-user and other-kind tokens,
// code guessing, concurrent use of one token, a reset link after a password
// change, header injection, and the send limits across instances.

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// mailKindSuccess is the status a good token of each action gets.
var mailKindSuccess = map[string]int{
	"verify-email":   http.StatusOK,
	"reset-password": http.StatusNoContent,
	"magic-link":     http.StatusOK,
	"change-email":   http.StatusOK,
}

// mailUseBody is the request that spends a token of action.
func mailUseBody(action, token string) (path string, body map[string]any) {
	switch action {
	case "verify-email":
		return "/auth/email/verify", map[string]any{"token": token}
	case "reset-password":
		return "/auth/password/reset", map[string]any{"token": token, "new_password": newPassword()}
	case "magic-link":
		return "/auth/magic-link/verify", map[string]any{"token": token, "token_transport": "body"}
	case "change-email":
		return "/auth/email/change/confirm", map[string]any{"token": token}
	}
	panic("unknown action " + action)
}

// mailUse presents token at the endpoint of action.
func mailUse(t *testing.T, s *server, action, token string) *resp {
	t.Helper()
	path, body := mailUseBody(action, token)
	return s.do(t, "POST", path, body)
}

// mailNext runs request and returns the next link of action that reaches
// addr after it.
func mailNext(t *testing.T, c *mailCapture, addr, action string, request func()) (mailLink, *mailMsg) {
	t.Helper()
	n := 0
	for _, m := range c.To(addr) {
		if len(mailLinks(m, action)) > 0 {
			n++
		}
	}
	request()
	return c.AwaitLink(t, addr, action, n+1)
}

// mailTokenFor makes the server mail u a token of action and returns it
// with the message (for change-email, sent to a new address of the user).
func mailTokenFor(t *testing.T, s *server, c *mailCapture, u *device, action string) (mailLink, *mailMsg) {
	t.Helper()
	switch action {
	case "verify-email":
		return mailNext(t, c, u.email, action, func() {
			mailAccepted(t, s.do(t, "POST", "/auth/email/verify/send", map[string]any{}, bearer(u.Access())))
		})
	case "reset-password":
		return mailNext(t, c, u.email, action, func() { mailForgot(t, s, u.email) })
	case "magic-link":
		return mailNext(t, c, u.email, action, func() { mailMagic(t, s, u.email) })
	case "change-email":
		to := "new." + newEmail()
		return mailNext(t, c, to, action, func() {
			mailAccepted(t, s.do(t, "POST", "/auth/email/change",
				map[string]any{"new_email": to, "current_password": u.password}, bearer(u.Access())))
		})
	}
	t.Fatalf("unknown action %s", action)
	return mailLink{}, nil
}

// mailSpend asserts that token of action works (once).
func mailSpend(t *testing.T, s *server, action, token, what string) {
	t.Helper()
	r := mailUse(t, s, action, token)
	if !expect(t, r, mailKindSuccess[action], "") {
		t.Errorf("  ^ %s: the genuine %s token should work", what, action)
	}
}

// TestMailAttackNoEnumeration: forgot and magic-link for an unknown, a
// disabled and a real address give the same status, body and headers, in
// similar time (the statistics of TestAttackLoginIndistinguishable), and
// only the real address gets mail.
func TestMailAttackNoEnumeration(t *testing.T) {
	t.Parallel()
	hrEachBackend(t, func(t *testing.T, backend string) {
		c := mailStartSMTP(t)
		e := mailStart(t, backend, c)
		s := e.s
		admin := e.admin(t)
		realU := s.newUser(t, true)
		disabled := s.newUser(t, true)
		r := s.do(t, "PATCH", "/admin/users/"+disabled.user.ID, map[string]any{"disabled": true}, bearer(admin.Access()))
		expect(t, r, http.StatusOK, "")
		unknown := "nobody." + newEmail()
		// Signup's verification mails are out of the way first.
		c.Await(t, realU.email, 1)
		c.Await(t, disabled.email, 1)

		cases := []struct{ name, email string }{
			{"unknown address", unknown},
			{"disabled account", disabled.email},
			{"real account", realU.email},
		}
		const ref = 2
		for _, path := range []string{"/auth/password/forgot", "/auth/magic-link"} {
			const rounds = 15
			times := make([][]time.Duration, len(cases))
			prints := make([]string, len(cases))
			for _, cs := range cases { // warm up
				s.do(t, "POST", path, map[string]any{"email": cs.email})
			}
			for i := 0; i < rounds; i++ {
				for j, cs := range cases {
					start := time.Now()
					r := s.do(t, "POST", path, map[string]any{"email": cs.email})
					times[j] = append(times[j], time.Since(start))
					mailAccepted(t, r)
					fp := atkFingerprint(r)
					if prints[j] == "" {
						prints[j] = fp
					} else if fp != prints[j] {
						t.Errorf("%s %s: answers differ between attempts:\n%s\n---\n%s", path, cs.name, prints[j], fp)
					}
				}
			}
			for j := range cases {
				if prints[j] != prints[ref] {
					t.Errorf("%s: %q and %q are distinguishable:\n%s\n---\n%s", path, cases[j].name, cases[ref].name, prints[j], prints[ref])
				}
			}
			meds := make([]time.Duration, len(cases))
			for j := range cases {
				meds[j] = atkMedian(times[j])
			}
			t.Logf("%s medians (unknown, disabled, real): %v", path, meds)
			for j, cs := range cases {
				if j == ref {
					continue
				}
				ratios := make([]float64, rounds)
				for i := range rounds {
					ratios[i] = float64(times[j][i]) / float64(times[ref][i])
				}
				slices.Sort(ratios)
				if m := ratios[rounds/2]; m > 3 || m < 1.0/3 {
					t.Errorf("%s: %s takes %.2fx the time of a real account (medians %v vs %v): an enumeration oracle",
						path, cs.name, m, meds[j], meds[ref])
				}
			}
		}
		// Mail went to the real account only.
		c.AwaitLink(t, realU.email, "reset-password", 1)
		c.AwaitLink(t, realU.email, "magic-link", 1)
		c.Quiet(t, unknown, 0, 2*time.Second)
		c.Quiet(t, disabled.email, 1, 0) // signup's verification mail only
	})
}

// TestMailAttackUsedToken: every kind of mailed token works once; the second
// use is 400 invalid_link.
func TestMailAttackUsedToken(t *testing.T) {
	t.Parallel()
	c := mailStartSMTP(t)
	s := startServer(t, mailFlags(c)...)
	for _, action := range mailActions {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			u := s.newUser(t, true)
			var link mailLink
			if action == "verify-email" {
				link, _ = c.AwaitLink(t, u.email, action, 1) // signup's
			} else {
				link, _ = mailTokenFor(t, s, c, u, action)
			}
			mailSpend(t, s, action, link.Token, "first use")
			for i := 0; i < 2; i++ {
				expect(t, mailUse(t, s, action, link.Token), http.StatusBadRequest, "invalid_link")
			}
		})
	}
}

// TestMailAttackVoidedToken: a newer mail of the same kind voids the older
// token (and, for magic links, the older code); the newer one works.
func TestMailAttackVoidedToken(t *testing.T) {
	t.Parallel()
	c := mailStartSMTP(t)
	s := startServer(t, mailFlags(c)...)
	for _, action := range mailActions {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			u := s.newUser(t, true)
			var first mailLink
			var firstMsg *mailMsg
			if action == "verify-email" {
				first, firstMsg = c.AwaitLink(t, u.email, action, 1) // signup's
			} else {
				first, firstMsg = mailTokenFor(t, s, c, u, action)
			}
			second, secondMsg := mailTokenFor(t, s, c, u, action)
			if first.Token == second.Token {
				t.Fatalf("two mails carry the same %s token", action)
			}
			expect(t, mailUse(t, s, action, first.Token), http.StatusBadRequest, "invalid_link")
			if action == "magic-link" {
				c1, c2 := mailCode(t, firstMsg), mailCode(t, secondMsg)
				if c1 != c2 { // equal one time in a million
					r := s.do(t, "POST", "/auth/magic-link/verify", map[string]any{"email": u.email, "code": c1, "token_transport": "body"})
					expect(t, r, http.StatusUnauthorized, "invalid_code")
				}
			}
			mailSpend(t, s, action, second.Token, "the newer mail")
			expect(t, mailUse(t, s, action, first.Token), http.StatusBadRequest, "invalid_link")
		})
	}
}

// Expired tokens are not tested here: the lifetimes (15 min to 24 h) cannot
// be shortened from outside the binary. auth.TestMailedLinksExpire presents
// a reset link past its hour on a controlled clock, and store/storetest
// covers the expiry condition of the single-use UPDATE.

// mailTampered lists altered forms of a genuine token. lenient marks the
// forms that may also be refused as malformed input (422).
func mailTampered(tok string) []struct {
	name, tok string
	lenient   bool
} {
	id, secret, _ := strings.Cut(tok, ".")
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	return []struct {
		name, tok string
		lenient   bool
	}{
		{"last secret character changed", id + "." + flip(secret, len(secret)-1), false},
		{"first secret character changed", id + "." + flip(secret, 0), false},
		{"id character changed", flip(id, 0) + "." + secret, false},
		{"id character changed (last)", flip(id, len(id)-1) + "." + secret, false},
		{"secret upper-cased", id + "." + strings.ToUpper(secret), false},
		{"truncated by one", tok[:len(tok)-1], false},
		{"truncated to half the secret", id + "." + secret[:len(secret)/2], false},
		{"id and dot only", id + ".", false},
		{"id only", id, false},
		{"secret only", secret, false},
		{"dot and secret", "." + secret, false},
		{"one character appended", tok + "A", false},
		{"padding appended", tok + "=", false},
		{"extra segment", tok + "." + secret, false},
		{"dot percent-encoded", id + "%2E" + secret, false},
		{"the whole link", mailPublicURL + "/account/x#token=" + tok, false},
		{"empty", "", true},
		{"4 KiB long", tok + strings.Repeat("A", 4096), true},
	}
}

// TestMailAttackTamperedToken: altered and truncated forms of every kind of
// token are 400 invalid_link (a few malformed ones may be 422), and none of
// them spends the genuine token, which works afterwards.
func TestMailAttackTamperedToken(t *testing.T) {
	t.Parallel()
	c := mailStartSMTP(t)
	s := startServer(t, mailFlags(c)...)
	for _, action := range mailActions {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			u := s.newUser(t, true)
			var link mailLink
			if action == "verify-email" {
				link, _ = c.AwaitLink(t, u.email, action, 1)
			} else {
				link, _ = mailTokenFor(t, s, c, u, action)
			}
			for _, v := range mailTampered(link.Token) {
				if v.tok == link.Token {
					continue // e.g. a secret without lower-case letters
				}
				r := mailUse(t, s, action, v.tok)
				if v.lenient && r.Status == http.StatusUnprocessableEntity && r.Code() == "validation_failed" {
					continue
				}
				if !expect(t, r, http.StatusBadRequest, "invalid_link") {
					t.Errorf("  ^ %s: %s", action, v.name)
				}
			}
			if action == "magic-link" {
				for _, v := range []string{"", "1", "12345", "1234567", "abcdef"} {
					r := s.do(t, "POST", "/auth/magic-link/verify", map[string]any{"email": "nobody." + newEmail(), "code": v, "token_transport": "body"})
					if r.Status != http.StatusUnprocessableEntity {
						expect(t, r, http.StatusUnauthorized, "invalid_code")
					}
				}
			}
			mailSpend(t, s, action, link.Token, "after the tampered attempts")
		})
	}
}

// TestMailAttackOtherUserToken: halves of two users' tokens do not combine;
// a user's token acts on that user only; a user's code does not sign in
// another user.
func TestMailAttackOtherUserToken(t *testing.T) {
	t.Parallel()
	c := mailStartSMTP(t)
	s := startServer(t, mailFlags(c)...)
	for _, action := range mailActions {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			a, b := s.newUser(t, true), s.newUser(t, true)
			var la, lb mailLink
			var ma, mb *mailMsg
			if action == "verify-email" {
				la, ma = c.AwaitLink(t, a.email, action, 1)
				lb, mb = c.AwaitLink(t, b.email, action, 1)
			} else {
				la, ma = mailTokenFor(t, s, c, a, action)
				lb, mb = mailTokenFor(t, s, c, b, action)
			}
			ida, seca := mailSplit(t, la.Token)
			idb, secb := mailSplit(t, lb.Token)
			for _, mixed := range []string{ida + "." + secb, idb + "." + seca} {
				expect(t, mailUse(t, s, action, mixed), http.StatusBadRequest, "invalid_link")
			}
			if action == "magic-link" {
				if ca, cb := mailCode(t, ma), mailCode(t, mb); ca != cb {
					r := s.do(t, "POST", "/auth/magic-link/verify", map[string]any{"email": b.email, "code": ca, "token_transport": "body"})
					expect(t, r, http.StatusUnauthorized, "invalid_code")
				}
			}
			// A's token acts on A alone.
			r := mailUse(t, s, action, la.Token)
			if !expect(t, r, mailKindSuccess[action], "") {
				return
			}
			switch action {
			case "verify-email":
				if !mailMeVerified(t, s, a.Access()) || mailMeVerified(t, s, b.Access()) {
					t.Errorf("A's verification link should verify A and only A")
				}
			case "reset-password":
				b.assertAlive(t, "B after A's reset")
				s.login(t, b.email, b.password, true)
				a.assertDead(t, "A after A's reset")
			case "magic-link":
				if id, _ := mailUser(t, r)["id"].(string); id != a.user.ID {
					t.Errorf("A's magic link signed in %s, want A (%s)", id, a.user.ID)
				}
			case "change-email":
				if u := mailUser(t, r); u["id"] != a.user.ID {
					t.Errorf("A's change link changed user %v, want A", u["id"])
				}
				if u := mailUserOf(t, s, b); u["email"] != b.email {
					t.Errorf("B's email changed to %v", u["email"])
				}
			}
			// B's own token still works for B.
			mailSpend(t, s, action, lb.Token, "B's token after A's")
		})
	}
}

// TestMailAttackCrossKind: a token of one kind is refused (400 invalid_link)
// by every other kind's endpoint, as are a magic code, a refresh token and
// an access token presented as links; none of it spends the genuine token.
func TestMailAttackCrossKind(t *testing.T) {
	t.Parallel()
	c := mailStartSMTP(t)
	s := startServer(t, mailFlags(c)...)
	for _, action := range mailActions {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			u := s.newUser(t, true)
			var link mailLink
			if action == "verify-email" {
				link, _ = c.AwaitLink(t, u.email, action, 1)
			} else {
				link, _ = mailTokenFor(t, s, c, u, action)
			}
			for _, other := range mailActions {
				if other == action {
					continue
				}
				if !expect(t, mailUse(t, s, other, link.Token), http.StatusBadRequest, "invalid_link") {
					t.Errorf("  ^ a %s token presented at the %s endpoint", action, other)
				}
			}
			mailSpend(t, s, action, link.Token, "after cross-kind attempts")
		})
	}
	t.Run("other credentials", func(t *testing.T) {
		t.Parallel()
		u := s.newUser(t, true)
		_, m := mailTokenFor(t, s, c, u, "magic-link")
		code := mailCode(t, m)
		for _, action := range mailActions {
			for label, v := range map[string]string{"magic code": code, "refresh token": u.Refresh(), "access token": u.Access()} {
				r := mailUse(t, s, action, v)
				if !expect(t, r, http.StatusBadRequest, "invalid_link") {
					t.Errorf("  ^ a %s presented at the %s endpoint", label, action)
				}
			}
		}
		// Neither the code nor the session was spent.
		_, r := mailVerifyMagic(t, s, true, map[string]any{"email": u.email, "code": code})
		expect(t, r, http.StatusOK, "")
		u.assertAlive(t, "session whose refresh token was presented as a link")
	})
}

// TestMailAttackWrongCodes: a code dies after 5 wrong guesses (the 6th
// attempt fails even with the right code) and no session is made; wrong
// codes for an unknown address answer exactly like for a real one; a newer
// mail's code works.
func TestMailAttackWrongCodes(t *testing.T) {
	t.Parallel()
	c := mailStartSMTP(t)
	s := startServer(t, mailFlags(c)...)
	u := s.newUser(t, true)
	_, m := mailTokenFor(t, s, c, u, "magic-link")
	code := mailCode(t, m)
	wrong := func(i int) string {
		for {
			w := fmt.Sprintf("%06d", (atoiOr(code, 0)+i*7919+1)%1000000)
			if w != code {
				return w
			}
			i++
		}
	}
	verify := func(email, code string) *resp {
		return s.do(t, "POST", "/auth/magic-link/verify", map[string]any{"email": email, "code": code, "token_transport": "body"})
	}
	var realPrint string
	for i := 0; i < 5; i++ {
		r := verify(u.email, wrong(i))
		expect(t, r, http.StatusUnauthorized, "invalid_code")
		realPrint = atkFingerprint(r)
	}
	r := verify(u.email, code)
	if !expect(t, r, http.StatusUnauthorized, "invalid_code") {
		t.Errorf("the right code after 5 wrong guesses must fail")
	}
	r = s.do(t, "GET", "/auth/sessions", nil, bearer(u.Access()))
	if expect(t, r, http.StatusOK, "") {
		if list, _ := r.JSON()["sessions"].([]any); len(list) != 1 {
			t.Errorf("guessing made sessions: %d sessions, want 1 (signup's)", len(list))
		}
	}
	// An unknown address answers alike.
	r = verify("nobody."+newEmail(), wrong(9))
	expect(t, r, http.StatusUnauthorized, "invalid_code")
	if fp := atkFingerprint(r); fp != realPrint {
		t.Errorf("a wrong code for an unknown and for a real address answer differently:\n%s\n---\n%s", fp, realPrint)
	}
	// A new mail brings a new, live code.
	_, m = mailTokenFor(t, s, c, u, "magic-link")
	code2 := mailCode(t, m)
	r = verify(u.email, code2)
	if expect(t, r, http.StatusOK, "") {
		checkTokenResponse(t, r, true)
	}
}

// TestMailAttackCodeGuessLimit: with --rate-limit-login, code guesses
// against one account are limited per account, whatever the client IP.
func TestMailAttackCodeGuessLimit(t *testing.T) {
	t.Parallel()
	c := mailStartSMTP(t)
	s := startServer(t, mailFlags(c, "--trusted-proxies", "127.0.0.1", "--rate-limit-login", "3/1m")...)
	u := s.newUser(t, true)
	mailMagic(t, s, u.email, hdr("X-Forwarded-For", prodIP()))
	c.AwaitLink(t, u.email, "magic-link", 1)
	limited := 0
	for i := 0; i < 8; i++ {
		r := s.do(t, "POST", "/auth/magic-link/verify", map[string]any{"email": u.email, "code": fmt.Sprintf("%06d", i), "token_transport": "body"},
			hdr("X-Forwarded-For", prodIP()))
		if atkLimited(t, r) {
			limited++
		} else {
			expect(t, r, http.StatusUnauthorized, "invalid_code")
		}
	}
	if limited < 3 {
		t.Errorf("8 code guesses from 8 addresses against one account with --rate-limit-login 3/1m: only %d were 429", limited)
	}
}

// TestMailAttackConcurrentUse: 20 concurrent uses of one token (reset,
// magic link, magic code, verification, email change) give exactly one
// success; the losers get the one error of their kind.
func TestMailAttackConcurrentUse(t *testing.T) {
	t.Parallel()
	hrEachBackend(t, func(t *testing.T, backend string) {
		c := mailStartSMTP(t)
		s := mailStart(t, backend, c).s
		const n = 20
		race := func(t *testing.T, path string, bodies func(i int) map[string]any, okStatus int, failCode string) (winner int) {
			t.Helper()
			statuses := make([]int, n)
			codes := make([]string, n)
			bodiesOut := make([][]byte, n)
			errs := make([]error, n)
			atOnce(n, func(i int) {
				statuses[i], codes[i], bodiesOut[i], errs[i] = mailRawPost(s, path, bodies(i), nil)
			})
			winner = -1
			wins := 0
			for i := range n {
				switch {
				case errs[i] != nil:
					t.Errorf("request %d: %v", i, errs[i])
				case statuses[i] == okStatus:
					wins++
					winner = i
				case codes[i] != failCode:
					t.Errorf("request %d: %d %s, want %d or %s", i, statuses[i], bodiesOut[i], okStatus, failCode)
				}
			}
			if wins != 1 {
				t.Errorf("%d concurrent uses of one token at %s: %d succeeded, want exactly 1 (statuses %v)", n, path, wins, statuses)
			}
			return winner
		}

		t.Run("reset", func(t *testing.T) {
			t.Parallel()
			u := s.newUser(t, true)
			link, _ := mailTokenFor(t, s, c, u, "reset-password")
			pws := make([]string, n)
			for i := range pws {
				pws[i] = newPassword()
			}
			w := race(t, "/auth/password/reset", func(i int) map[string]any {
				return map[string]any{"token": link.Token, "new_password": pws[i]}
			}, http.StatusNoContent, "invalid_link")
			if w < 0 {
				return
			}
			s.login(t, u.email, pws[w], true)
			loser := pws[(w+1)%n]
			expect(t, s.do(t, "POST", "/auth/login", map[string]any{"email": u.email, "password": loser}), http.StatusUnauthorized, "invalid_credentials")
		})
		sessionsOf := func(t *testing.T, access string) int {
			r := s.do(t, "GET", "/auth/sessions", nil, bearer(access))
			if !expect(t, r, http.StatusOK, "") {
				return -1
			}
			list, _ := r.JSON()["sessions"].([]any)
			return len(list)
		}
		t.Run("magic link", func(t *testing.T) {
			t.Parallel()
			u := s.newUser(t, true)
			link, _ := mailTokenFor(t, s, c, u, "magic-link")
			race(t, "/auth/magic-link/verify", func(int) map[string]any {
				return map[string]any{"token": link.Token, "token_transport": "body"}
			}, http.StatusOK, "invalid_link")
			if got := sessionsOf(t, u.Access()); got != 2 {
				t.Errorf("after 20 concurrent uses of one magic link the user has %d sessions, want 2", got)
			}
		})
		t.Run("magic code", func(t *testing.T) {
			t.Parallel()
			u := s.newUser(t, true)
			_, m := mailTokenFor(t, s, c, u, "magic-link")
			code := mailCode(t, m)
			race(t, "/auth/magic-link/verify", func(int) map[string]any {
				return map[string]any{"email": u.email, "code": code, "token_transport": "body"}
			}, http.StatusOK, "invalid_code")
			if got := sessionsOf(t, u.Access()); got != 2 {
				t.Errorf("after 20 concurrent uses of one code the user has %d sessions, want 2", got)
			}
		})
		t.Run("verification", func(t *testing.T) {
			t.Parallel()
			u := s.newUser(t, true)
			link, _ := c.AwaitLink(t, u.email, "verify-email", 1)
			race(t, "/auth/email/verify", func(int) map[string]any {
				return map[string]any{"token": link.Token}
			}, http.StatusOK, "invalid_link")
		})
		t.Run("email change", func(t *testing.T) {
			t.Parallel()
			u := s.newUser(t, true)
			link, _ := mailTokenFor(t, s, c, u, "change-email")
			race(t, "/auth/email/change/confirm", func(int) map[string]any {
				return map[string]any{"token": link.Token}
			}, http.StatusOK, "invalid_link")
		})
	})
}

// TestMailAttackResetAfterPasswordChange: a reset link used after the user
// changed the password fails (400 invalid_link) and changes nothing; a
// used reset link is dead, and one mailed later is voided by the next
// password change too.
func TestMailAttackResetAfterPasswordChange(t *testing.T) {
	t.Parallel()
	c := mailStartSMTP(t)
	s := startServer(t, mailFlags(c)...)

	u := s.newUser(t, true)
	link, _ := mailTokenFor(t, s, c, u, "reset-password")
	changed := newPassword()
	r := s.do(t, "POST", "/auth/password", map[string]any{"current_password": u.password, "new_password": changed}, bearer(u.Access()))
	if !expect(t, r, http.StatusNoContent, "") {
		t.FailNow()
	}
	expect(t, mailUse(t, s, "reset-password", link.Token), http.StatusBadRequest, "invalid_link")
	s.login(t, u.email, changed, true)
	u.assertAlive(t, "the session that changed the password")

	// After a reset, the used link is dead, and a link mailed later is
	// voided by the next password change just the same.
	l2, _ := mailTokenFor(t, s, c, u, "reset-password")
	pw3 := newPassword()
	r = s.do(t, "POST", "/auth/password/reset", map[string]any{"token": l2.Token, "new_password": pw3})
	expect(t, r, http.StatusNoContent, "")
	v := s.login(t, u.email, pw3, true)
	v.password = pw3
	l3, _ := mailTokenFor(t, s, c, v, "reset-password")
	r = s.do(t, "POST", "/auth/password", map[string]any{"current_password": pw3, "new_password": newPassword()}, bearer(v.Access()))
	expect(t, r, http.StatusNoContent, "")
	expect(t, mailUse(t, s, "reset-password", l3.Token), http.StatusBadRequest, "invalid_link")
}

// TestMailAttackHeaderInjection: CR/LF in names and addresses adds no
// header and no recipient: names may be refused (422) or accepted, but what
// reaches the SMTP server has one To, no Cc/Bcc and no injected header, and
// no RCPT ever names the attacker's address.
func TestMailAttackHeaderInjection(t *testing.T) {
	t.Parallel()
	c := mailStartSMTP(t)
	s := startServer(t, mailFlags(c)...)
	const evil = "evil@example.test"

	names := []string{
		"x\r\nBcc: " + evil + "\r\nX-Injected: 1",
		"x\nBcc: " + evil + "\nX-Injected: 1",
		"x\rBcc: " + evil + "\rX-Injected: 1",
		"x\r\n\r\nBcc: " + evil,
		"x\u2028Bcc: " + evil,
		"x\u0085Bcc: " + evil,
		"Evil <" + evil + ">, x",
		`"x" <` + evil + `>`,
		"=?utf-8?q?x=0D=0ABcc:_" + evil + "?=",
	}
	var accepted []*device
	for _, name := range names {
		email, pw := newEmail(), newPassword()
		d := s.newDevice(true)
		d.email, d.password = email, pw
		r := d.do(t, "POST", "/auth/signup", d.authBody(email, pw, map[string]any{"name": name}))
		switch r.Status {
		case http.StatusCreated:
			accepted = append(accepted, d)
		case http.StatusUnprocessableEntity:
			expect(t, r, http.StatusUnprocessableEntity, "validation_failed")
		default:
			t.Errorf("%s: want 201 or 422", r)
		}
	}
	for _, d := range accepted {
		_, m := c.AwaitLink(t, d.email, "verify-email", 1)
		mailCheckInjection(t, m, d.email)
		_, m = mailTokenFor(t, s, c, d, "reset-password")
		mailCheckInjection(t, m, d.email)
	}

	real := s.newUser(t, true)
	addrs := []string{
		"victim." + newEmail() + "\r\nBcc: " + evil,
		"victim." + newEmail() + "\nBcc: " + evil,
		real.email + "\r\nBcc: " + evil,
		real.email + ">\r\nRCPT TO:<" + evil,
		real.email + ", " + evil,
		real.email + "," + evil,
		evil + "\r\n" + real.email,
		"<" + real.email + ">\r\n.\r\nMAIL FROM:<" + evil + ">",
	}
	for _, a := range addrs {
		r := s.do(t, "POST", "/auth/signup", map[string]any{"email": a, "password": newPassword(), "token_transport": "body"})
		expect(t, r, http.StatusUnprocessableEntity, "validation_failed")
		for _, path := range []string{"/auth/password/forgot", "/auth/magic-link"} {
			r := s.do(t, "POST", path, map[string]any{"email": a})
			if r.Status != http.StatusUnprocessableEntity {
				mailAccepted(t, r)
			}
		}
		r = s.do(t, "POST", "/auth/email/change", map[string]any{"new_email": a, "current_password": real.password}, bearer(real.Access()))
		expect(t, r, http.StatusUnprocessableEntity, "validation_failed")
	}
	// A sentinel mail after all of the above, then a grace period.
	sentinel := s.newUser(t, true)
	mailTokenFor(t, s, c, sentinel, "reset-password")
	c.Quiet(t, evil, 0, 2*time.Second)
	for _, rc := range c.Rcpts() {
		if strings.Contains(strings.ToLower(rc), "evil") || strings.ContainsAny(rc, "\r\n,<>") {
			t.Errorf("the SMTP server saw RCPT TO %q", rc)
		}
	}
	for _, m := range c.All() {
		for _, rc := range m.Rcpts {
			if !strings.EqualFold(rc, real.email) && !strings.Contains(rc, "@example.com") {
				t.Errorf("message %s went to an unexpected recipient %q", m, rc)
			}
		}
		if _, ok := m.Header["X-Injected"]; ok {
			t.Errorf("message %s carries an injected header", m)
		}
	}
}

// mailCheckInjection asserts that m reached addr alone with no injected
// header.
func mailCheckInjection(t *testing.T, m *mailMsg, addr string) {
	t.Helper()
	mailCheckMessage(t, m, addr)
	if _, ok := m.Header["X-Injected"]; ok {
		t.Errorf("message %s carries the injected header X-Injected", m)
	}
	hdrEnd := strings.Index(string(m.Raw), "\r\n\r\n")
	if hdrEnd < 0 {
		hdrEnd = len(m.Raw)
	}
	for _, line := range strings.Split(string(m.Raw[:hdrEnd]), "\r\n") {
		l := strings.ToLower(line)
		if strings.HasPrefix(l, "bcc:") || strings.HasPrefix(l, "cc:") || strings.HasPrefix(l, "x-injected:") {
			t.Errorf("message %s: injected header line %q", m, line)
		}
	}
	if rest := strings.ReplaceAll(string(m.Raw[:hdrEnd]), "\r\n", ""); strings.ContainsAny(rest, "\r\n") {
		t.Errorf("message %s: a bare CR or LF in the header section", m)
	}
}

// TestMailAttackSendLimits: --rate-limit-mail counts sends per address and
// --rate-limit-mail-ip per client IP, across instances (on PostgreSQL two
// binaries sharing Redis; on SQLite one instance): past the limit 429
// rate_limited, unknown addresses are limited alike, and no mail is sent
// beyond the limit.
func TestMailAttackSendLimits(t *testing.T) {
	t.Parallel()
	hrEachBackend(t, func(t *testing.T, backend string) {
		c := mailStartSMTP(t)
		// start returns two instances sharing the backend (one on SQLite).
		start := func(t *testing.T, extra ...string) (*hrEnv, *server, *server) {
			if backend == "postgres" {
				cl, _ := prodNewCluster(t)
				s1 := cl.start(t, mailFlags(c, extra...)...)
				s2 := cl.start(t, mailFlags(c, extra...)...)
				return &hrEnv{backend: backend, s: s1, db: cl.dbURL, key: cl.key}, s1, s2
			}
			e := mailStart(t, backend, c, append([]string{"--trusted-proxies", "127.0.0.1"}, extra...)...)
			return e, e.s, e.s
		}
		forgot := func(t *testing.T, s *server, email, ip string) *resp {
			return s.do(t, "POST", "/auth/password/forgot", map[string]any{"email": email}, hdr("X-Forwarded-For", ip))
		}
		resetMails := func(addr string) int {
			n := 0
			for _, m := range c.To(addr) {
				if len(mailLinks(m, "reset-password")) > 0 {
					n++
				}
			}
			return n
		}

		t.Run("per address", func(t *testing.T) {
			t.Parallel()
			e, s1, s2 := start(t, "--rate-limit-mail", "3/1h")
			email, _, _ := e.createUser(t, "user")
			unknown := "nobody." + newEmail()
			var seqs [2][]int
			for k, addr := range []string{email, unknown} {
				for i := 0; i < 6; i++ {
					s := []*server{s1, s2}[i%2]
					r := forgot(t, s, addr, prodIP())
					seqs[k] = append(seqs[k], r.Status)
					if i < 3 {
						mailAccepted(t, r)
					} else if !atkLimited(t, r) {
						t.Errorf("request %d for one address (limit 3/1h, across instances): %s, want 429 rate_limited", i+1, r)
					}
				}
			}
			if !slices.Equal(seqs[0], seqs[1]) {
				t.Errorf("a real and an unknown address are limited differently: %v vs %v", seqs[0], seqs[1])
			}
			// Another address is not limited.
			other, _, _ := e.createUser(t, "user")
			mailAccepted(t, forgot(t, s2, other, prodIP()))
			c.AwaitLink(t, other, "reset-password", 1)
			c.AwaitLink(t, email, "reset-password", 3)
			time.Sleep(time.Second) // a mail beyond the limit would show up now
			if n := resetMails(email); n != 3 {
				t.Errorf("%s got %d reset mails, want 3 (the limit)", email, n)
			}
		})
		t.Run("per client IP", func(t *testing.T) {
			t.Parallel()
			e, s1, s2 := start(t, "--rate-limit-mail-ip", "4/1h")
			var users []string
			for i := 0; i < 6; i++ {
				email, _, _ := e.createUser(t, "user")
				users = append(users, email)
			}
			ip := prodIP()
			for i := 0; i < 5; i++ {
				r := forgot(t, []*server{s1, s2}[i%2], users[i], ip)
				if i < 4 {
					mailAccepted(t, r)
				} else if !atkLimited(t, r) {
					t.Errorf("request %d from one client IP (limit 4/1h, across instances): %s, want 429 rate_limited", i+1, r)
				}
			}
			// Another client is not limited.
			mailAccepted(t, forgot(t, s2, users[5], prodIP()))
			// Unknown addresses count alike.
			ip2 := prodIP()
			for i := 0; i < 5; i++ {
				r := forgot(t, []*server{s1, s2}[i%2], "nobody."+newEmail(), ip2)
				if i < 4 {
					mailAccepted(t, r)
				} else if !atkLimited(t, r) {
					t.Errorf("request %d from one client IP for unknown addresses: %s, want 429 rate_limited", i+1, r)
				}
			}
			c.AwaitLink(t, users[5], "reset-password", 1)
			for i := 0; i < 4; i++ {
				c.AwaitLink(t, users[i], "reset-password", 1)
			}
			time.Sleep(time.Second)
			if n := resetMails(users[4]); n != 0 {
				t.Errorf("the request refused by the per-IP limit still sent %d mail(s)", n)
			}
		})
	})
}
