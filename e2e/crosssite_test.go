package e2e

import (
	"net/http"
	"testing"
)

// An app on a sibling subdomain (https://app.example.com beside the auth
// server on auth.example.com) cannot read the auth host's
// __Host-csrf_token cookie. The tests below prove what such an app needs:
// the CSRF token in the body of cookie-mode token responses, and
// GET /auth/csrf to learn it again after a reload, readable by allowed
// origins only.

const crossSiteOrigin = "https://app.example.com"

// TestCrossSiteCSRFTokenInBody: cookie-mode login, signup and refresh
// answer with csrf_token equal to the __Host-csrf_token cookie they set
// (the same value for the whole session); body mode carries none; the
// value from the body alone is what a cross-origin page sends, and it works
// for refresh and logout.
func TestCrossSiteCSRFTokenInBody(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--allowed-origins", crossSiteOrigin)
	fromApp := hdr("Origin", crossSiteOrigin)

	d := s.newDevice(false)
	d.email, d.password = newEmail(), newPassword()
	r := d.do(t, "POST", "/auth/signup", d.authBody(d.email, d.password, nil), fromApp)
	expect(t, r, http.StatusCreated, "")
	first := bodyCSRF(t, r)
	if c := r.Cookie(csrfCookie); c == nil || c.Value != first {
		t.Fatalf("signup: csrf_token %q does not equal the %s cookie (%q)", first, csrfCookie, r.rawSetCookie(csrfCookie))
	}

	l := s.newDevice(false)
	l.email, l.password = d.email, d.password
	r = l.do(t, "POST", "/auth/login", l.authBody(l.email, l.password, nil), fromApp)
	expect(t, r, http.StatusOK, "")
	csrf := bodyCSRF(t, r)
	if c := r.Cookie(csrfCookie); c == nil || c.Value != csrf {
		t.Fatalf("login: csrf_token %q does not equal the %s cookie", csrf, csrfCookie)
	}
	if csrf == first {
		t.Errorf("two sessions share one CSRF token")
	}

	// Refresh with the header taken from the body (as the app does): 200,
	// the same token again, bound to the session.
	r = l.do(t, "POST", "/auth/refresh", nil, fromApp, hdr("X-CSRF-Token", csrf))
	expect(t, r, http.StatusOK, "")
	if got := bodyCSRF(t, r); got != csrf {
		t.Errorf("refresh: csrf_token changed within a session: %q -> %q", csrf, got)
	}
	if got := r.Header.Get("Access-Control-Allow-Origin"); got != crossSiteOrigin {
		t.Errorf("refresh from the app: Access-Control-Allow-Origin = %q", got)
	}

	// Body mode has no cookie to protect and gets no csrf_token.
	r = s.do(t, "POST", "/auth/login", map[string]any{"email": d.email, "password": d.password, "token_transport": "body"})
	expect(t, r, http.StatusOK, "")
	if _, has := r.JSON()["csrf_token"]; has {
		t.Errorf("body-mode login carries csrf_token: %s", r)
	}

	// Logout with only the refresh cookie and the body's CSRF token: 204.
	r = l.do(t, "POST", "/auth/logout", nil, fromApp, hdr("X-CSRF-Token", csrf))
	expect(t, r, http.StatusNoContent, "")
	r = l.presentRefresh(t, l.Refresh())
	expect(t, r, http.StatusUnauthorized, "invalid_refresh_token")
}

// TestCrossSiteCSRFEndpoint: GET /auth/csrf gives an allowed origin (and
// the auth server's own pages) the CSRF token of the browser's session,
// never caches, refuses foreign origins and same-site or cross-site
// contexts, and answers null without a session or with a cookie pair that
// does not belong together.
func TestCrossSiteCSRFEndpoint(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--allowed-origins", crossSiteOrigin)
	d := s.newUser(t, false)
	other := s.newUser(t, false)
	csrf := d.cookie(csrfCookie)
	if csrf == "" {
		t.Fatal("no CSRF cookie after signup")
	}

	get := func(opts ...reqOpt) *resp {
		t.Helper()
		return d.do(t, "GET", "/auth/csrf", nil, opts...)
	}
	checkAnswer := func(what string, r *resp, want any) {
		t.Helper()
		if !expect(t, r, http.StatusOK, "") {
			return
		}
		m := r.JSON()
		got, has := m["csrf_token"]
		if !has || got != want || len(m) != 1 {
			t.Errorf("%s: body %s, want {\"csrf_token\":%v}", what, r.Body, want)
		}
		if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("%s: Cache-Control = %q, want no-store", what, cc)
		}
		if len(r.SetCookies) != 0 {
			t.Errorf("%s: sets cookies: %v", what, r.Header.Values("Set-Cookie"))
		}
	}

	// The allowed origin: the token, readable by that origin (credentialed CORS).
	r := get(hdr("Origin", crossSiteOrigin), hdr("Sec-Fetch-Site", "same-site"))
	checkAnswer("allowed origin", r, csrf)
	if got := r.Header.Get("Access-Control-Allow-Origin"); got != crossSiteOrigin {
		t.Errorf("allowed origin: Access-Control-Allow-Origin = %q", got)
	}
	if got := r.Header.Get("Access-Control-Allow-Credentials"); got != "true" {
		t.Errorf("allowed origin: Access-Control-Allow-Credentials = %q", got)
	}
	// The server's own pages and non-browser clients (who send the cookie
	// themselves, so learn nothing new).
	checkAnswer("same origin", get(hdr("Sec-Fetch-Site", "same-origin")), csrf)
	checkAnswer("no browser headers", get(), csrf)
	// What the endpoint answers works for a refresh.
	r = d.do(t, "POST", "/auth/refresh", nil, hdr("Origin", crossSiteOrigin), hdr("X-CSRF-Token", csrf))
	expect(t, r, http.StatusOK, "")

	// Foreign origins and same-site/cross-site contexts without Origin (a
	// sibling subdomain's <script> or <img>) are refused, with no CORS grant.
	for _, o := range []string{"https://evil.example.com", "null", "http://app.example.com", "https://app.example.com:8443", "https://sub.app.example.com"} {
		r := get(hdr("Origin", o), hdr("Sec-Fetch-Site", "same-site"))
		if !expect(t, r, http.StatusForbidden, "csrf_failed") {
			t.Errorf("  ^ Origin %q", o)
		}
		if acao := r.Header.Get("Access-Control-Allow-Origin"); acao != "" {
			t.Errorf("Origin %q: Access-Control-Allow-Origin = %q", o, acao)
		}
	}
	for _, sfs := range []string{"same-site", "cross-site"} {
		r := get(hdr("Sec-Fetch-Site", sfs))
		if !expect(t, r, http.StatusForbidden, "csrf_failed") {
			t.Errorf("  ^ Sec-Fetch-Site %q without Origin", sfs)
		}
	}

	// Without a session: null, not an error (an anonymous visit logs no 4xx).
	checkAnswer("no cookies", s.do(t, "GET", "/auth/csrf", nil, hdr("Origin", crossSiteOrigin)), nil)
	// A CSRF cookie without a refresh cookie, or with another session's
	// refresh cookie, or a planted value: null.
	ownPair := func(rt, c string) reqOpt { return hdr("Cookie", refreshCookie+"="+rt+"; "+csrfCookie+"="+c) }
	for name, opt := range map[string]reqOpt{
		"csrf cookie only":               hdr("Cookie", csrfCookie+"="+csrf),
		"another session's refresh":      ownPair(other.Refresh(), csrf),
		"planted csrf cookie":            ownPair(d.Refresh(), "attacker"),
		"refresh cookie without csrf":    hdr("Cookie", refreshCookie+"="+d.Refresh()),
		"refresh cookie not a token":     ownPair("garbage", csrf),
		"csrf cookie of another session": ownPair(d.Refresh(), other.cookie(csrfCookie)),
	} {
		checkAnswer(name, s.do(t, "GET", "/auth/csrf", nil, hdr("Origin", crossSiteOrigin), opt), nil)
	}
	// Of several refresh cookies (one planted by a sibling), the one bound
	// to the CSRF cookie counts.
	r = s.do(t, "GET", "/auth/csrf", nil, hdr("Origin", crossSiteOrigin),
		hdr("Cookie", refreshCookie+"="+other.Refresh()+"; "+refreshCookie+"="+d.Refresh()+"; "+csrfCookie+"="+csrf))
	checkAnswer("two refresh cookies", r, csrf)

	// State-changing methods are not served here.
	r = d.do(t, "POST", "/auth/csrf", nil, hdr("Origin", crossSiteOrigin))
	expect(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
	d.assertAlive(t, "session after /auth/csrf requests")
}

// bodyCSRF is the csrf_token member of a cookie-mode token response.
func bodyCSRF(t *testing.T, r *resp) string {
	t.Helper()
	v, _ := r.JSON()["csrf_token"].(string)
	if v == "" {
		t.Fatalf("%s: cookie-mode token response without csrf_token", r)
	}
	return v
}
