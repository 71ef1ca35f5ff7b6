package e2e

import (
	"net/http"
	"strings"
	"testing"
)

const atkAllowedOrigin = "https://app.example.com"

// TestAttackCSRFCookieMode: cookie-mode refresh and logout need the
// X-CSRF-Token header equal to the __Host-csrf_token cookie, and the cookie
// must be the one bound to the session the refresh cookie names. A missing,
// wrong or attacker-planted pair is 403 csrf_failed and changes nothing.
func TestAttackCSRFCookieMode(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	victim := s.newUser(t, false)
	attacker := s.newUser(t, false)
	rt, csrf := victim.Refresh(), victim.cookie(csrfCookie)
	attCSRF := attacker.cookie(csrfCookie)
	if csrf == "" || attCSRF == "" || csrf == attCSRF {
		t.Fatalf("CSRF cookies: victim %q attacker %q", csrf, attCSRF)
	}
	cases := map[string]struct{ cookie, header string }{
		"no header":                           {refreshCookie + "=" + rt + "; " + csrfCookie + "=" + csrf, ""},
		"no CSRF cookie, right header":        {refreshCookie + "=" + rt, csrf},
		"wrong header":                        {refreshCookie + "=" + rt + "; " + csrfCookie + "=" + csrf, csrf[:len(csrf)-1] + "x"},
		"header differs in case":              {refreshCookie + "=" + rt + "; " + csrfCookie + "=" + csrf, strings.ToUpper(csrf)},
		"planted cookie = header (arbitrary)": {refreshCookie + "=" + rt + "; " + csrfCookie + "=attacker", "attacker"},
		"planted pair of attacker's session":  {refreshCookie + "=" + rt + "; " + csrfCookie + "=" + attCSRF, attCSRF},
		"empty pair":                          {refreshCookie + "=" + rt + "; " + csrfCookie + "=", ""},
		"header only from attacker session":   {refreshCookie + "=" + rt + "; " + csrfCookie + "=" + csrf, attCSRF},
		"huge header":                         {refreshCookie + "=" + rt + "; " + csrfCookie + "=" + strings.Repeat("a", 4000), strings.Repeat("a", 4000)},
		"cookie under a look-alike name":      {refreshCookie + "=" + rt + "; __host-csrf_token=" + csrf, csrf},
	}
	for name, c := range cases {
		for _, path := range []string{"/auth/refresh", "/auth/logout", "/auth/logout?scope=global"} {
			r := s.do(t, "POST", path, nil, hdr("Cookie", c.cookie), hdr("X-CSRF-Token", c.header))
			if !expect(t, r, http.StatusForbidden, "csrf_failed") {
				t.Errorf("  ^ case %q", name)
			}
		}
	}
	// Nothing rotated or ended: the victim's current token (not a grace
	// replay: it was never presented successfully) still refreshes.
	if victim.Refresh() != rt {
		t.Fatal("test bug: victim's token changed")
	}
	victim.assertAlive(t, "victim after CSRF attempts")
	attacker.assertAlive(t, "attacker's own session")
}

// TestAttackCrossOrigin: state-changing requests from foreign origins,
// Origin: null and Sec-Fetch-Site: cross-site/same-site are 403
// csrf_failed on every state-changing endpoint; CORS answers only the
// allowed origin (never *), and preflights from foreign origins get no
// CORS grant.
func TestAttackCrossOrigin(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--allowed-origins", atkAllowedOrigin)
	d := s.newUser(t, false)
	body := s.newUser(t, true)
	email, pw := d.email, d.password
	foreign := []string{
		"null", "https://evil.example", "http://app.example.com", "https://app.example.com.evil.example",
		"https://evil.example/https://app.example.com", "https://app.example.com:8443", "https://sub.app.example.com",
		"https://app.example.co", "file://", "chrome-extension://abcdef",
	}
	type ep struct {
		method, path string
		body         any
		opts         []reqOpt
	}
	endpoints := []ep{
		{"POST", "/auth/login", map[string]any{"email": email, "password": pw}, nil},
		{"POST", "/auth/signup", map[string]any{"email": newEmail(), "password": newPassword()}, nil},
		{"POST", "/auth/refresh", nil, []reqOpt{hdr("Cookie", refreshCookie+"="+d.Refresh()+"; "+csrfCookie+"="+d.cookie(csrfCookie)), d.csrf()}},
		{"POST", "/auth/logout", nil, []reqOpt{bearer(body.Access())}},
		{"POST", "/auth/password", map[string]any{"current_password": body.password, "new_password": newPassword()}, []reqOpt{bearer(body.Access())}},
		{"DELETE", "/auth/sessions/" + body.sid, nil, []reqOpt{bearer(body.Access())}},
		{"PATCH", "/admin/users/" + body.user.ID, map[string]any{"role": "admin"}, []reqOpt{bearer(body.Access())}},
	}
	for _, e := range endpoints {
		for _, o := range foreign {
			opts := append(append([]reqOpt{}, e.opts...), hdr("Origin", o))
			r := s.do(t, e.method, e.path, e.body, opts...)
			if !expect(t, r, http.StatusForbidden, "csrf_failed") {
				t.Errorf("  ^ %s %s from Origin %q", e.method, e.path, o)
			}
			if acao := r.Header.Get("Access-Control-Allow-Origin"); acao != "" {
				t.Errorf("%s %s from %q: Access-Control-Allow-Origin %q", e.method, e.path, o, acao)
			}
		}
		for _, sfs := range []string{"cross-site", "same-site"} {
			opts := append(append([]reqOpt{}, e.opts...), hdr("Sec-Fetch-Site", sfs))
			r := s.do(t, e.method, e.path, e.body, opts...)
			if !expect(t, r, http.StatusForbidden, "csrf_failed") {
				t.Errorf("  ^ %s %s with Sec-Fetch-Site %q", e.method, e.path, sfs)
			}
		}
		// Origin: null wins over a same-origin Sec-Fetch-Site.
		opts := append(append([]reqOpt{}, e.opts...), hdr("Origin", "null"), hdr("Sec-Fetch-Site", "same-origin"))
		r := s.do(t, e.method, e.path, e.body, opts...)
		expect(t, r, http.StatusForbidden, "csrf_failed")
	}
	// None of that changed anything.
	d.assertAlive(t, "cookie session after cross-origin attempts")
	body.assertAlive(t, "body session after cross-origin attempts")
	if r := body.me(t); r.Status == http.StatusOK && strings.Contains(string(r.Body), `"role":"admin"`) {
		t.Errorf("cross-origin PATCH made the user admin")
	}

	// The allowed origin is answered with credentials, by name, never *.
	r := s.do(t, "POST", "/auth/login", map[string]any{"email": email, "password": pw}, hdr("Origin", atkAllowedOrigin))
	expect(t, r, http.StatusOK, "")
	if got := r.Header.Get("Access-Control-Allow-Origin"); got != atkAllowedOrigin {
		t.Errorf("allowed origin: Access-Control-Allow-Origin = %q", got)
	}
	if got := r.Header.Get("Access-Control-Allow-Credentials"); got != "true" {
		t.Errorf("allowed origin: Access-Control-Allow-Credentials = %q", got)
	}
	if !strings.Contains(strings.Join(r.Header.Values("Vary"), ","), "Origin") {
		t.Errorf("allowed origin: no Vary: Origin")
	}
	// Same origin (the server's own) is allowed.
	r = s.do(t, "POST", "/auth/login", map[string]any{"email": email, "password": pw}, hdr("Origin", s.base))
	expect(t, r, http.StatusOK, "")
	r = s.do(t, "POST", "/auth/login", map[string]any{"email": email, "password": pw}, hdr("Sec-Fetch-Site", "same-origin"))
	expect(t, r, http.StatusOK, "")
	// Reads from a foreign origin get no CORS grant.
	r = s.do(t, "GET", "/auth/me", nil, bearer(body.Access()), hdr("Origin", "https://evil.example"))
	if got := r.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("GET from a foreign origin: Access-Control-Allow-Origin = %q", got)
	}

	// Preflights.
	for _, path := range []string{"/auth/refresh", "/auth/login", "/auth/me", "/admin/users/x"} {
		r := s.do(t, "OPTIONS", path, nil, hdr("Origin", atkAllowedOrigin),
			hdr("Access-Control-Request-Method", "POST"), hdr("Access-Control-Request-Headers", "content-type, authorization, x-csrf-token"))
		if r.Status != http.StatusNoContent && r.Status != http.StatusOK {
			t.Errorf("allowed preflight %s: %s", path, r)
		}
		if got := r.Header.Get("Access-Control-Allow-Origin"); got != atkAllowedOrigin {
			t.Errorf("allowed preflight %s: Access-Control-Allow-Origin = %q", path, got)
		}
		if got := r.Header.Get("Access-Control-Allow-Credentials"); got != "true" {
			t.Errorf("allowed preflight %s: Access-Control-Allow-Credentials = %q", path, got)
		}
		ah := strings.ToLower(r.Header.Get("Access-Control-Allow-Headers"))
		for _, h := range []string{"content-type", "authorization", "x-csrf-token"} {
			if !strings.Contains(ah, h) && ah != "*" {
				t.Errorf("allowed preflight %s: Access-Control-Allow-Headers %q lacks %s", path, ah, h)
			}
		}
		if ah == "*" || r.Header.Get("Access-Control-Allow-Methods") == "*" {
			t.Errorf("allowed preflight %s: wildcard with credentials", path)
		}
		for _, o := range foreign {
			r := s.do(t, "OPTIONS", path, nil, hdr("Origin", o),
				hdr("Access-Control-Request-Method", "POST"), hdr("Access-Control-Request-Headers", "content-type, x-csrf-token"))
			for _, h := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Allow-Headers", "Access-Control-Allow-Methods"} {
				if v := r.Header.Get(h); v != "" {
					t.Errorf("foreign preflight %s from %q: %s = %q", path, o, h, v)
				}
			}
			if r.Status >= 500 {
				t.Errorf("foreign preflight: %s", r)
			}
		}
	}
}
