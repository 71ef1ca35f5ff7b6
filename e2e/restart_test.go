package e2e

import (
	"net/http"
	"testing"
	"time"
)

// TestRestartKeepsRevocations revokes in every way the contract names,
// restarts the binary on the same database, and proves nothing revoked comes
// back while everything live keeps working.
func TestRestartKeepsRevocations(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--reuse-grace", "1s")
	_, admin := s.makeAdmin(t)

	u1 := s.newUser(t, true)
	loggedOut := u1.another(t, false) // local logout (cookie mode)
	reused := u1.another(t, true)     // reuse-killed
	deleted := u1.another(t, true)    // DELETE /auth/sessions/{id}
	live := u1.another(t, true)       // stays alive
	liveCookie := u1.another(t, false)

	promoted := s.newUser(t, true) // role change
	global := s.newUser(t, true)   // global logout
	global2 := global.another(t, false)
	disabled := s.newUser(t, true) // disabled
	pwUser := s.newUser(t, true)   // password change
	pwOther := pwUser.another(t, true)
	adminKilled := s.newUser(t, true) // admin session delete
	adminLogout := s.newUser(t, true) // admin user logout

	// Local logout.
	expect(t, loggedOut.do(t, "POST", "/auth/logout", nil, loggedOut.csrf()), http.StatusNoContent, "")
	// Reuse.
	reusedRT0 := reused.Refresh()
	reused.refreshOK(t)
	reusedRT1 := reused.Refresh()
	time.Sleep(1200 * time.Millisecond)
	expect(t, s.refreshWith(t, reusedRT0), http.StatusUnauthorized, "refresh_token_reused")
	// Session delete by the user.
	expect(t, s.do(t, "DELETE", "/auth/sessions/"+deleted.sid, nil, bearer(u1.Access())), http.StatusNoContent, "")
	// Role change.
	promotedOld := promoted.Access()
	expect(t, s.do(t, "PATCH", "/admin/users/"+promoted.user.ID, map[string]any{"role": "admin"}, bearer(admin.Access())), http.StatusOK, "")
	promoted.refreshOK(t)
	// Global logout.
	expect(t, s.do(t, "POST", "/auth/logout?scope=global", nil, bearer(global.Access())), http.StatusNoContent, "")
	// Disable.
	expect(t, s.do(t, "PATCH", "/admin/users/"+disabled.user.ID, map[string]any{"disabled": true}, bearer(admin.Access())), http.StatusOK, "")
	// Password change.
	newPW := newPassword()
	expect(t, s.do(t, "POST", "/auth/password", map[string]any{"current_password": pwUser.password, "new_password": newPW}, bearer(pwUser.Access())), http.StatusNoContent, "")
	// Admin revocations.
	expect(t, s.do(t, "DELETE", "/admin/sessions/"+adminKilled.sid, nil, bearer(admin.Access())), http.StatusNoContent, "")
	expect(t, s.do(t, "POST", "/admin/users/"+adminLogout.user.ID+"/logout", nil, bearer(admin.Access())), http.StatusNoContent, "")

	checkAll := func(phase string) {
		t.Helper()
		loggedOut.assertDead(t, phase+": locally logged-out session")
		reused.assertDead(t, phase+": reuse-killed session")
		for _, rt := range []string{reusedRT0, reusedRT1} {
			if r := s.refreshWith(t, rt); r.Status != http.StatusUnauthorized {
				t.Errorf("%s: token of reuse-killed session: %s\n\twant 401", phase, r)
			}
		}
		deleted.assertDead(t, phase+": deleted session")
		expect(t, s.meWith(t, promotedOld), http.StatusUnauthorized, "invalid_token")
		global.assertDead(t, phase+": globally logged-out session")
		global2.assertDead(t, phase+": other globally logged-out session")
		disabled.assertDead(t, phase+": disabled user's session")
		expect(t, s.do(t, "POST", "/auth/login", map[string]any{"email": disabled.email, "password": disabled.password}), http.StatusUnauthorized, "invalid_credentials")
		pwOther.assertDead(t, phase+": other session after password change")
		expect(t, s.do(t, "POST", "/auth/login", map[string]any{"email": pwUser.email, "password": pwUser.password}), http.StatusUnauthorized, "invalid_credentials")
		adminKilled.assertDead(t, phase+": session deleted by admin")
		adminLogout.assertDead(t, phase+": user logged out by admin")

		// Live ones: the very same access tokens, and their sessions refresh.
		for name, d := range map[string]*device{"live": live, "liveCookie": liveCookie, "u1": u1, "promoted": promoted, "pwUser": pwUser, "admin": admin} {
			if r := d.me(t); r.Status != http.StatusOK {
				t.Errorf("%s: live %s access token rejected: %s", phase, name, r)
			}
		}
		if r := s.do(t, "GET", "/admin/users", nil, bearer(promoted.Access())); r.Status != http.StatusOK {
			t.Errorf("%s: promoted user's new admin token: %s", phase, r)
		}
	}
	checkAll("before restart")
	// Capture the live access tokens, restart, and check everything again.
	liveAccess := live.Access()
	s.Restart()
	if r := s.meWith(t, liveAccess); r.Status != http.StatusOK {
		t.Errorf("after restart: access token issued before the restart rejected: %s", r)
	}
	checkAll("after restart")
	for name, d := range map[string]*device{"live": live, "liveCookie": liveCookie, "promoted": promoted, "pwUser": pwUser} {
		if r := d.refreshReq(t); r.Status != http.StatusOK {
			t.Errorf("after restart: live %s session does not refresh: %s", name, r)
		}
	}
	s.login(t, pwUser.email, newPW, true)

	// Restart once more: the revocations made before the first restart still hold.
	s.Restart()
	checkAll("after second restart")
}
