package e2e

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

func TestRequestBodyRules(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	_, admin := s.makeAdmin(t)
	victim := s.newUser(t, true)
	email, pw := newEmail(), newPassword()
	valid := fmt.Sprintf(`{"email":%q,"password":%q}`, email, pw)

	// 415: wrong or missing Content-Type with a body.
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "", "application/jsonx"} {
		r := s.do(t, "POST", "/auth/signup", rawBody(valid), hdr("Content-Type", ct))
		expect(t, r, http.StatusUnsupportedMediaType, "unsupported_media_type")
	}
	r := s.do(t, "POST", "/auth/login", rawBody(valid), hdr("Content-Type", "text/plain"))
	expect(t, r, http.StatusUnsupportedMediaType, "unsupported_media_type")

	// 413: more than 64 KiB.
	big := fmt.Sprintf(`{"email":%q,"password":%q}`, newEmail(), strings.Repeat("x", 70000))
	r = s.do(t, "POST", "/auth/signup", rawBody(big))
	expect(t, r, http.StatusRequestEntityTooLarge, "payload_too_large")
	r = s.do(t, "POST", "/auth/login", rawBody(big))
	expect(t, r, http.StatusRequestEntityTooLarge, "payload_too_large")
	// Just under 64 KiB is read and judged on its content (too long a password).
	under := fmt.Sprintf(`{"email":%q,"password":%q}`, newEmail(), strings.Repeat("x", 60000))
	r = s.do(t, "POST", "/auth/signup", rawBody(under))
	expect(t, r, http.StatusUnprocessableEntity, "")

	// 400: not exactly one JSON object with known, unique, exactly-cased keys.
	badBodies := map[string]string{
		"duplicate key":        fmt.Sprintf(`{"email":%q,"email":%q,"password":%q}`, newEmail(), newEmail(), pw),
		"duplicate password":   fmt.Sprintf(`{"email":%q,"password":%q,"password":%q}`, newEmail(), pw, pw+"1"),
		"case-variant key":     fmt.Sprintf(`{"Email":%q,"password":%q}`, newEmail(), pw),
		"case-variant key 2":   fmt.Sprintf(`{"email":%q,"PASSWORD":%q}`, newEmail(), pw),
		"unknown key":          fmt.Sprintf(`{"email":%q,"password":%q,"admin":true}`, newEmail(), pw),
		"role smuggling":       fmt.Sprintf(`{"email":%q,"password":%q,"role":"admin"}`, newEmail(), pw),
		"trailing data":        fmt.Sprintf(`{"email":%q,"password":%q} {}`, newEmail(), pw),
		"trailing garbage":     fmt.Sprintf(`{"email":%q,"password":%q}x`, newEmail(), pw),
		"array":                `[]`,
		"null":                 `null`,
		"string":               `"hello"`,
		"not JSON":             `email=a@b.c`,
		"truncated":            `{"email":`,
		"empty body":           ``,
		"wrong type":           fmt.Sprintf(`{"email":%q,"password":12345678}`, newEmail()),
		"duplicate via escape": fmt.Sprintf(`{"email":%q,"\u0065mail":%q,"password":%q}`, newEmail(), newEmail(), pw),
	}
	for name, b := range badBodies {
		r := s.do(t, "POST", "/auth/signup", rawBody(b))
		if name == "wrong type" || name == "empty body" {
			if r.Status != http.StatusBadRequest && r.Status != http.StatusUnprocessableEntity {
				t.Errorf("case %q: %s\n\twant 400 (or 422)", name, r)
			}
			continue
		}
		if !expect(t, r, http.StatusBadRequest, "bad_request") {
			t.Errorf("case %q", name)
		}
	}
	// Invalid UTF-8, anywhere.
	for name, b := range map[string][]byte{
		"in email":    []byte("{\"email\":\"a\xffb@example.com\",\"password\":\"" + pw + "\"}"),
		"in password": []byte("{\"email\":\"" + newEmail() + "\",\"password\":\"abc\xff\xfedefgh1\"}"),
		"in key":      []byte("{\"email\":\"" + newEmail() + "\",\"pass\xffword\":\"" + pw + "\"}"),
		"overlong":    []byte("{\"email\":\"" + newEmail() + "\",\"password\":\"\xc0\xafabcdefgh\"}"),
		"surrogate":   []byte("{\"email\":\"" + newEmail() + "\",\"password\":\"\xed\xa0\x80abcdefgh\"}"),
	} {
		r := s.do(t, "POST", "/auth/signup", rawBody(b))
		if r.Status != http.StatusBadRequest && r.Status != http.StatusUnprocessableEntity {
			t.Errorf("invalid UTF-8 %s: %s\n\twant 400 or 422", name, r)
		}
	}
	// The same strictness on other endpoints.
	r = s.do(t, "POST", "/auth/login", rawBody(fmt.Sprintf(`{"email":%q,"password":%q,"password":%q}`, victim.email, "wrong-"+randHex(3), victim.password)))
	expect(t, r, http.StatusBadRequest, "bad_request")
	r = s.do(t, "POST", "/auth/login", rawBody(fmt.Sprintf(`{"Email":%q,"password":%q}`, victim.email, victim.password)))
	expect(t, r, http.StatusBadRequest, "bad_request")
	r = s.do(t, "POST", "/auth/refresh", rawBody(fmt.Sprintf(`{"refresh_token":%q,"extra":1}`, victim.Refresh())))
	expect(t, r, http.StatusBadRequest, "bad_request")
	r = s.do(t, "PATCH", "/admin/users/"+victim.user.ID, rawBody(`{"role":"user","role":"admin"}`), bearer(admin.Access()))
	expect(t, r, http.StatusBadRequest, "bad_request")
	r = s.do(t, "PATCH", "/admin/users/"+victim.user.ID, rawBody(`{"Role":"admin"}`), bearer(admin.Access()))
	expect(t, r, http.StatusBadRequest, "bad_request")
	r = s.do(t, "POST", "/auth/password", rawBody(fmt.Sprintf(`{"current_password":%q,"new_password":%q,"x":1}`, victim.password, newPassword())), bearer(victim.Access()))
	expect(t, r, http.StatusBadRequest, "bad_request")
	// None of those changed anything.
	victim.assertAlive(t, "victim after rejected bodies")
	if victim.user.Role != "user" {
		t.Errorf("a rejected PATCH changed the role: %+v", victim.user)
	}
	s.login(t, victim.email, victim.password, true)
	// No account was created by any rejected signup.
	r = s.do(t, "POST", "/auth/signup", map[string]any{"email": email, "password": pw})
	expect(t, r, http.StatusCreated, "")
	// application/json with a charset parameter is JSON.
	r = s.do(t, "POST", "/auth/login", map[string]any{"email": email, "password": pw}, hdr("Content-Type", "application/json; charset=utf-8"))
	expect(t, r, http.StatusOK, "")
}

func TestMethodsAndRoutes(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	for _, c := range []struct{ method, path string }{
		{"GET", "/auth/login"},
		{"GET", "/auth/signup"},
		{"PUT", "/auth/signup"},
		{"GET", "/auth/refresh"},
		{"GET", "/auth/logout"},
		{"DELETE", "/auth/me"},
		{"POST", "/auth/me"},
		{"GET", "/auth/password"},
		{"POST", "/.well-known/jwks.json"},
		{"PUT", "/admin/users"},
		{"GET", "/admin/users/x/logout"},
		{"GET", "/admin/sessions/x"},
	} {
		r := s.do(t, c.method, c.path, nil)
		if expect(t, r, http.StatusMethodNotAllowed, "method_not_allowed") && r.Header.Get("Allow") == "" {
			t.Errorf("%s: 405 without an Allow header", r.req)
		}
	}
	r := s.do(t, "GET", "/no/such/path", nil)
	expect(t, r, http.StatusNotFound, "not_found")

	expect(t, s.do(t, "GET", "/healthz", nil), http.StatusOK, "")
	expect(t, s.do(t, "GET", "/readyz", nil), http.StatusOK, "")
	r = s.do(t, "GET", "/metrics", nil)
	if expect(t, r, http.StatusOK, "") {
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
			t.Errorf("/metrics Content-Type = %q, want text/plain; version=0.0.4...", ct)
		}
		if !strings.Contains(string(r.Body), "# TYPE ") {
			t.Errorf("/metrics body is not Prometheus text: %.200s", r.Body)
		}
	}
}

func TestNoBodyPosts(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	_, admin := s.makeAdmin(t)
	d := s.newUser(t, false)
	// Cookie-mode refresh and logout without body or Content-Type.
	r := d.do(t, "POST", "/auth/refresh", nil, d.csrf())
	expect(t, r, http.StatusOK, "")
	r = d.do(t, "POST", "/auth/refresh", rawBody("{}"), d.csrf())
	expect(t, r, http.StatusOK, "")
	// A present body must be JSON.
	r = d.do(t, "POST", "/auth/refresh", rawBody("x"), d.csrf(), hdr("Content-Type", "text/plain"))
	expect(t, r, http.StatusUnsupportedMediaType, "unsupported_media_type")
	r = d.do(t, "POST", "/auth/logout", rawBody("{}"), d.csrf())
	expect(t, r, http.StatusNoContent, "")
	// Admin logout without body.
	u := s.newUser(t, true)
	r = s.do(t, "POST", "/admin/users/"+u.user.ID+"/logout", nil, bearer(admin.Access()))
	expect(t, r, http.StatusNoContent, "")
	r = s.do(t, "POST", "/admin/users/"+u.user.ID+"/logout", rawBody("{}"), bearer(admin.Access()))
	expect(t, r, http.StatusNoContent, "")
}

func TestCORSAndCrossOrigin(t *testing.T) {
	t.Parallel()
	const allowed = "http://app.example"
	s := startServer(t, "--allowed-origins", allowed+",https://other.example")

	// Preflight from an allowed origin.
	r := s.do(t, "OPTIONS", "/auth/login", nil,
		hdr("Origin", allowed),
		hdr("Access-Control-Request-Method", "POST"),
		hdr("Access-Control-Request-Headers", "content-type,authorization,x-csrf-token"))
	if r.Status != http.StatusOK && r.Status != http.StatusNoContent {
		t.Errorf("%s\n\twant 200 or 204 for an allowed preflight", r)
	}
	if got := r.Header.Get("Access-Control-Allow-Origin"); got != allowed {
		t.Errorf("preflight ACAO = %q, want %q", got, allowed)
	}
	if got := r.Header.Get("Access-Control-Allow-Credentials"); got != "true" {
		t.Errorf("preflight Access-Control-Allow-Credentials = %q, want true", got)
	}
	acah := strings.ToLower(strings.Join(r.Header.Values("Access-Control-Allow-Headers"), ","))
	for _, h := range []string{"content-type", "authorization", "x-csrf-token"} {
		if !strings.Contains(acah, h) {
			t.Errorf("preflight Access-Control-Allow-Headers %q lacks %s", acah, h)
		}
	}
	if strings.Contains(acah, "*") {
		t.Errorf("preflight allows headers %q (wildcard with credentials)", acah)
	}
	acam := strings.ToUpper(strings.Join(r.Header.Values("Access-Control-Allow-Methods"), ","))
	if !strings.Contains(acam, "POST") {
		t.Errorf("preflight Access-Control-Allow-Methods %q lacks POST", acam)
	}
	if !strings.Contains(strings.ToLower(strings.Join(r.Header.Values("Vary"), ",")), "origin") {
		t.Errorf("preflight response lacks Vary: Origin")
	}

	// Preflight from a foreign origin: no CORS grant.
	r = s.do(t, "OPTIONS", "/auth/login", nil,
		hdr("Origin", "https://evil.example"),
		hdr("Access-Control-Request-Method", "POST"),
		hdr("Access-Control-Request-Headers", "content-type"))
	if got := r.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("foreign preflight got ACAO %q", got)
	}
	if got := r.Header.Get("Access-Control-Allow-Credentials"); got == "true" {
		t.Errorf("foreign preflight got Access-Control-Allow-Credentials true")
	}

	// Actual requests.
	email, pw := newEmail(), newPassword()
	r = s.do(t, "POST", "/auth/signup", map[string]any{"email": email, "password": pw}, hdr("Origin", "https://evil.example"))
	expect(t, r, http.StatusForbidden, "csrf_failed")
	if got := r.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("foreign POST got ACAO %q", got)
	}
	r = s.do(t, "POST", "/auth/signup", map[string]any{"email": email, "password": pw}, hdr("Origin", "null"))
	expect(t, r, http.StatusForbidden, "csrf_failed")
	r = s.do(t, "POST", "/auth/signup", map[string]any{"email": email, "password": pw}, hdr("Sec-Fetch-Site", "cross-site"))
	expect(t, r, http.StatusForbidden, "csrf_failed")
	r = s.do(t, "POST", "/auth/signup", map[string]any{"email": email, "password": pw}, hdr("Sec-Fetch-Site", "same-site"), hdr("Origin", "http://sub.app.example"))
	expect(t, r, http.StatusForbidden, "csrf_failed")
	// None of those created the account.
	d := s.signup(t, email, pw, true)

	// Allowed origin: works, with CORS headers.
	r = s.do(t, "POST", "/auth/login", map[string]any{"email": email, "password": pw},
		hdr("Origin", allowed), hdr("Sec-Fetch-Site", "cross-site"))
	if expect(t, r, http.StatusOK, "") {
		if got := r.Header.Get("Access-Control-Allow-Origin"); got != allowed {
			t.Errorf("allowed POST: ACAO = %q, want %q", got, allowed)
		}
		if got := r.Header.Get("Access-Control-Allow-Credentials"); got != "true" {
			t.Errorf("allowed POST: Access-Control-Allow-Credentials = %q", got)
		}
	}
	// Same origin and Sec-Fetch-Site same-origin/none are fine.
	r = s.do(t, "POST", "/auth/login", map[string]any{"email": email, "password": pw}, hdr("Origin", s.base), hdr("Sec-Fetch-Site", "same-origin"))
	expect(t, r, http.StatusOK, "")
	r = s.do(t, "POST", "/auth/login", map[string]any{"email": email, "password": pw}, hdr("Sec-Fetch-Site", "same-origin"))
	expect(t, r, http.StatusOK, "")
	r = s.do(t, "POST", "/auth/login", map[string]any{"email": email, "password": pw}, hdr("Sec-Fetch-Site", "none"))
	expect(t, r, http.StatusOK, "")

	// Every state-changing endpoint refuses foreign origins; GETs still work.
	other := d.another(t, true)
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/auth/refresh", map[string]any{"refresh_token": d.Refresh()}},
		{"POST", "/auth/logout", nil},
		{"DELETE", "/auth/sessions/" + other.sid, nil},
		{"POST", "/auth/password", map[string]any{"current_password": pw, "new_password": newPassword()}},
		{"POST", "/auth/login", map[string]any{"email": email, "password": pw}},
	} {
		for _, evil := range []reqOpt{hdr("Origin", "https://evil.example"), hdr("Sec-Fetch-Site", "cross-site")} {
			r := s.do(t, c.method, c.path, c.body, bearer(d.Access()), evil)
			expect(t, r, http.StatusForbidden, "csrf_failed")
		}
	}
	d.assertAlive(t, "session after refused cross-origin requests")
	other.assertAlive(t, "other session after refused cross-origin DELETE")
	r = s.do(t, "GET", "/auth/me", nil, bearer(d.Access()), hdr("Origin", allowed))
	if expect(t, r, http.StatusOK, "") && r.Header.Get("Access-Control-Allow-Origin") != allowed {
		t.Errorf("GET from allowed origin: ACAO = %q", r.Header.Get("Access-Control-Allow-Origin"))
	}
	r = s.do(t, "GET", "/.well-known/jwks.json", nil, hdr("Origin", "https://evil.example"))
	expect(t, r, http.StatusOK, "")
	if r.Header.Get("Access-Control-Allow-Origin") == "*" && r.Header.Get("Access-Control-Allow-Credentials") == "true" {
		t.Errorf("ACAO * with credentials")
	}
}

func TestAccountPage(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	r := s.do(t, "GET", "/account", nil)
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("/account Content-Type = %q, want text/html", ct)
	}
	csp := r.Header.Get("Content-Security-Policy")
	if csp == "" {
		t.Fatalf("/account has no Content-Security-Policy")
	}
	for _, bad := range []string{"'unsafe-inline'", "'unsafe-eval'", "*"} {
		if strings.Contains(scriptSrc(csp), bad) {
			t.Errorf("/account CSP script policy allows %s: %q", bad, csp)
		}
	}
	if scriptSrc(csp) == "" {
		t.Errorf("/account CSP has neither script-src nor default-src: %q", csp)
	}
	html := string(r.Body)
	scriptTag := regexp.MustCompile(`(?is)<script\b([^>]*)>(.*?)</script>`)
	var srcs []string
	for _, m := range scriptTag.FindAllStringSubmatch(html, -1) {
		if strings.TrimSpace(m[2]) != "" {
			t.Errorf("/account has an inline script: %.120s", m[0])
		}
		if src := regexp.MustCompile(`(?i)src\s*=\s*["']([^"']+)["']`).FindStringSubmatch(m[1]); src != nil {
			srcs = append(srcs, src[1])
		}
	}
	if regexp.MustCompile(`(?i)\son[a-z]+\s*=`).MatchString(html) {
		t.Errorf("/account has inline event handlers")
	}
	all := html
	for _, src := range srcs {
		if !strings.HasPrefix(src, "/") {
			continue
		}
		jr := s.do(t, "GET", src, nil)
		if expect(t, jr, http.StatusOK, "") {
			all += string(jr.Body)
		}
	}
	for _, bad := range []string{"localStorage", "indexedDB"} {
		if strings.Contains(all, bad) {
			t.Errorf("/account code uses %s (tokens must never be in web storage)", bad)
		}
	}
	// sessionStorage holds one thing: the id of an app's pending sign-in
	// request (which grants nothing without the user's access token), under
	// its one key; three uses (get, set, remove), nothing else.
	if n := strings.Count(all, "sessionStorage"); n > 0 {
		if n > 3 || !strings.Contains(all, `"gatehouse.oauth_request"`) {
			t.Errorf("/account code uses sessionStorage %d times, beyond the pending OAuth request id (tokens must never be in web storage)", n)
		}
		for _, m := range regexp.MustCompile(`sessionStorage\.([a-zA-Z]+)\(`).FindAllStringSubmatch(all, -1) {
			if m[1] != "getItem" && m[1] != "setItem" && m[1] != "removeItem" {
				t.Errorf("/account code calls sessionStorage.%s", m[1])
			}
		}
	}
}

// scriptSrc returns the script-src directive, or default-src without one.
func scriptSrc(csp string) string {
	var def string
	for _, d := range strings.Split(csp, ";") {
		d = strings.TrimSpace(d)
		if strings.HasPrefix(d, "script-src ") || d == "script-src" {
			return d
		}
		if strings.HasPrefix(d, "default-src") {
			def = d
		}
	}
	return def
}
