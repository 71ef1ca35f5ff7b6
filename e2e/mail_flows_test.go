package e2e

// The mail flows of API.md part 2 end to end, against a real SMTP server in
// the test process, on SQLite and on PostgreSQL + Redis: signup's
// verification mail, forgot → reset, magic link by link and by code in
// both token transports, and the email change.

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMailFlows runs every mail flow on both backends, each flow as a
// parallel subtest against one server and one SMTP capture.
func TestMailFlows(t *testing.T) {
	t.Parallel()
	hrEachBackend(t, func(t *testing.T, backend string) {
		c := mailStartSMTP(t)
		e := mailStart(t, backend, c)
		s := e.s
		t.Run("signup verification", func(t *testing.T) {
			t.Parallel()
			mailFlowSignupVerification(t, s, c)
		})
		t.Run("password reset", func(t *testing.T) {
			t.Parallel()
			mailFlowPasswordReset(t, s, c)
		})
		for _, v := range []struct {
			name           string
			byLink, bodyTr bool
		}{
			{"magic link by link, body transport", true, true},
			{"magic link by link, cookie transport", true, false},
			{"magic link by code, body transport", false, true},
			{"magic link by code, cookie transport", false, false},
		} {
			t.Run(v.name, func(t *testing.T) {
				t.Parallel()
				mailFlowMagicLink(t, s, c, v.byLink, v.bodyTr)
			})
		}
		t.Run("magic link for an unknown address", func(t *testing.T) {
			t.Parallel()
			unknown := "nobody." + newEmail()
			mailMagic(t, s, unknown)
			known := s.newUser(t, true)
			mailMagic(t, s, known.email)
			c.AwaitLink(t, known.email, "magic-link", 1)
			c.Quiet(t, unknown, 0, time.Second)
		})
		t.Run("email change", func(t *testing.T) {
			t.Parallel()
			mailFlowEmailChange(t, s, c)
		})
	})
}

// mailFlowSignupVerification: signup queues exactly one verification mail;
// its token verifies the address once and never again; a verified user
// asking for another mail gets 409 already_verified.
func mailFlowSignupVerification(t *testing.T, s *server, c *mailCapture) {
	email, pw := newEmail(), newPassword()
	d := s.newDevice(true)
	d.email, d.password = email, pw
	r := d.do(t, "POST", "/auth/signup", d.authBody(email, pw, map[string]any{"name": "Mail User"}))
	if !expect(t, r, http.StatusCreated, "") {
		t.FailNow()
	}
	checkTokenResponse(t, r, true)
	if mailVerifiedFlag(t, r.req, mailUser(t, r)) {
		t.Errorf("%s: a new account's email is verified before any mail was answered", r)
	}
	if got := mailAMR(t, d.Access()); !slices.Equal(got, []string{"pwd"}) {
		t.Errorf("signup's access token: amr %v, want [pwd]", got)
	}
	if mailMeVerified(t, s, d.Access()) {
		t.Errorf("/auth/me: email_verified true before verification")
	}

	link, m := c.AwaitLink(t, email, "verify-email", 1)
	mailSplit(t, link.Token)
	if strings.Contains(string(m.Raw), d.password) {
		t.Errorf("the verification mail contains the password")
	}

	r = s.do(t, "POST", "/auth/email/verify", map[string]any{"token": link.Token})
	if expect(t, r, http.StatusOK, "") {
		u := mailUser(t, r)
		checkUserObject(t, r.req, u, false)
		if !mailVerifiedFlag(t, r.req, u) {
			t.Errorf("%s: email_verified not true", r)
		}
		if u["id"] != d.user.ID || u["email"] != email {
			t.Errorf("%s: verified user %v, want id %s email %s", r, u, d.user.ID, email)
		}
	}
	if !mailMeVerified(t, s, d.Access()) {
		t.Errorf("/auth/me: email_verified still false after verification")
	}
	// Once only.
	r = s.do(t, "POST", "/auth/email/verify", map[string]any{"token": link.Token})
	expect(t, r, http.StatusBadRequest, "invalid_link")
	// Verified: no further mail.
	r = s.do(t, "POST", "/auth/email/verify/send", map[string]any{}, bearer(d.Access()))
	expect(t, r, http.StatusConflict, "already_verified")
	r = s.do(t, "POST", "/auth/email/verify/send", map[string]any{})
	expect(t, r, http.StatusUnauthorized, "")
	// A fresh login sees the verified address too.
	r = s.do(t, "POST", "/auth/login", map[string]any{"email": email, "password": pw, "token_transport": "body"})
	if expect(t, r, http.StatusOK, "") && !mailVerifiedFlag(t, r.req, mailUser(t, r)) {
		t.Errorf("%s: the login's user object says email_verified false after verification", r)
	}
	c.Quiet(t, email, 1, 2*time.Second)
}

// mailUserOf is the user object /auth/me returns for the device.
func mailUserOf(t *testing.T, s *server, d *device) map[string]any {
	t.Helper()
	r := s.meWith(t, d.Access())
	if !expect(t, r, http.StatusOK, "") {
		return map[string]any{}
	}
	return mailUser(t, r)
}

// mailFlowPasswordReset: forgot → reset: the new password works, the old
// fails, every earlier session (cookie and body, refresh and access tokens)
// is dead at once, the email is verified, the link works once.
func mailFlowPasswordReset(t *testing.T, s *server, c *mailCapture) {
	email, oldPW := newEmail(), newPassword()
	d1 := s.signup(t, email, oldPW, false)
	d2 := d1.another(t, true)
	d3 := d1.another(t, false)
	d2.refreshOK(t)

	mailForgot(t, s, strings.ToUpper(email)) // emails fold case everywhere
	link, m := c.AwaitLink(t, email, "reset-password", 1)
	mailSplit(t, link.Token)
	if strings.Contains(m.Text, oldPW) {
		t.Errorf("the reset mail contains the password")
	}
	// The sessions live on until the link is used.
	d1.assertAlive(t, "session before the reset")

	// A weak password is refused before the link is spent.
	r := s.do(t, "POST", "/auth/password/reset", map[string]any{"token": link.Token, "new_password": "password123"})
	expect(t, r, http.StatusUnprocessableEntity, "weak_password")

	newPW := newPassword()
	r = s.do(t, "POST", "/auth/password/reset", map[string]any{"token": link.Token, "new_password": newPW})
	if !expect(t, r, http.StatusNoContent, "") {
		t.FailNow()
	}
	for i, d := range []*device{d1, d2, d3} {
		d.assertDead(t, "session "+string(rune('1'+i))+" after the password reset")
	}
	r = s.do(t, "POST", "/auth/login", map[string]any{"email": email, "password": oldPW})
	expect(t, r, http.StatusUnauthorized, "invalid_credentials")
	l := s.login(t, email, newPW, true)
	if got := mailAMR(t, l.Access()); !slices.Equal(got, []string{"pwd"}) {
		t.Errorf("password login: amr %v, want [pwd]", got)
	}
	if !mailMeVerified(t, s, l.Access()) {
		t.Errorf("a password reset proves the address: email_verified should be true")
	}
	r = s.do(t, "POST", "/auth/password/reset", map[string]any{"token": link.Token, "new_password": newPassword()})
	expect(t, r, http.StatusBadRequest, "invalid_link")
	l.assertAlive(t, "session of the new password after a replayed link")
}

// mailFlowMagicLink: the magic-link mail carries a link and a code; either
// signs the user in (amr [email]) in the chosen transport, verifies the
// email, and voids the other.
func mailFlowMagicLink(t *testing.T, s *server, c *mailCapture, byLink, bodyTr bool) {
	u := s.newUser(t, true)
	mailMagic(t, s, u.email)
	link, m := c.AwaitLink(t, u.email, "magic-link", 1)
	mailSplit(t, link.Token)
	code := mailCode(t, m)

	var body map[string]any
	if byLink {
		body = map[string]any{"token": link.Token}
	} else {
		// Emails fold case here too.
		body = map[string]any{"email": strings.ToUpper(u.email), "code": code}
	}
	d, r := mailVerifyMagic(t, s, bodyTr, body)
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	checkTokenResponse(t, r, bodyTr)
	if got := mailAMR(t, d.Access()); !slices.Equal(got, []string{"email"}) {
		t.Errorf("magic-link sign-in: amr %v, want [email]", got)
	}
	ru := mailUser(t, r)
	if ru["id"] != u.user.ID {
		t.Errorf("magic link signed in user %v, want %s", ru["id"], u.user.ID)
	}
	if !mailVerifiedFlag(t, r.req, ru) {
		t.Errorf("%s: magic-link sign-in should mark the email verified", r)
	}
	d.assertAlive(t, "magic-link session")
	// Refreshes keep the session's amr.
	if got := mailAMR(t, d.Access()); !slices.Equal(got, []string{"email"}) {
		t.Errorf("magic-link session after refresh: amr %v, want [email]", got)
	}
	// The other half of the mail is void, and the used half too.
	r = s.do(t, "POST", "/auth/magic-link/verify", map[string]any{"email": u.email, "code": code, "token_transport": "body"})
	expect(t, r, http.StatusUnauthorized, "invalid_code")
	r = s.do(t, "POST", "/auth/magic-link/verify", map[string]any{"token": link.Token, "token_transport": "body"})
	expect(t, r, http.StatusBadRequest, "invalid_link")
	// The password session of signup is untouched.
	u.assertAlive(t, "password session after a magic-link sign-in")
}

// mailFlowEmailChange: a change (current password required) mails a link
// to the new address and a notice without any link to the old one; the
// link confirms the new address (verified), after which login works with
// the new address and not the old.
func mailFlowEmailChange(t *testing.T, s *server, c *mailCapture) {
	email, pw := newEmail(), newPassword()
	d := s.signup(t, email, pw, true)
	other := s.newUser(t, true)
	newAddr := "changed." + newEmail()

	r := s.do(t, "POST", "/auth/email/change", map[string]any{"new_email": newAddr, "current_password": newPassword()}, bearer(d.Access()))
	expect(t, r, http.StatusUnauthorized, "invalid_credentials")
	r = s.do(t, "POST", "/auth/email/change", map[string]any{"new_email": strings.ToUpper(other.email), "current_password": pw}, bearer(d.Access()))
	expect(t, r, http.StatusConflict, "email_taken")
	r = s.do(t, "POST", "/auth/email/change", map[string]any{"new_email": newAddr, "current_password": pw})
	expect(t, r, http.StatusUnauthorized, "")

	r = s.do(t, "POST", "/auth/email/change", map[string]any{"new_email": newAddr, "current_password": pw}, bearer(d.Access()))
	if !mailAccepted(t, r) {
		t.FailNow()
	}
	link, _ := c.AwaitLink(t, newAddr, "change-email", 1)
	mailSplit(t, link.Token)

	// The old address gets a notice (besides signup's verification mail),
	// which carries no link at all: only the new address can confirm.
	var notice *mailMsg
	if !eventually(mailWait, func() bool {
		for _, m := range c.To(email) {
			if len(mailLinks(m, "verify-email")) == 0 {
				notice = m
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no notice of the email change reached the old address %s (got %v)", email, c.To(email))
	}
	mailCheckMessage(t, notice, email)
	if ls := mailLinks(notice, ""); len(ls) > 0 {
		t.Errorf("the notice to the old address carries links %v", ls)
	}
	if strings.Contains(notice.Text, link.Token) || strings.Contains(notice.HTML, link.Token) {
		t.Errorf("the notice to the old address contains the confirmation token")
	}

	// Nothing changes before the confirmation.
	if u := mailUserOf(t, s, d); u["email"] != email {
		t.Errorf("before confirmation the email is %v, want %s", u["email"], email)
	}
	s.login(t, email, pw, true)

	r = s.do(t, "POST", "/auth/email/change/confirm", map[string]any{"token": link.Token})
	if expect(t, r, http.StatusOK, "") {
		u := mailUser(t, r)
		checkUserObject(t, r.req, u, false)
		if u["email"] != newAddr || u["id"] != d.user.ID {
			t.Errorf("%s: want user %s with email %s", r, d.user.ID, newAddr)
		}
		if !mailVerifiedFlag(t, r.req, u) {
			t.Errorf("%s: the confirmed address should be verified", r)
		}
	}
	if u := mailUserOf(t, s, d); u["email"] != newAddr {
		t.Errorf("/auth/me after confirmation: email %v, want %s", u["email"], newAddr)
	}
	r = s.do(t, "POST", "/auth/login", map[string]any{"email": email, "password": pw})
	expect(t, r, http.StatusUnauthorized, "invalid_credentials")
	l := s.login(t, newAddr, pw, true)
	if l.user.ID != d.user.ID {
		t.Errorf("login with the new address signed in %s, want %s", l.user.ID, d.user.ID)
	}
	r = s.do(t, "POST", "/auth/email/change/confirm", map[string]any{"token": link.Token})
	expect(t, r, http.StatusBadRequest, "invalid_link")
	c.Quiet(t, newAddr, 1, time.Second)
}

// TestMailMagicLinkSignup: with --magic-link-signup an unknown address gets
// the mail, and its link (or code) creates a verified account and signs it
// in; a second request for that address signs into the same account.
func TestMailMagicLinkSignup(t *testing.T) {
	t.Parallel()
	c := mailStartSMTP(t)
	s := startServer(t, mailFlags(c, "--magic-link-signup")...)

	addr := "fresh." + newEmail()
	mailMagic(t, s, addr)
	link, _ := c.AwaitLink(t, addr, "magic-link", 1)
	d, r := mailVerifyMagic(t, s, true, map[string]any{"token": link.Token})
	if !expectStatusIn(t, r, http.StatusOK, http.StatusCreated) {
		t.FailNow()
	}
	checkTokenResponse(t, r, true)
	u := mailUser(t, r)
	if got, _ := u["email"].(string); !strings.EqualFold(got, addr) || !mailVerifiedFlag(t, r.req, u) {
		t.Errorf("%s: want a verified account for %s", r, addr)
	}
	if got := mailAMR(t, d.Access()); !slices.Equal(got, []string{"email"}) {
		t.Errorf("amr %v, want [email]", got)
	}
	d.assertAlive(t, "session of a magic-link signup")

	mailMagic(t, s, addr)
	_, m := c.AwaitLink(t, addr, "magic-link", 2)
	d2, r := mailVerifyMagic(t, s, false, map[string]any{"email": addr, "code": mailCode(t, m)})
	if expect(t, r, http.StatusOK, "") {
		checkTokenResponse(t, r, false)
		if d2.user.ID != u["id"] {
			t.Errorf("second magic-link sign-in: user %s, want the account created first (%v)", d2.user.ID, u["id"])
		}
	}
}

// TestMailRequireVerifiedEmail: with --require-verified-email, a correct
// password of an unverified account answers 403 email_not_verified (a wrong
// one stays 401 invalid_credentials, like an unknown address); verifying by
// the mailed link, resetting the password or signing in by magic link
// lifts it.
func TestMailRequireVerifiedEmail(t *testing.T) {
	t.Parallel()
	c := mailStartSMTP(t)
	s := startServer(t, mailFlags(c, "--require-verified-email")...)

	signup := func() (string, string) {
		email, pw := newEmail(), newPassword()
		r := s.do(t, "POST", "/auth/signup", map[string]any{"email": email, "password": pw, "token_transport": "body"})
		// Whether signup itself answers with a session is not specified
		// under this flag; it must not fail otherwise.
		if r.Status != http.StatusCreated && r.Status != http.StatusAccepted && !(r.Status == http.StatusForbidden && r.Code() == "email_not_verified") {
			t.Fatalf("%s: want 201, 202 or 403 email_not_verified", r)
		}
		return email, pw
	}
	login := func(email, pw string) *resp {
		return s.do(t, "POST", "/auth/login", map[string]any{"email": email, "password": pw, "token_transport": "body"})
	}

	email, pw := signup()
	link, _ := c.AwaitLink(t, email, "verify-email", 1)
	expect(t, login(email, newPassword()), http.StatusUnauthorized, "invalid_credentials")
	expect(t, login("nobody."+newEmail(), pw), http.StatusUnauthorized, "invalid_credentials")
	r := login(email, pw)
	expect(t, r, http.StatusForbidden, "email_not_verified")
	if strings.Contains(string(r.Body), "access_token") || r.Cookie(refreshCookie) != nil {
		t.Errorf("%s: a refused login hands out tokens", r)
	}
	r = s.do(t, "POST", "/auth/email/verify", map[string]any{"token": link.Token})
	expect(t, r, http.StatusOK, "")
	expect(t, login(email, pw), http.StatusOK, "")

	// A reset verifies the address.
	email2, _ := signup()
	mailForgot(t, s, email2)
	rl, _ := c.AwaitLink(t, email2, "reset-password", 1)
	pw2 := newPassword()
	r = s.do(t, "POST", "/auth/password/reset", map[string]any{"token": rl.Token, "new_password": pw2})
	expect(t, r, http.StatusNoContent, "")
	expect(t, login(email2, pw2), http.StatusOK, "")

	// So does a magic-link sign-in.
	email3, pw3 := signup()
	expect(t, login(email3, pw3), http.StatusForbidden, "email_not_verified")
	mailMagic(t, s, email3)
	ml, _ := c.AwaitLink(t, email3, "magic-link", 1)
	_, r = mailVerifyMagic(t, s, true, map[string]any{"token": ml.Token})
	expect(t, r, http.StatusOK, "")
	expect(t, login(email3, pw3), http.StatusOK, "")
}
