package e2e

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRefreshRotationBodyMode(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	d := s.newUser(t, true)
	seen := map[string]bool{d.Refresh(): true}
	accessSeen := map[string]bool{d.Access(): true}
	sid := d.sid
	for i := 0; i < 3; i++ {
		r := d.refreshOK(t)
		if r.Status != http.StatusOK {
			t.FailNow()
		}
		if seen[d.Refresh()] {
			t.Errorf("refresh #%d returned an already used refresh token", i+1)
		}
		if accessSeen[d.Access()] {
			t.Errorf("refresh #%d returned an already issued access token", i+1)
		}
		seen[d.Refresh()] = true
		accessSeen[d.Access()] = true
		if d.sid != sid {
			t.Errorf("refresh changed session_id %s -> %s", sid, d.sid)
		}
		if r := d.me(t); r.Status != http.StatusOK {
			t.Errorf("new access token rejected: %s", r)
		}
	}
}

func TestRefreshRotationCookieMode(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	d := s.newUser(t, false)
	other := s.newUser(t, false)
	rt0 := d.Refresh()

	// No CSRF header, a wrong one, and another session's valid one: 403.
	r := d.do(t, "POST", "/auth/refresh", nil)
	expect(t, r, http.StatusForbidden, "csrf_failed")
	r = d.do(t, "POST", "/auth/refresh", nil, hdr("X-CSRF-Token", "wrong"))
	expect(t, r, http.StatusForbidden, "csrf_failed")
	r = d.do(t, "POST", "/auth/refresh", nil, hdr("X-CSRF-Token", d.cookie(csrfCookie)+"x"))
	expect(t, r, http.StatusForbidden, "csrf_failed")
	r = d.do(t, "POST", "/auth/refresh", nil, hdr("X-CSRF-Token", other.cookie(csrfCookie)))
	expect(t, r, http.StatusForbidden, "csrf_failed")
	// Cookie and header both replaced by another session's CSRF pair.
	r = s.do(t, "POST", "/auth/refresh", nil,
		hdr("Cookie", refreshCookie+"="+rt0+"; "+csrfCookie+"="+other.cookie(csrfCookie)),
		hdr("X-CSRF-Token", other.cookie(csrfCookie)))
	expect(t, r, http.StatusForbidden, "csrf_failed")
	if d.Refresh() != rt0 {
		t.Fatalf("a refused refresh changed the refresh cookie")
	}

	// Now properly: no body, no Content-Type.
	r = d.do(t, "POST", "/auth/refresh", nil, d.csrf())
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	checkTokenResponse(t, r, false)
	rt1 := d.Refresh()
	if rt1 == rt0 {
		t.Fatalf("cookie refresh did not rotate")
	}
	c := r.Cookie(refreshCookie)
	if c.Path != "/auth" || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.MaxAge <= 0 {
		t.Errorf("rotated refresh cookie attributes wrong: %s", r.rawSetCookie(refreshCookie))
	}
	if r := d.me(t); r.Status != http.StatusOK {
		t.Errorf("access token from cookie refresh rejected: %s", r)
	}
	// An empty JSON object is accepted too.
	r = d.do(t, "POST", "/auth/refresh", map[string]any{}, d.csrf())
	if expect(t, r, http.StatusOK, "") && d.Refresh() == rt1 {
		t.Errorf("refresh with {} did not rotate")
	}
}

func TestRefreshGraceReplay(t *testing.T) {
	t.Parallel()
	s := startServer(t) // default grace 10s

	// Body mode: the replayed token gets the same successor.
	d := s.newUser(t, true)
	rt0 := d.Refresh()
	d.refreshOK(t)
	rt1 := d.Refresh()
	r := s.refreshWith(t, rt0)
	if expect(t, r, http.StatusOK, "") {
		checkTokenResponse(t, r, true)
		if got, _ := r.JSON()["refresh_token"].(string); got != rt1 {
			t.Errorf("grace replay returned refresh token %q, want the same successor %q", abbrev(got), abbrev(rt1))
		}
		if at, _ := r.JSON()["access_token"].(string); at != "" {
			if mr := s.meWith(t, at); mr.Status != http.StatusOK {
				t.Errorf("access token from grace replay rejected: %s", mr)
			}
		}
	}
	// A second replay converges too, and the successor still works.
	r = s.refreshWith(t, rt0)
	if expect(t, r, http.StatusOK, "") {
		if got, _ := r.JSON()["refresh_token"].(string); got != rt1 {
			t.Errorf("second grace replay returned %q, want %q", abbrev(got), abbrev(rt1))
		}
	}
	d.refreshOK(t)
	d.assertAlive(t, "body session after grace replays")

	// Cookie mode: the same cookie is set again.
	c := s.newUser(t, false)
	crt0 := c.Refresh()
	csrf := c.cookie(csrfCookie)
	c.refreshOK(t)
	crt1 := c.Refresh()
	r = s.do(t, "POST", "/auth/refresh", nil,
		hdr("Cookie", refreshCookie+"="+crt0+"; "+csrfCookie+"="+csrf), hdr("X-CSRF-Token", csrf))
	if expect(t, r, http.StatusOK, "") {
		checkTokenResponse(t, r, false)
		if rc := r.Cookie(refreshCookie); rc == nil || rc.Value != crt1 {
			t.Errorf("cookie grace replay set %q, want the same successor %q", r.rawSetCookie(refreshCookie), abbrev(crt1))
		}
	}
	c.refreshOK(t)
}

func TestRefreshConcurrent(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	const n = 20

	t.Run("body", func(t *testing.T) {
		d := s.newUser(t, true)
		rt0 := d.Refresh()
		results := make([]*resp, n)
		atOnce(n, func(i int) { results[i] = s.refreshWith(t, rt0) })
		successors := map[string]int{}
		for _, r := range results {
			if r == nil {
				continue
			}
			if r.Status != http.StatusOK {
				t.Errorf("concurrent refresh: %s\n\twant 200", r)
				continue
			}
			rt, _ := r.JSON()["refresh_token"].(string)
			successors[rt]++
			at, _ := r.JSON()["access_token"].(string)
			if mr := s.meWith(t, at); mr.Status != http.StatusOK {
				t.Errorf("access token from concurrent refresh rejected: %s", mr)
			}
		}
		if len(successors) != 1 {
			t.Fatalf("%d concurrent refreshes produced %d distinct successors: %v", n, len(successors), keysAbbrev(successors))
		}
		for rt := range successors {
			if rt == rt0 {
				t.Fatalf("successor equals the presented token")
			}
			r := s.refreshWith(t, rt)
			if expect(t, r, http.StatusOK, "") {
				checkTokenResponse(t, r, true)
			}
		}
	})

	t.Run("cookie", func(t *testing.T) {
		d := s.newUser(t, false)
		rt0 := d.Refresh()
		csrf := d.cookie(csrfCookie)
		results := make([]*resp, n)
		atOnce(n, func(i int) {
			results[i] = s.do(t, "POST", "/auth/refresh", nil,
				hdr("Cookie", refreshCookie+"="+rt0+"; "+csrfCookie+"="+csrf), hdr("X-CSRF-Token", csrf))
		})
		successors := map[string]int{}
		for _, r := range results {
			if r == nil {
				continue
			}
			if r.Status != http.StatusOK {
				t.Errorf("concurrent cookie refresh: %s\n\twant 200", r)
				continue
			}
			if c := r.Cookie(refreshCookie); c != nil {
				successors[c.Value]++
			} else {
				t.Errorf("concurrent cookie refresh: 200 without refresh cookie")
			}
		}
		if len(successors) != 1 {
			t.Fatalf("%d concurrent cookie refreshes produced %d distinct successors", n, len(successors))
		}
		for rt := range successors {
			d.setCookie(refreshCookie, rt, "/auth")
			r := d.do(t, "POST", "/auth/refresh", nil, d.csrf())
			expect(t, r, http.StatusOK, "")
		}
	})
}

func keysAbbrev(m map[string]int) []string {
	var out []string
	for k, v := range m {
		out = append(out, abbrev(k)+"×"+strconv.Itoa(v))
	}
	return out
}

func TestRefreshReuseKillsSession(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--reuse-grace", "1s")

	// Body mode: rotate once, wait past the grace window, replay the old token.
	d := s.newUser(t, true)
	other := d.another(t, true)
	otherCookie := d.another(t, false)
	rt0 := d.Refresh()
	d.refreshOK(t)
	rt1 := d.Refresh()
	staleAccess := d.Access()
	time.Sleep(1500 * time.Millisecond)

	r := s.refreshWith(t, rt0)
	expect(t, r, http.StatusUnauthorized, "refresh_token_reused")
	for _, tok := range []string{rt0, rt1} {
		if strings.Contains(string(r.Body), tok) {
			t.Errorf("%s: error body echoes a refresh token", r.req)
		}
	}
	// At once: the session's access token is rejected, its newest token fails.
	expect(t, s.meWith(t, staleAccess), http.StatusUnauthorized, "invalid_token")
	r = s.refreshWith(t, rt1)
	if r.Status != http.StatusUnauthorized || (r.Code() != "refresh_token_reused" && r.Code() != "invalid_refresh_token") {
		t.Errorf("newest token of a reuse-killed session: %s\n\twant 401 refresh_token_reused or invalid_refresh_token", r)
	}
	r = s.refreshWith(t, rt0)
	expect(t, r, http.StatusUnauthorized, "")
	// Other sessions of the same user are untouched.
	other.assertAlive(t, "other body session of the same user")
	otherCookie.assertAlive(t, "other cookie session of the same user")

	// Cookie mode, same story.
	c := s.newUser(t, false)
	crt0 := c.Refresh()
	csrf := c.cookie(csrfCookie)
	c.refreshOK(t)
	cAccess := c.Access()
	time.Sleep(1500 * time.Millisecond)
	r = s.do(t, "POST", "/auth/refresh", nil,
		hdr("Cookie", refreshCookie+"="+crt0+"; "+csrfCookie+"="+csrf), hdr("X-CSRF-Token", csrf))
	expect(t, r, http.StatusUnauthorized, "refresh_token_reused")
	expect(t, s.meWith(t, cAccess), http.StatusUnauthorized, "invalid_token")
	r = c.do(t, "POST", "/auth/refresh", nil, c.csrf())
	if r.Status != http.StatusUnauthorized {
		t.Errorf("newest cookie token of a reuse-killed session: %s\n\twant 401", r)
	}
}

func TestRefreshReuseOfAnyAncestor(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--reuse-grace", "1s")

	rotate5 := func(d *device) []string {
		toks := []string{d.Refresh()}
		for i := 0; i < 5; i++ {
			if r := d.refreshOK(t); r.Status != http.StatusOK {
				t.FailNow()
			}
			toks = append(toks, d.Refresh())
		}
		return toks
	}
	first := s.newUser(t, true)
	middle := first.another(t, true)
	bystander := first.another(t, true)
	ft := rotate5(first)
	mt := rotate5(middle)
	time.Sleep(1500 * time.Millisecond)

	// The first of the five rotated tokens.
	r := s.refreshWith(t, ft[0])
	expect(t, r, http.StatusUnauthorized, "refresh_token_reused")
	expect(t, first.me(t), http.StatusUnauthorized, "invalid_token")
	if r := s.refreshWith(t, ft[5]); r.Status != http.StatusUnauthorized {
		t.Errorf("newest token after reuse of the first: %s\n\twant 401", r)
	}

	// A middle one.
	r = s.refreshWith(t, mt[2])
	expect(t, r, http.StatusUnauthorized, "refresh_token_reused")
	expect(t, middle.me(t), http.StatusUnauthorized, "invalid_token")
	if r := s.refreshWith(t, mt[5]); r.Status != http.StatusUnauthorized {
		t.Errorf("newest token after reuse of a middle one: %s\n\twant 401", r)
	}

	bystander.assertAlive(t, "untouched session of the same user")
}

func TestRefreshForgeryRevokesNothing(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	d := s.newUser(t, true)
	d.refreshOK(t)
	other := s.newUser(t, true)
	rt := d.Refresh()
	id, secret := splitRefresh(t, rt)
	_, otherSecret := splitRefresh(t, other.Refresh())

	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	randSecret := base64.RawURLEncoding.EncodeToString([]byte(randHex(len(secret))))[:len(secret)]
	forged := map[string]string{
		"tampered (middle char of secret flipped)": id + "." + flip(secret, len(secret)/2),
		"tampered (first char of secret flipped)":  id + "." + flip(secret, 0),
		"valid id, random secret":                  id + "." + randSecret,
		"valid id, another session's secret":       id + "." + otherSecret,
		"valid id, secret with a char appended":    id + "." + secret + "A",
		"valid id, truncated secret":               id + "." + secret[:len(secret)-4],
		"valid id, empty secret":                   id + ".",
		"valid id only":                            id,
		"garbage":                                  "garbage",
		"dots":                                     "...",
		"a.b":                                      "a.b",
		"non-ASCII":                                "ñ.ñ",
		"10k":                                      strings.Repeat("A", 10000) + "." + strings.Repeat("B", 100),
	}
	for name, tok := range forged {
		r := s.refreshWith(t, tok)
		if !expect(t, r, http.StatusUnauthorized, "invalid_refresh_token") {
			t.Errorf("forgery case %q", name)
		}
		if len(tok) > 8 && strings.Contains(string(r.Body), tok) {
			t.Errorf("forgery case %q: error body echoes the token", name)
		}
	}
	// Cookie-mode forgery too.
	c := s.newUser(t, false)
	cid, csecret := splitRefresh(t, c.Refresh())
	csrf := c.cookie(csrfCookie)
	r := s.do(t, "POST", "/auth/refresh", nil,
		hdr("Cookie", refreshCookie+"="+cid+"."+flip(csecret, len(csecret)/2)+"; "+csrfCookie+"="+csrf), hdr("X-CSRF-Token", csrf))
	if !(r.Status == http.StatusUnauthorized && r.Code() == "invalid_refresh_token") && !(r.Status == http.StatusForbidden && r.Code() == "csrf_failed") {
		t.Errorf("%s\n\twant 401 invalid_refresh_token (or 403 csrf_failed)", r)
	}

	// Nothing was revoked: access tokens work and the sessions still rotate.
	if r := d.me(t); r.Status != http.StatusOK {
		t.Errorf("access token after forgery attempts: %s", r)
	}
	d.refreshOK(t)
	other.refreshOK(t)
	c.refreshOK(t)
	if r := c.me(t); r.Status != http.StatusOK {
		t.Errorf("cookie session access token after forgery attempt: %s", r)
	}
}

func TestRefreshIdleExpiry(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--refresh-idle-ttl", "2s")
	d := s.newUser(t, true)
	// Used every 1.2s, it stays alive past 2s since login (idle, not absolute).
	time.Sleep(1200 * time.Millisecond)
	d.refreshOK(t)
	time.Sleep(1200 * time.Millisecond)
	d.refreshOK(t)
	// Unused for longer than 2s: gone.
	time.Sleep(2600 * time.Millisecond)
	r := s.refreshWith(t, d.Refresh())
	expect(t, r, http.StatusUnauthorized, "invalid_refresh_token")
	// Cookie mode.
	c := s.newUser(t, false)
	time.Sleep(2600 * time.Millisecond)
	r = c.do(t, "POST", "/auth/refresh", nil, c.csrf())
	expect(t, r, http.StatusUnauthorized, "invalid_refresh_token")
}

func TestRefreshAbsoluteExpiry(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--session-max-age", "3s")
	d := s.newDevice(false)
	email, pw := newEmail(), newPassword()
	r := d.do(t, "POST", "/auth/signup", d.authBody(email, pw, nil))
	born := time.Now()
	if !expect(t, r, http.StatusCreated, "") {
		t.FailNow()
	}
	if c := r.Cookie(refreshCookie); c != nil && (c.MaxAge <= 0 || c.MaxAge > 3) {
		t.Errorf("refresh cookie Max-Age = %d with --session-max-age 3s, want 1..3: %s", c.MaxAge, r.rawSetCookie(refreshCookie))
	}
	var failedAt time.Duration
	for time.Since(born) < 6*time.Second {
		time.Sleep(500 * time.Millisecond)
		r := d.do(t, "POST", "/auth/refresh", nil, d.csrf())
		if r.Status == http.StatusOK {
			continue
		}
		failedAt = time.Since(born)
		expect(t, r, http.StatusUnauthorized, "invalid_refresh_token")
		break
	}
	switch {
	case failedAt == 0:
		t.Errorf("session still refreshes 6s after login with --session-max-age 3s")
	case failedAt < 1900*time.Millisecond:
		t.Errorf("session ended %v after login, before --session-max-age 3s", failedAt)
	}
}

// TestRefreshTransportFollowsPresentation: a token presented by body gets its
// successor by body, even when the session began in cookie mode.
func TestRefreshTransportFollowsPresentation(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.newUser(t, false)
	r := s.refreshWith(t, c.Refresh())
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	checkTokenResponse(t, r, true)
	next, _ := r.JSON()["refresh_token"].(string)
	if next == "" || next == c.Refresh() {
		t.Fatalf("body-presented cookie-session token: successor %q", abbrev(next))
	}
	expect(t, s.refreshWith(t, next), http.StatusOK, "")
}
