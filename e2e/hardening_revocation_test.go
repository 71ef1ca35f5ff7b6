package e2e

// Revocation edge cases (issue 10, items 4–6), on SQLite and on
// PostgreSQL + Redis: what a dead refresh token may still do at logout, and
// how long revocation entries must be kept and reloaded.

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

// accessLeewayE2E is the server's clock leeway for access tokens
// (cmd/gatehouse accessLeeway): a token is accepted until exp plus this.
const accessLeewayE2E = 30 * time.Second

// hrLogoutWith presents token to POST /auth/logout?scope=scope the way d
// would (cookie with d's CSRF token, or body), without a Bearer token and
// without touching d's state.
func hrLogoutWith(t *testing.T, d *device, token, scope string) *resp {
	t.Helper()
	path := "/auth/logout?scope=" + scope
	if d.body {
		return d.srv.do(t, "POST", path, map[string]any{"refresh_token": token})
	}
	d.mu.Lock()
	csrf := d.lastCSRF
	d.mu.Unlock()
	return d.srv.do(t, "POST", path, nil,
		hdr("Cookie", refreshCookie+"="+token+"; "+csrfCookie+"="+csrf),
		hdr("X-CSRF-Token", csrf))
}

// hrTransportName names a transport for subtest and failure messages.
func hrTransportName(body bool) string {
	if body {
		return "body"
	}
	return "cookie"
}

// hrVictim is a user with the device whose refresh token dies (a) and two
// live devices (b in the same transport, c in the other).
type hrVictim struct {
	what    string
	scope   string
	a, b, c *device
	token   string   // a's dead refresh token
	codes   []string // acceptable problem codes for presenting it
}

// check presents the dead token to logout and proves that nothing ended.
func (v *hrVictim) check(t *testing.T) {
	t.Helper()
	what := v.what + ", " + hrTransportName(v.a.body) + " mode, scope=" + v.scope
	r := hrLogoutWith(t, v.a, v.token, v.scope)
	if r.Status != http.StatusUnauthorized {
		t.Errorf("%s: refresh token of a dead session identified a session for logout: %s\n\twant 401 %v", what, r, v.codes)
	} else if c := r.Code(); !slices.Contains(v.codes, c) {
		t.Errorf("%s: %s\n\twant code in %v", what, r, v.codes)
	}
	for _, o := range []*device{v.b, v.c} {
		me := o.me(t)
		rf := o.refreshReq(t)
		if me.Status != http.StatusOK || rf.Status != http.StatusOK {
			t.Errorf("%s: the user's other session (%s mode) ended: GET /auth/me -> %d, refresh -> %d %s; want both 200",
				what, hrTransportName(o.body), me.Status, rf.Status, rf.Code())
		}
	}
}

// TestHardeningLogoutWithDeadRefreshToken (issue 10, item 4): a refresh
// token of a session that was logged out, ended by DELETE
// /auth/sessions/{id}, or expired (idle), and a rotated token outside the
// grace window, must not perform logout?scope=global or ?scope=others:
// 401 invalid_refresh_token, and the user's other sessions stay alive. In
// cookie mode and in body mode.
func TestHardeningLogoutWithDeadRefreshToken(t *testing.T) {
	t.Parallel()
	hrEachBackend(t, func(t *testing.T, backend string) {
		t.Run("revoked or rotated", func(t *testing.T) {
			t.Parallel()
			e := hrStart(t, backend, "--reuse-grace", "1s")
			s := e.s
			var victims []*hrVictim
			for _, body := range []bool{false, true} {
				for _, scope := range []string{"global", "others"} {
					newVictim := func(what string, codes ...string) *hrVictim {
						a := s.newUser(t, body)
						v := &hrVictim{what: what, scope: scope, a: a, b: a.another(t, body), c: a.another(t, !body), codes: codes}
						victims = append(victims, v)
						return v
					}
					// Logged out (local logout with its own refresh token).
					v := newVictim("logged-out session", "invalid_refresh_token")
					if body {
						expect(t, v.a.do(t, "POST", "/auth/logout", map[string]any{"refresh_token": v.a.Refresh()}), http.StatusNoContent, "")
					} else {
						expect(t, v.a.do(t, "POST", "/auth/logout", nil, v.a.csrf()), http.StatusNoContent, "")
					}
					v.token = v.a.Refresh()
					v.a.assertDead(t, "logged-out session")

					// Ended by another of the user's sessions.
					v = newVictim("session ended by DELETE /auth/sessions/{id}", "invalid_refresh_token")
					expect(t, s.do(t, "DELETE", "/auth/sessions/"+v.a.sid, nil, bearer(v.b.Access())), http.StatusNoContent, "")
					v.token = v.a.Refresh()
					v.a.assertDead(t, "deleted session")

					// Rotated: the predecessor of the current token, once
					// the grace window has passed (below). Whether the
					// server treats it as reuse is its choice; it must not
					// end the other sessions.
					v = newVictim("rotated token outside the grace window", "invalid_refresh_token", "refresh_token_reused")
					v.token = v.a.Refresh()
					v.a.refreshOK(t)
				}
			}
			time.Sleep(1500 * time.Millisecond) // past --reuse-grace
			for _, v := range victims {
				v.check(t)
			}
		})

		t.Run("expired", func(t *testing.T) {
			t.Parallel()
			// Sessions end when their refresh token is unused for 6 s. The
			// dead sessions are made first; the live ones 2.5 s after the
			// last of them, so that when the first have expired the others
			// have seconds left for the checks.
			const idle = 6 * time.Second
			e := hrStart(t, backend, "--refresh-idle-ttl", idle.String())
			s := e.s
			var victims []*hrVictim
			for _, body := range []bool{false, true} {
				for _, scope := range []string{"global", "others"} {
					a := s.newUser(t, body)
					victims = append(victims, &hrVictim{what: "expired session", scope: scope, a: a, token: a.Refresh(), codes: []string{"invalid_refresh_token"}})
				}
			}
			lastDead := time.Now()
			time.Sleep(time.Until(lastDead.Add(2500 * time.Millisecond)))
			firstLive := time.Now()
			for _, v := range victims {
				v.b = v.a.another(t, v.a.body)
				v.c = v.a.another(t, !v.a.body)
			}
			time.Sleep(time.Until(lastDead.Add(idle + 300*time.Millisecond)))
			for _, v := range victims {
				// The premise: the session has expired.
				if r := v.a.presentRefresh(t, v.token); !expect(t, r, http.StatusUnauthorized, "invalid_refresh_token") {
					t.Fatalf("the session was meant to have expired after %v unused", idle)
				}
			}
			for _, v := range victims {
				v.check(t)
			}
			if took := time.Since(firstLive); took >= idle {
				t.Errorf("inconclusive: the checks ended %v after the first live session was made, past its idle expiry (%v)", took.Round(time.Millisecond), idle)
			}
		})
	})
}

// TestHardeningRevocationOutlivesFutureCutoff (issue 10, item 5): several
// role changes in a row push the user's cutoff seconds ahead, and a login
// then gets an access token stamped at that cutoff (iat in the future).
// Logging that session out must keep its access token rejected until the
// token has expired (exp plus the server's leeway), also after a restart:
// the revocation entry must not expire with "now + access TTL + leeway" of
// the logout while the token it covers is still accepted.
//
// Timing, with --access-ttl 1s: the logout's entry used to expire at
// L + 1s + 30s + 1s (L: the logout), the token is accepted until
// iat + 1s + 30s with iat the cutoff, some seconds after L. The server is
// restarted after the entry's old expiry and the token is presented before
// its own acceptance ends.
func TestHardeningRevocationOutlivesFutureCutoff(t *testing.T) {
	t.Parallel()
	hrEachBackend(t, func(t *testing.T, backend string) {
		const ttl = time.Second
		e := hrStart(t, backend, "--access-ttl", ttl.String())
		s := e.s
		admin := e.admin(t)
		v := s.newUser(t, true)

		// Role changes in quick succession: each cutoff is at least a
		// second past the previous one. A server that caps how far ahead
		// the cutoff may go answers 429 rate_limited instead.
		role := "admin"
		for i := range 6 {
			r := s.do(t, "PATCH", "/admin/users/"+v.user.ID, map[string]any{"role": role}, bearer(admin.Access()))
			if i == 0 {
				expect(t, r, http.StatusOK, "")
			} else if expectStatusIn(t, r, http.StatusOK, http.StatusTooManyRequests) && r.Status == http.StatusTooManyRequests {
				expect(t, r, http.StatusTooManyRequests, "rate_limited")
				if r.Header.Get("Retry-After") == "" {
					t.Errorf("%s: 429 without Retry-After", r)
				}
				continue
			}
			if r.Status == http.StatusOK {
				role = map[string]string{"admin": "user", "user": "admin"}[role]
			}
		}
		d := v.another(t, true)    // logged out below
		live := v.another(t, true) // control: stays logged in
		c := hrDecode(t, d.Access())
		iat := time.Unix(c.Iat, 0)
		expect(t, s.do(t, "POST", "/auth/logout", nil, bearer(d.Access())), http.StatusNoContent, "")
		loggedOut := time.Now()
		expect(t, d.me(t), http.StatusUnauthorized, "invalid_token")
		if r := live.me(t); r.Status != http.StatusOK {
			t.Fatalf("live session's token (iat %v ahead of the logout) rejected: %s", iat.Sub(loggedOut).Round(time.Millisecond), r)
		}

		oldExpiry := loggedOut.Add(ttl + accessLeewayE2E + time.Second)
		tokenEnd := time.Unix(c.Exp, 0).Add(accessLeewayE2E)
		t.Logf("token iat is %v after the logout; the logout's entry used to expire at +%v, the token is accepted until +%v",
			iat.Sub(loggedOut).Round(time.Millisecond), oldExpiry.Sub(loggedOut).Round(time.Millisecond), tokenEnd.Sub(loggedOut).Round(time.Millisecond))
		restartAt := oldExpiry.Add(500 * time.Millisecond)
		if restartAt.Add(2 * time.Second).After(tokenEnd) {
			t.Logf("the cutoff is not far enough ahead for the old entry to lapse before the token does; the check after the restart only proves the token stays refused")
		}
		time.Sleep(time.Until(restartAt))
		expect(t, d.me(t), http.StatusUnauthorized, "invalid_token")
		s.Restart()
		now := time.Now()
		if r := d.me(t); r.Status != http.StatusUnauthorized {
			t.Errorf("after a restart %v past the logout: the logged-out session's access token works again (%v before it expires): %s\n\twant 401",
				now.Sub(loggedOut).Round(time.Millisecond), tokenEnd.Sub(now).Round(time.Millisecond), r)
		} else {
			expect(t, r, http.StatusUnauthorized, "invalid_token")
		}
		if r := d.presentRefresh(t, d.Refresh()); r.Status != http.StatusUnauthorized {
			t.Errorf("after the restart: logged-out session refreshes: %s", r)
		}
		if time.Now().Add(500 * time.Millisecond).Before(tokenEnd) {
			// Control: a token of the same age that was not revoked is
			// still accepted, so the refusal above is the revocation's.
			if r := live.me(t); r.Status != http.StatusOK {
				t.Errorf("after the restart: live session's token, not yet expired, rejected: %s", r)
			}
		}
	})
}

// TestHardeningLowerAccessTTLKeepsRevocations (issue 10, item 6): a token
// issued under --access-ttl 10m and revoked by a logout must stay revoked
// after a restart with a much shorter --access-ttl, for as long as it has
// not expired. With --access-ttl 1s the server used to load only entries
// from the last 1s + 30s + 1s, so the restart comes after that.
func TestHardeningLowerAccessTTLKeepsRevocations(t *testing.T) {
	t.Parallel()
	hrEachBackend(t, func(t *testing.T, backend string) {
		e := hrStart(t, backend, "--access-ttl", "10m")
		s := e.s
		d := s.newUser(t, true)
		live := d.another(t, false)
		expect(t, s.do(t, "POST", "/auth/logout", nil, bearer(d.Access())), http.StatusNoContent, "")
		loggedOut := time.Now()
		expect(t, d.me(t), http.StatusUnauthorized, "invalid_token")

		const newTTL = time.Second
		if code := s.Stop(); code != 0 {
			t.Errorf("server exited with code %d on SIGTERM (want 0)", code)
		}
		time.Sleep(time.Until(loggedOut.Add(newTTL + accessLeewayE2E + time.Second + 700*time.Millisecond)))
		s.extra = append(s.extra, "--access-ttl", newTTL.String())
		s.Start()
		if r := d.me(t); r.Status != http.StatusUnauthorized {
			t.Errorf("after a restart with --access-ttl %v, %v after the logout: the logged-out token (valid for 10m) works again: %s\n\twant 401",
				newTTL, time.Since(loggedOut).Round(time.Millisecond), r)
		} else {
			expect(t, r, http.StatusUnauthorized, "invalid_token")
		}
		if r := d.presentRefresh(t, d.Refresh()); r.Status != http.StatusUnauthorized {
			t.Errorf("after the restart: logged-out session refreshes: %s", r)
		}
		// Control: the tokens of the first configuration still verify.
		if r := live.me(t); r.Status != http.StatusOK {
			t.Errorf("after the restart: live token issued under --access-ttl 10m rejected: %s", r)
		}
		live.assertAlive(t, "live session after the restart")
	})
}
