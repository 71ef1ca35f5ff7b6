package e2e

// Issue 10, item 9: several refresh cookies.

import (
	"net/http"
	"testing"
)

// TestHardeningOpsPlantedRefreshCookie: a sibling subdomain can plant a
// second __Secure-refresh_token (the prefix does not forbid Domain). Placed
// first in the Cookie header, it must not stop the victim's refresh or
// logout: the server picks the refresh cookie the CSRF token is bound to.
func TestHardeningOpsPlantedRefreshCookie(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	victim := s.newUser(t, false)
	attacker := s.newUser(t, false)
	planted := attacker.Refresh()
	present := func(path, cookie, header string) *resp {
		return s.do(t, "POST", path, nil, hdr("Cookie", cookie), hdr("X-CSRF-Token", header))
	}
	for i, plant := range []string{planted, "garbage", "x.y"} {
		rt, csrf := victim.Refresh(), victim.cookie(csrfCookie)
		r := present("/auth/refresh", refreshCookie+"="+plant+"; "+refreshCookie+"="+rt+"; "+csrfCookie+"="+csrf, csrf)
		if !expect(t, r, http.StatusOK, "") {
			t.Fatalf("planted refresh cookie #%d first: the victim's refresh failed", i)
		}
		victim.absorb(r)
		if sid, _ := r.JSON()["session_id"].(string); sid != victim.sid {
			t.Fatalf("refresh answered session %q, want the victim's %q", sid, victim.sid)
		}
	}
	// Several CSRF cookies: the header names which one is meant.
	rt, csrf := victim.Refresh(), victim.cookie(csrfCookie)
	r := present("/auth/refresh", refreshCookie+"="+planted+"; "+csrfCookie+"="+attacker.cookie(csrfCookie)+"; "+refreshCookie+"="+rt+"; "+csrfCookie+"="+csrf, csrf)
	if !expect(t, r, http.StatusOK, "") {
		t.Fatal("two csrf cookies and two refresh cookies: the victim's refresh failed")
	}
	victim.absorb(r)
	// The attacker's CSRF token with only the victim's refresh cookie is
	// still refused, as is a header matching no cookie.
	rt, csrf = victim.Refresh(), victim.cookie(csrfCookie)
	expect(t, present("/auth/refresh", refreshCookie+"="+rt+"; "+csrfCookie+"="+attacker.cookie(csrfCookie), attacker.cookie(csrfCookie)), http.StatusForbidden, "csrf_failed")
	expect(t, present("/auth/refresh", refreshCookie+"="+rt+"; "+csrfCookie+"="+csrf, attacker.cookie(csrfCookie)), http.StatusForbidden, "csrf_failed")
	// Logout with the planted cookie first ends the victim's session, not
	// the attacker's.
	r = present("/auth/logout", refreshCookie+"="+planted+"; "+refreshCookie+"="+rt+"; "+csrfCookie+"="+csrf, csrf)
	if !expect(t, r, http.StatusNoContent, "") {
		t.Fatal("logout with a planted refresh cookie first failed")
	}
	victim.assertDead(t, "victim after logout with a planted cookie first")
	attacker.assertAlive(t, "attacker whose cookie was planted")
}
