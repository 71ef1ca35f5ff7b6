package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// Regression tests for contract details found in a review of the built
// server against API.md.
func TestContractDetails(t *testing.T) {
	t.Parallel()
	s := startServer(t)

	t.Run("HEAD is served on GET endpoints", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/readyz", "/metrics", "/.well-known/jwks.json"} {
			r := s.do(t, "HEAD", path, nil)
			if r.Status != http.StatusOK || len(r.Body) != 0 {
				t.Errorf("%s -> %d with %d body bytes, want 200 and no body", r.req, r.Status, len(r.Body))
			}
		}
	})

	t.Run("metrics content type", func(t *testing.T) {
		r := s.do(t, "GET", "/metrics", nil)
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") || strings.Contains(ct, "escaping") {
			t.Errorf("Content-Type %q, want text/plain; version=0.0.4", ct)
		}
	})

	t.Run("token only in the URL is no credentials", func(t *testing.T) {
		d := s.newUser(t, true)
		r := s.do(t, "GET", "/auth/me?access_token="+d.Access(), nil)
		expect(t, r, http.StatusUnauthorized, "invalid_token")
		if got := r.Header.Get("WWW-Authenticate"); got != "Bearer" {
			t.Errorf("WWW-Authenticate %q, want plain Bearer", got)
		}
	})

	t.Run("weak new password names new_password", func(t *testing.T) {
		d := s.newUser(t, true)
		r := d.do(t, "POST", "/auth/password", map[string]any{"current_password": d.password, "new_password": "password"}, bearer(d.Access()))
		expect(t, r, http.StatusUnprocessableEntity, "weak_password")
		if f := errorFields(r); len(f) != 1 || f[0] != "new_password" {
			t.Errorf("errors fields %v, want [new_password]", f)
		}
		r = d.do(t, "POST", "/auth/password", map[string]any{}, bearer(d.Access()))
		expect(t, r, http.StatusUnprocessableEntity, "validation_failed")
		if f := errorFields(r); len(f) != 2 {
			t.Errorf("errors fields %v, want current_password and new_password", f)
		}
	})

	t.Run("admin session listing validates limit and after", func(t *testing.T) {
		_, admin := s.makeAdmin(t)
		u := s.newUser(t, true)
		u.another(t, true)
		for _, q := range []string{"?limit=0", "?limit=x", "?limit=201", "?after=zzz"} {
			r := admin.do(t, "GET", "/admin/users/"+u.user.ID+"/sessions"+q, nil, bearer(admin.Access()))
			expect(t, r, http.StatusUnprocessableEntity, "validation_failed")
		}
		r := admin.do(t, "GET", "/admin/users/"+u.user.ID+"/sessions?limit=1", nil, bearer(admin.Access()))
		expect(t, r, http.StatusOK, "")
		page := r.JSON()
		list, _ := page["sessions"].([]any)
		next, _ := page["next"].(string)
		if len(list) != 1 || next == "" {
			t.Fatalf("first page: %s", r)
		}
		r = admin.do(t, "GET", "/admin/users/"+u.user.ID+"/sessions?limit=1&after="+next, nil, bearer(admin.Access()))
		expect(t, r, http.StatusOK, "")
		list2, _ := r.JSON()["sessions"].([]any)
		if len(list2) != 1 || list2[0].(map[string]any)["id"] == list[0].(map[string]any)["id"] {
			t.Errorf("second page should hold the other session: %s", r)
		}
	})

	t.Run("native app logs out with its refresh token when its access token is refused", func(t *testing.T) {
		d := s.newUser(t, true)
		// An access token the server refuses, as an expired one would be
		// once past the clock leeway.
		refused := d.Access()[:len(d.Access())-4] + "AAAA"
		expect(t, s.meWith(t, refused), http.StatusUnauthorized, "invalid_token")
		r := d.do(t, "POST", "/auth/logout", map[string]any{"refresh_token": d.Refresh()}, bearer(refused))
		expect(t, r, http.StatusNoContent, "")
		r = s.refreshWith(t, d.Refresh())
		expect(t, r, http.StatusUnauthorized, "invalid_refresh_token")
	})

	t.Run("logout others keeps the caller's cookies", func(t *testing.T) {
		d := s.newUser(t, false)
		d.another(t, true)
		r := d.do(t, "POST", "/auth/logout?scope=others", nil, bearer(d.Access()))
		expect(t, r, http.StatusNoContent, "")
		if len(r.SetCookies) != 0 {
			t.Errorf("scope=others cleared cookies: %v", r.Header.Values("Set-Cookie"))
		}
		d.assertAlive(t, "caller after logout of others")
	})

	t.Run("empty object without content type on body-less endpoints", func(t *testing.T) {
		d := s.newUser(t, false)
		r := d.do(t, "POST", "/auth/refresh", rawBody("{}"), d.csrf(), hdr("Content-Type", ""))
		expect(t, r, http.StatusOK, "")
	})
}
