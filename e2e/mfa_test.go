package e2e

// TOTP second factors and recovery codes end to end (API.md part 2,
// "Second factors: TOTP and recovery codes"): enrolment, confirmation,
// sign-in with the second factor after a password or a magic link, the
// drift window, recovery codes, disabling, the admin reset, and what a
// password change or reset leaves in place.

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

var (
	amrPwdOTP      = []string{"pwd", "otp", "mfa"}
	amrPwdRecovery = []string{"pwd", "recovery", "mfa"}
	amrEmailOTP    = []string{"email", "otp", "mfa"}
)

// TestMFATOTPLifecycle runs one account through everything a TOTP factor
// goes through, on SQLite and on PostgreSQL + Redis.
func TestMFATOTPLifecycle(t *testing.T) {
	mfaBegin(t)
	hrEachBackend(t, func(t *testing.T, backend string) {
		e := hrStart(t, backend)
		mfaLifecycle(t, e)
	})
}

func mfaLifecycle(t *testing.T, e *hrEnv) {
	s := e.s
	admin := e.admin(t)
	d0 := s.newUser(t, true)
	other := s.newUser(t, true)
	uid := d0.user.ID

	mfaExpectState(t, s, d0.Access(), false, "a new account")
	if mfaAdminFlag(t, s, admin.Access(), uid) {
		t.Errorf("admin listing: a new account has mfa true")
	}

	// Enrolment needs the session and the current password.
	r := s.do(t, "POST", "/auth/mfa/totp", map[string]any{"current_password": d0.password})
	expect(t, r, http.StatusUnauthorized, "")
	r = s.do(t, "POST", "/auth/mfa/totp", map[string]any{"current_password": d0.password + "x"}, bearer(d0.Access()))
	if r.Status != http.StatusUnauthorized && r.Status != http.StatusForbidden {
		t.Errorf("%s\n\twant 401 or 403 for a wrong current password", r)
	}

	// A pending enrolment changes nothing at sign-in; a new one replaces it.
	pending := mfaEnrol(t, s, d0.Access(), d0.email, d0.password)
	mfaExpectState(t, s, d0.Access(), false, "a pending enrolment")
	mfaLoginPlain(t, s, d0.email, d0.password, "login with a pending enrolment")
	f := mfaEnrol(t, s, d0.Access(), d0.email, d0.password)
	if f.Secret == pending.Secret {
		t.Fatalf("a second enrolment handed out the same secret")
	}
	if code, ok := pending.at(0); ok {
		r = s.do(t, "POST", "/auth/mfa/totp/confirm", map[string]any{"code": code}, bearer(d0.Access()))
		mfaRefused(t, r, "confirming with the replaced pending secret")
	}
	r = s.do(t, "POST", "/auth/mfa/totp/confirm", map[string]any{"code": f.wrong()}, bearer(d0.Access()))
	mfaRefused(t, r, "confirming with a wrong code")
	r = s.do(t, "POST", "/auth/mfa/totp/confirm", map[string]any{"code": f.wrong()})
	expect(t, r, http.StatusUnauthorized, "")
	mfaExpectState(t, s, d0.Access(), false, "after refused confirmations")

	confirmCode := f.next(t)
	rc := mfaConfirm(t, s, d0.Access(), confirmCode)
	mfaExpectState(t, s, d0.Access(), true, "after confirmation")
	if !mfaAdminFlag(t, s, admin.Access(), uid) {
		t.Errorf("admin listing: mfa false after TOTP was confirmed")
	}
	if mfaAdminFlag(t, s, admin.Access(), other.user.ID) {
		t.Errorf("admin listing: another user's mfa turned true")
	}
	d0.assertAlive(t, "the enrolling session after confirmation")

	// The password alone no longer signs in; a wrong code is refused; the
	// right one gives a session (cookie transport) with amr pwd+otp.
	dc, tok := mfaChallenge(t, s, d0.email, d0.password, false)
	mfaRefused(t, mfaVerify(t, dc, tok, "totp", f.wrong()), "a wrong TOTP code")
	mfaRefused(t, mfaVerify(t, dc, tok, "totp", confirmCode), "the code that confirmed the enrolment")
	loginCode := f.next(t)
	r = mfaVerifyOK(t, dc, tok, "totp", loginCode, amrPwdOTP)
	if mailUser(t, r)["id"] != uid {
		t.Errorf("%s: signed in as another user", r)
	}
	dc.refreshOK(t)
	if got := mailAMR(t, dc.Access()); !slices.Equal(got, amrPwdOTP) {
		t.Errorf("after a refresh: amr %v, want %v (refreshes keep the session's amr)", got, amrPwdOTP)
	}
	mfaExpectState(t, s, dc.Access(), true, "the second-factor session")

	// The same code again, on a new mfa_token, inside its window: refused.
	db, tok2 := mfaChallenge(t, s, d0.email, d0.password, true)
	mfaRefused(t, mfaVerify(t, db, tok2, "totp", loginCode), "the same TOTP code a second time")

	// A recovery code works once (that mfa_token survived its failure).
	mfaVerifyOK(t, db, tok2, "recovery_code", rc[0], amrPwdRecovery)
	db.assertAlive(t, "the recovery-code session")
	d3, tok3 := mfaChallenge(t, s, d0.email, d0.password, true)
	mfaRefused(t, mfaVerify(t, d3, tok3, "recovery_code", rc[0]), "a used recovery code")

	// Regenerating needs a fresh TOTP code and kills every old code.
	r = s.do(t, "POST", "/auth/mfa/recovery-codes", map[string]any{"code": f.wrong()}, bearer(d0.Access()))
	mfaRefused(t, r, "regenerating recovery codes with a wrong code")
	r = s.do(t, "POST", "/auth/mfa/recovery-codes", map[string]any{"code": loginCode}, bearer(d0.Access()))
	mfaRefused(t, r, "regenerating recovery codes with a used code")
	regenCode := f.next(t)
	r = s.do(t, "POST", "/auth/mfa/recovery-codes", map[string]any{"code": regenCode})
	expect(t, r, http.StatusUnauthorized, "")
	r = s.do(t, "POST", "/auth/mfa/recovery-codes", map[string]any{"code": regenCode}, bearer(d0.Access()))
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	rc2 := mfaRecoveryCodes(t, r)
	for _, c := range rc2 {
		if slices.Contains(rc, c) {
			t.Errorf("a regenerated recovery code %q equals an old one", c)
		}
	}
	mfaRefused(t, mfaVerify(t, d3, tok3, "recovery_code", rc[1]), "an unused recovery code of the old set")
	mfaVerifyOK(t, d3, tok3, "recovery_code", rc2[0], amrPwdRecovery)

	// A password change keeps the factor.
	newPW := newPassword()
	r = s.do(t, "POST", "/auth/password", map[string]any{"current_password": d0.password, "new_password": newPW}, bearer(d0.Access()))
	if !expect(t, r, http.StatusNoContent, "") {
		t.FailNow()
	}
	d0.password = newPW
	mfaExpectState(t, s, d0.Access(), true, "after a password change")
	d4, tok4 := mfaChallenge(t, s, d0.email, newPW, true)
	mfaVerifyOK(t, d4, tok4, "recovery_code", rc2[1], amrPwdRecovery)

	// Disabling needs a valid code: not a wrong one, not a used TOTP code,
	// not a dead recovery code; a live recovery code does it.
	del := func(code string, opts ...reqOpt) *resp {
		return s.do(t, "DELETE", "/auth/mfa/totp", map[string]any{"code": code}, opts...)
	}
	mfaRefused(t, del(f.wrong(), bearer(d0.Access())), "disabling with a wrong code")
	mfaRefused(t, del(regenCode, bearer(d0.Access())), "disabling with a used TOTP code")
	mfaRefused(t, del(rc[2], bearer(d0.Access())), "disabling with a recovery code of the old set")
	mfaRefused(t, del(rc2[0], bearer(d0.Access())), "disabling with a used recovery code")
	expect(t, del(rc2[2]), http.StatusUnauthorized, "")
	mfaExpectState(t, s, d0.Access(), true, "after refused attempts to disable")
	if r := del(rc2[2], bearer(d0.Access())); !expect(t, r, http.StatusNoContent, "") {
		t.FailNow()
	}
	mfaExpectState(t, s, d0.Access(), false, "after disabling")
	if mfaAdminFlag(t, s, admin.Access(), uid) {
		t.Errorf("admin listing: mfa still true after disabling")
	}
	mfaLoginPlain(t, s, d0.email, newPW, "login after disabling")

	// A new factor (new secret), disabled with a TOTP code.
	f2 := mfaEnrol(t, s, d0.Access(), d0.email, newPW)
	if f2.Secret == f.Secret {
		t.Errorf("a new enrolment reused the old secret")
	}
	mfaConfirm(t, s, d0.Access(), f2.next(t))
	mfaChallenge(t, s, d0.email, newPW, true)
	if code, ok := f.at(0); ok {
		r := del(code, bearer(d0.Access()))
		mfaRefused(t, r, "disabling with a code of the earlier, disabled factor")
	}
	if r := del(f2.next(t), bearer(d0.Access())); !expect(t, r, http.StatusNoContent, "") {
		t.FailNow()
	}
	mfaExpectState(t, s, d0.Access(), false, "after disabling with a TOTP code")
	mfaLoginPlain(t, s, d0.email, newPW, "login after disabling with a TOTP code")

	// The admin reset removes every second factor.
	_, rc3 := mfaEnable(t, d0)
	mfaChallenge(t, s, d0.email, newPW, true)
	r = s.do(t, "DELETE", "/admin/users/"+uid+"/mfa", nil, bearer(other.Access()))
	expect(t, r, http.StatusForbidden, "forbidden")
	r = s.do(t, "DELETE", "/admin/users/"+uid+"/mfa", nil)
	expect(t, r, http.StatusUnauthorized, "")
	mfaExpectState(t, s, d0.Access(), true, "after refused admin resets")
	r = s.do(t, "DELETE", "/admin/users/"+uid+"/mfa", nil, bearer(admin.Access()))
	if !expect(t, r, http.StatusNoContent, "") {
		t.FailNow()
	}
	mfaExpectState(t, s, d0.Access(), false, "after the admin reset")
	if mfaAdminFlag(t, s, admin.Access(), uid) {
		t.Errorf("admin listing: mfa still true after the admin reset")
	}
	mfaLoginPlain(t, s, d0.email, newPW, "login after the admin reset")
	// No confirmed factor is left behind: a new enrolment starts at once;
	// the recovery codes of the reset factor are dead.
	f4 := mfaEnrol(t, s, d0.Access(), d0.email, newPW)
	mfaConfirm(t, s, d0.Access(), f4.next(t))
	d5, tok5 := mfaChallenge(t, s, d0.email, newPW, false)
	mfaRefused(t, mfaVerify(t, d5, tok5, "recovery_code", rc3[0]), "a recovery code of the factor the admin removed")

	// Nothing of the factor leaks into the user object or the logs.
	for _, secret := range []string{pending.Secret, f.Secret, f2.Secret, f4.Secret} {
		if strings.Contains(e.s.stderr.String(), secret) {
			t.Errorf("the server logs contain a TOTP secret")
		}
	}
	for _, c := range append(slices.Clone(rc), rc2...) {
		if strings.Contains(e.s.stderr.String(), c) {
			t.Errorf("the server logs contain a recovery code")
		}
	}
}

// TestMFATOTPDriftWindow: one 30 s step of drift either way passes, two
// fail, at confirmation (where no step is spent yet) and at sign-in. It
// waits once for a step boundary, so that the step before "now" is not
// already spent by the confirmation.
func TestMFATOTPDriftWindow(t *testing.T) {
	mfaBegin(t)
	s := startServer(t)
	d := s.newUser(t, true)
	f := mfaEnrol(t, s, d.Access(), d.email, d.password)
	for _, delta := range []int64{-2, 2} {
		if code, ok := f.at(delta); ok {
			r := s.do(t, "POST", "/auth/mfa/totp/confirm", map[string]any{"code": code}, bearer(d.Access()))
			mfaRefused(t, r, fmt.Sprintf("confirming with the code of step now%+d", delta))
		}
	}
	// One step early confirms: next starts at now-1.
	confirmedAt := mfaStepNow() - 1
	mfaConfirm(t, s, d.Access(), f.next(t))

	dv, tok := mfaChallenge(t, s, d.email, d.password, true)
	for _, delta := range []int64{2, 3} {
		if code, ok := f.at(delta); ok {
			mfaRefused(t, mfaVerify(t, dv, tok, "totp", code), fmt.Sprintf("a code of step now%+d", delta))
		}
	}
	// Wait until the step before now is newer than the confirmation's.
	for mfaStepNow()-1 <= confirmedAt {
		mfaWaitNextStep(t)
	}
	if cur := mfaStepNow(); cur-2 > confirmedAt {
		if code, ok := f.at(-2); ok {
			mfaRefused(t, mfaVerify(t, dv, tok, "totp", code), "a code of step now-2")
		}
	}
	// At most three failures so far: the mfa_token still works. The code
	// of the step before now passes (next gives now-1 here).
	mfaVerifyOK(t, dv, tok, "totp", f.next(t), amrPwdOTP)
	// Then now, and one step late (now+1).
	d2, tok2 := mfaChallenge(t, s, d.email, d.password, false)
	exact := f.next(t)
	mfaVerifyOK(t, d2, tok2, "totp", exact, amrPwdOTP)
	d3, tok3 := mfaChallenge(t, s, d.email, d.password, true)
	mfaRefused(t, mfaVerify(t, d3, tok3, "totp", exact), "the same code again")
	mfaVerifyOK(t, d3, tok3, "totp", f.next(t), amrPwdOTP)
}

// TestMFAMagicLink: a magic-link sign-in (by link or by code) of a TOTP
// user answers mfa_required like a password login and completes with amr
// email+otp; a password reset keeps the factor. SQLite and PostgreSQL +
// Redis, with a real SMTP server.
func TestMFAMagicLink(t *testing.T) {
	mfaBegin(t)
	hrEachBackend(t, func(t *testing.T, backend string) {
		c := mailStartSMTP(t)
		e := mailStart(t, backend, c)
		s := e.s
		t.Run("by link, body transport", func(t *testing.T) {
			t.Parallel()
			u := s.newUser(t, true)
			f, _ := mfaEnable(t, u)
			mailMagic(t, s, u.email)
			link, _ := c.AwaitLink(t, u.email, "magic-link", 1)
			d, r := mailVerifyMagic(t, s, true, map[string]any{"token": link.Token})
			tok := mfaCheckRequired(t, r)
			if tok == "" {
				t.FailNow()
			}
			if d.Access() != "" {
				t.Errorf("a magic-link sign-in gave an access token before the second factor")
			}
			mfaRefused(t, mfaVerify(t, d, tok, "totp", f.wrong()), "a wrong code after a magic link")
			mfaVerifyOK(t, d, tok, "totp", f.next(t), amrEmailOTP)
			d.assertAlive(t, "the magic-link + TOTP session")
			// The link gives no session a second time (whether or not
			// the first factor spent it).
			_, r = mailVerifyMagic(t, s, true, map[string]any{"token": link.Token})
			expectStatusIn(t, r, http.StatusBadRequest, http.StatusUnauthorized)
		})
		t.Run("by code, cookie transport", func(t *testing.T) {
			t.Parallel()
			u := s.newUser(t, true)
			f, _ := mfaEnable(t, u)
			mailMagic(t, s, u.email)
			_, m := c.AwaitLink(t, u.email, "magic-link", 1)
			d, r := mailVerifyMagic(t, s, false, map[string]any{"email": u.email, "code": mailCode(t, m)})
			tok := mfaCheckRequired(t, r)
			if tok == "" {
				t.FailNow()
			}
			r = mfaVerifyOK(t, d, tok, "totp", f.next(t), amrEmailOTP)
			if r.Cookie(refreshCookie) == nil {
				t.Errorf("%s: cookie transport without the refresh cookie", r.req)
			}
			d.refreshOK(t)
			if got := mailAMR(t, d.Access()); !slices.Equal(got, amrEmailOTP) {
				t.Errorf("after a refresh: amr %v, want %v", got, amrEmailOTP)
			}
		})
		t.Run("password reset keeps the factor", func(t *testing.T) {
			t.Parallel()
			u := s.newUser(t, true)
			f, rc := mfaEnable(t, u)
			mailForgot(t, s, u.email)
			link, _ := c.AwaitLink(t, u.email, "reset-password", 1)
			newPW := newPassword()
			r := s.do(t, "POST", "/auth/password/reset", map[string]any{"token": link.Token, "new_password": newPW})
			if !expect(t, r, http.StatusNoContent, "") {
				t.FailNow()
			}
			d, tok := mfaChallenge(t, s, u.email, newPW, true)
			mfaVerifyOK(t, d, tok, "recovery_code", rc[0], amrPwdRecovery)
			mfaExpectState(t, s, d.Access(), true, "after a password reset")
			d2, tok2 := mfaChallenge(t, s, u.email, newPW, false)
			mfaVerifyOK(t, d2, tok2, "totp", f.next(t), amrPwdOTP)
		})
	})
}
