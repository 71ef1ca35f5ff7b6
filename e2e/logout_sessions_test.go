package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// checkClearedCookies asserts a logout response clears both cookies.
func checkClearedCookies(t *testing.T, r *resp) {
	t.Helper()
	for _, name := range []string{refreshCookie, csrfCookie} {
		raw := r.rawSetCookie(name)
		c := r.Cookie(name)
		if c == nil {
			t.Errorf("%s: does not clear cookie %s", r.req, name)
			continue
		}
		if c.MaxAge >= 0 || !strings.Contains(raw, "Max-Age=0") {
			t.Errorf("%s: cookie %s not cleared with Max-Age=0: %s", r.req, name, raw)
		}
		if !c.Secure {
			t.Errorf("%s: clearing %s without Secure (browsers ignore it): %s", r.req, name, raw)
		}
		want := "/"
		if name == refreshCookie {
			want = "/auth"
		}
		if c.Path != want {
			t.Errorf("%s: clearing %s with Path %q, want %q (else the browser keeps it): %s", r.req, name, c.Path, want, raw)
		}
	}
}

func TestLogoutLocal(t *testing.T) {
	t.Parallel()
	s := startServer(t)

	// Bearer, default scope: only this session ends.
	a := s.newUser(t, false)
	b := a.another(t, true)
	r := s.do(t, "POST", "/auth/logout", nil, bearer(a.Access()))
	expect(t, r, http.StatusNoContent, "")
	checkClearedCookies(t, r)
	a.assertDead(t, "session logged out with Bearer")
	b.assertAlive(t, "other session after local logout")

	// Explicit scope=local with Bearer.
	c := b.another(t, true)
	r = s.do(t, "POST", "/auth/logout?scope=local", nil, bearer(c.Access()))
	expect(t, r, http.StatusNoContent, "")
	c.assertDead(t, "session logged out with scope=local")
	b.assertAlive(t, "other session after scope=local")

	// Cookie mode with the refresh token: CSRF needed.
	k := b.another(t, false)
	r = k.do(t, "POST", "/auth/logout", nil)
	expect(t, r, http.StatusForbidden, "csrf_failed")
	r = k.do(t, "POST", "/auth/logout", nil, hdr("X-CSRF-Token", "nope"))
	expect(t, r, http.StatusForbidden, "csrf_failed")
	k.assertAlive(t, "cookie session after refused logout")
	r = k.do(t, "POST", "/auth/logout", nil, k.csrf())
	expect(t, r, http.StatusNoContent, "")
	checkClearedCookies(t, r)
	if k.cookie(refreshCookie) != "" || k.cookie(csrfCookie) != "" {
		t.Errorf("cookies not cleared after cookie-mode logout")
	}
	k.assertDead(t, "cookie session logged out with its refresh cookie")
	b.assertAlive(t, "other session after cookie logout")

	// Body mode with the refresh token.
	m := b.another(t, true)
	r = s.do(t, "POST", "/auth/logout", map[string]any{"refresh_token": m.Refresh()})
	expect(t, r, http.StatusNoContent, "")
	m.assertDead(t, "session logged out with its refresh token in the body")
	b.assertAlive(t, "other session after body logout")

	// No credentials: 401. Forged refresh token: 401 and nothing ends.
	r = s.do(t, "POST", "/auth/logout", nil)
	expect(t, r, http.StatusUnauthorized, "")
	id, _ := splitRefresh(t, b.Refresh())
	r = s.do(t, "POST", "/auth/logout", map[string]any{"refresh_token": id + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"})
	expect(t, r, http.StatusUnauthorized, "")
	b.assertAlive(t, "session after logout with forged refresh token")

	// Invalid scope.
	r = s.do(t, "POST", "/auth/logout?scope=everything", nil, bearer(b.Access()))
	expectStatusIn(t, r, http.StatusBadRequest, http.StatusUnprocessableEntity)
	b.assertAlive(t, "session after logout with invalid scope")
}

func TestLogoutOthersAndGlobal(t *testing.T) {
	t.Parallel()
	s := startServer(t)

	a := s.newUser(t, true)
	b := a.another(t, false)
	c := a.another(t, true)
	stranger := s.newUser(t, true)
	r := s.do(t, "POST", "/auth/logout?scope=others", nil, bearer(a.Access()))
	expect(t, r, http.StatusNoContent, "")
	a.assertAlive(t, "calling session after scope=others")
	b.assertDead(t, "other cookie session after scope=others")
	c.assertDead(t, "other body session after scope=others")
	stranger.assertAlive(t, "another user's session after scope=others")

	// Global: every device, the caller's included, at once.
	d := a.another(t, false)
	e := a.another(t, true)
	r = d.do(t, "POST", "/auth/logout?scope=global", nil, d.csrf())
	expect(t, r, http.StatusNoContent, "")
	checkClearedCookies(t, r)
	for _, x := range []*device{a, d, e} {
		expect(t, x.me(t), http.StatusUnauthorized, "invalid_token")
	}
	a.assertDead(t, "session A after global logout")
	d.assertDead(t, "session D (caller) after global logout")
	e.assertDead(t, "session E after global logout")
	stranger.assertAlive(t, "another user's session after global logout")

	// Login after global logout works.
	f := a.another(t, true)
	f.assertAlive(t, "new session after global logout")
}

func TestSessionsListAndDelete(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	a := s.newUser(t, false)
	b := a.another(t, true)
	stranger := s.newUser(t, true)

	r := a.srv.do(t, "GET", "/auth/sessions", nil, bearer(a.Access()), hdr("User-Agent", "ignored-by-list"))
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	var body struct {
		Sessions []map[string]any `json:"sessions"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("%s: %v", r, err)
	}
	if len(body.Sessions) != 2 {
		t.Errorf("%s: want 2 sessions", r)
	}
	currents := 0
	byID := map[string]map[string]any{}
	for _, sess := range body.Sessions {
		for _, k := range []string{"id", "created_at", "last_used_at", "expires_at", "user_agent", "ip"} {
			if _, ok := sess[k].(string); !ok {
				t.Errorf("session %v: %s missing or not a string", sess, k)
			}
		}
		for _, k := range []string{"created_at", "last_used_at", "expires_at"} {
			if v, _ := sess[k].(string); !isRFC3339UTC(v) {
				t.Errorf("session %v: %s %q not RFC 3339 UTC", sess["id"], k, v)
			}
		}
		cur, ok := sess["current"].(bool)
		if !ok {
			t.Errorf("session %v: current missing or not a bool", sess)
		}
		if cur {
			currents++
			if sess["id"] != a.sid {
				t.Errorf("current session is %v, want %s", sess["id"], a.sid)
			}
		}
		if ip, _ := sess["ip"].(string); ip != "127.0.0.1" {
			t.Errorf("session %v: ip %q, want 127.0.0.1", sess["id"], ip)
		}
		id, _ := sess["id"].(string)
		byID[id] = sess
	}
	if currents != 1 {
		t.Errorf("%d sessions marked current, want 1", currents)
	}
	if sa := byID[a.sid]; sa == nil || sa["user_agent"] != a.ua {
		t.Errorf("session %s: user_agent %v, want %q", a.sid, sa["user_agent"], a.ua)
	}
	if sb := byID[b.sid]; sb == nil || sb["user_agent"] != b.ua {
		t.Errorf("session %s: user_agent %v, want %q", b.sid, sb["user_agent"], b.ua)
	}
	// No token material.
	for _, tok := range []string{a.Refresh(), b.Refresh()} {
		_, secret := splitRefresh(t, tok)
		h := sha256.Sum256([]byte(tok))
		for _, bad := range []string{tok, secret, hex.EncodeToString(h[:])} {
			if strings.Contains(string(r.Body), bad) {
				t.Errorf("GET /auth/sessions contains refresh-token material %q", abbrev(bad))
			}
		}
	}
	if strings.Contains(string(r.Body), a.Access()) {
		t.Errorf("GET /auth/sessions contains the access token")
	}

	// Someone else's session: 404, and it survives.
	r = s.do(t, "DELETE", "/auth/sessions/"+stranger.sid, nil, bearer(a.Access()))
	expect(t, r, http.StatusNotFound, "not_found")
	stranger.assertAlive(t, "stranger's session after a foreign DELETE")
	r = s.do(t, "DELETE", "/auth/sessions/does-not-exist", nil, bearer(a.Access()))
	expect(t, r, http.StatusNotFound, "not_found")

	// Own other device: 204 and that device is dead at once.
	r = s.do(t, "DELETE", "/auth/sessions/"+b.sid, nil, bearer(a.Access()))
	expect(t, r, http.StatusNoContent, "")
	b.assertDead(t, "session deleted via DELETE /auth/sessions/{id}")
	a.assertAlive(t, "caller after deleting another of its sessions")
	// Deleting it again: 404 or 204, never a 5xx.
	r = s.do(t, "DELETE", "/auth/sessions/"+b.sid, nil, bearer(a.Access()))
	expectStatusIn(t, r, http.StatusNotFound, http.StatusNoContent)

	// The list shrinks.
	r = s.do(t, "GET", "/auth/sessions", nil, bearer(a.Access()))
	if expect(t, r, http.StatusOK, "") {
		json.Unmarshal(r.Body, &body)
		if len(body.Sessions) != 1 {
			t.Errorf("after deleting one of two sessions: %s", r)
		}
	}
	// Without auth: 401.
	expect(t, s.do(t, "GET", "/auth/sessions", nil), http.StatusUnauthorized, "")

	// Deleting the caller's own current session ends it at once.
	r = s.do(t, "DELETE", "/auth/sessions/"+a.sid, nil, bearer(a.Access()))
	expect(t, r, http.StatusNoContent, "")
	a.assertDead(t, "session that deleted itself")
}

func TestPasswordChange(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	a := s.newUser(t, true)
	b := a.another(t, false)
	c := a.another(t, true)
	oldPW := a.password
	newPW := newPassword()

	// Wrong current password: refused, nothing changes.
	r := s.do(t, "POST", "/auth/password", map[string]any{"current_password": oldPW + "x", "new_password": newPW}, bearer(a.Access()))
	if r.Status != http.StatusUnauthorized && r.Status != http.StatusForbidden {
		t.Errorf("%s\n\twant 401 or 403", r)
	}
	if r.Code() != "invalid_credentials" && r.Code() != "forbidden" {
		t.Errorf("%s\n\twant code invalid_credentials (or forbidden)", r)
	}
	b.assertAlive(t, "session after a refused password change")
	// A weak new password: 422.
	r = s.do(t, "POST", "/auth/password", map[string]any{"current_password": oldPW, "new_password": "password123"}, bearer(a.Access()))
	expect(t, r, http.StatusUnprocessableEntity, "weak_password")
	// Unauthenticated: 401.
	r = s.do(t, "POST", "/auth/password", map[string]any{"current_password": oldPW, "new_password": newPW})
	expect(t, r, http.StatusUnauthorized, "")

	accessBefore := a.Access()
	r = s.do(t, "POST", "/auth/password", map[string]any{"current_password": oldPW, "new_password": newPW}, bearer(a.Access()))
	if !expect(t, r, http.StatusNoContent, "") {
		t.FailNow()
	}
	// The calling session and its very access token keep working.
	if r := s.meWith(t, accessBefore); r.Status != http.StatusOK {
		t.Errorf("calling session's access token after password change: %s", r)
	}
	b.assertDead(t, "other cookie session after password change")
	c.assertDead(t, "other body session after password change")
	a.assertAlive(t, "calling session after password change")

	r = s.do(t, "POST", "/auth/login", map[string]any{"email": a.email, "password": oldPW})
	expect(t, r, http.StatusUnauthorized, "invalid_credentials")
	s.login(t, a.email, newPW, true)
}
