package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestProdParity runs key flows of the functional suite on PostgreSQL and
// Redis, with two instances, to show the production configuration keeps the
// contract the SQLite tests prove. Each flow starts on A and is checked on B.
func TestProdParity(t *testing.T) {
	t.Parallel()
	c, _ := prodNewCluster(t)
	a := c.start(t, "--reuse-grace", "1s")
	b := c.start(t, "--reuse-grace", "1s")

	t.Run("signup and login", func(t *testing.T) {
		k := a.newUser(t, false) // cookie mode
		n := a.newUser(t, true)  // body mode
		// Emails are unique case-insensitively, across instances.
		r := b.do(t, "POST", "/auth/signup", map[string]any{"email": strings.ToUpper(k.email), "password": newPassword()})
		expect(t, r, http.StatusConflict, "email_taken")
		r = b.do(t, "POST", "/auth/login", map[string]any{"email": n.email, "password": "Wrong-" + randHex(4)},
			hdr("X-Forwarded-For", prodIP()))
		expect(t, r, http.StatusUnauthorized, "invalid_credentials")
		l := prodLogin(t, b, strings.ToUpper(n.email), n.password, true)
		if l.user.ID != n.user.ID {
			t.Errorf("login on B found user %q, signup on A made %q", l.user.ID, n.user.ID)
		}
		prodUse(k, b)
		k.assertAlive(t, "cookie session from A, used on B")
		r = b.do(t, "GET", "/auth/sessions", nil, bearer(l.Access()))
		if expect(t, r, http.StatusOK, "") {
			if got := strings.Count(string(r.Body), `"id"`); got != 2 {
				t.Errorf("GET /auth/sessions on B lists %d sessions, want 2 (one from each instance): %s", got, r)
			}
		}
	})

	t.Run("refresh grace replay", func(t *testing.T) {
		d := a.newUser(t, true)
		rt0 := d.Refresh()
		d.refreshOK(t)
		rt1 := d.Refresh()
		for _, s := range []*server{b, a} {
			r := s.refreshWith(t, rt0)
			if expect(t, r, http.StatusOK, "") {
				if got, _ := r.JSON()["refresh_token"].(string); got != rt1 {
					t.Errorf("grace replay on %s returned %q, want the same successor %q", s.base, abbrev(got), abbrev(rt1))
				}
			}
		}
		prodUse(d, b)
		d.refreshOK(t)
	})

	t.Run("reuse kills the session", func(t *testing.T) {
		d := a.newUser(t, true)
		other := prodLogin(t, b, d.email, d.password, true)
		rt0 := d.Refresh()
		d.refreshOK(t)
		time.Sleep(1200 * time.Millisecond) // past --reuse-grace
		expect(t, b.refreshWith(t, rt0), http.StatusUnauthorized, "refresh_token_reused")
		for _, s := range []*server{b, a} { // detected on B; A learns it within 1 s
			prodAwaitRevoked(t, "reuse detected on B", s, d.Access(), time.Second)
			if r := s.refreshWith(t, d.Refresh()); r.Status != http.StatusUnauthorized {
				t.Errorf("newest token of a reuse-killed session on %s: %s\n\twant 401", s.base, r)
			}
		}
		other.assertAlive(t, "other session of the same user")
	})

	t.Run("logout global and password change", func(t *testing.T) {
		d := a.newUser(t, true)
		e := prodLogin(t, b, d.email, d.password, false)
		expect(t, b.do(t, "POST", "/auth/logout?scope=global", nil, bearer(d.Access())), http.StatusNoContent, "")
		prodAwaitDead(t, "caller after global logout (seen on B)", d, b)
		prodAwaitDead(t, "other session after global logout (seen on A)", e, a)

		p := b.newUser(t, true)
		q := prodLogin(t, a, p.email, p.password, true)
		pw := newPassword()
		expect(t, a.do(t, "POST", "/auth/password", map[string]any{"current_password": p.password, "new_password": pw},
			bearer(p.Access())), http.StatusNoContent, "")
		prodAwaitDead(t, "other session after password change (seen on B)", q, b)
		p.assertAlive(t, "calling session after password change")
		prodLogin(t, b, p.email, pw, true)
	})

	t.Run("admin created by the CLI on PostgreSQL", func(t *testing.T) {
		email, pw := "admin-"+newEmail(), newPassword()
		res := runCLI(t, pw+"\n", nil, "user", "create", "--email", email, "--role", "admin",
			"--database", c.dbURL, "--master-key", c.key)
		if res.code != 0 {
			t.Fatalf("gatehouse user create: exit %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
		}
		admin := prodLogin(t, a, email, pw, true)
		if admin.user.Role != "admin" {
			t.Fatalf("CLI-created admin logs in with role %q", admin.user.Role)
		}
		victim := b.newUser(t, true)
		r := b.do(t, "PATCH", "/admin/users/"+victim.user.ID, map[string]any{"disabled": true}, bearer(admin.Access()))
		expect(t, r, http.StatusOK, "")
		prodAwaitDead(t, "disabled user's session (seen on A)", victim, a)
		r = a.do(t, "POST", "/auth/login", map[string]any{"email": victim.email, "password": victim.password},
			hdr("X-Forwarded-For", prodIP()))
		expect(t, r, http.StatusUnauthorized, "invalid_credentials")
	})
}
