package e2e

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestSignupCookieMode(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	d := s.newDevice(false)
	email := "Mixed.Case." + randHex(3) + "@Example.COM"
	r := d.do(t, "POST", "/auth/signup", map[string]any{"email": email, "password": newPassword(), "name": "Ada Lovelace"})
	if !expect(t, r, http.StatusCreated, "") {
		t.FailNow()
	}
	checkTokenResponse(t, r, false)

	// Refresh cookie attributes, checked on the raw header too.
	rc := r.Cookie(refreshCookie)
	raw := r.rawSetCookie(refreshCookie)
	if rc == nil {
		t.Fatalf("no refresh cookie: %s", r)
	}
	if rc.Path != "/auth" {
		t.Errorf("refresh cookie Path = %q, want /auth (%s)", rc.Path, raw)
	}
	if !rc.HttpOnly || !rc.Secure {
		t.Errorf("refresh cookie must be HttpOnly and Secure: %s", raw)
	}
	if rc.SameSite != http.SameSiteStrictMode {
		t.Errorf("refresh cookie must be SameSite=Strict: %s", raw)
	}
	if rc.MaxAge <= 0 || rc.MaxAge > 720*3600 {
		t.Errorf("refresh cookie Max-Age = %d, want 0 < Max-Age <= 30 days: %s", rc.MaxAge, raw)
	}
	if strings.Contains(strings.ToLower(raw), "domain=") {
		t.Errorf("refresh cookie should be host-only (no Domain): %s", raw)
	}
	if !strings.Contains(rc.Value, ".") {
		t.Errorf("refresh cookie value %q is not <id>.<secret>", abbrev(rc.Value))
	}

	// CSRF cookie attributes.
	cc := r.Cookie(csrfCookie)
	rawc := r.rawSetCookie(csrfCookie)
	if cc == nil {
		t.Fatalf("no %s cookie: %s", csrfCookie, r)
	}
	if cc.Path != "/" || !cc.Secure || cc.SameSite != http.SameSiteStrictMode {
		t.Errorf("csrf cookie must be Path=/; Secure; SameSite=Strict: %s", rawc)
	}
	if cc.HttpOnly {
		t.Errorf("csrf cookie must be readable by JavaScript (not HttpOnly): %s", rawc)
	}
	if strings.Contains(strings.ToLower(rawc), "domain=") {
		t.Errorf("__Host- cookie must not carry Domain: %s", rawc)
	}
	if cc.Value == "" || cc.Value == rc.Value {
		t.Errorf("csrf cookie value %q must be non-empty and distinct from the refresh token", cc.Value)
	}

	var tr tokenResp
	if err := json.Unmarshal(r.Body, &tr); err != nil {
		t.Fatal(err)
	}
	if tr.User.Email != email {
		t.Errorf("user.email = %q, want it stored as given %q", tr.User.Email, email)
	}
	if tr.User.Name != "Ada Lovelace" || tr.User.Role != "user" {
		t.Errorf("user = %+v, want name Ada Lovelace, role user", tr.User)
	}
	if tr.ExpiresIn < 590 || tr.ExpiresIn > 600 {
		t.Errorf("expires_in = %v, want about 600 (default 10m)", tr.ExpiresIn)
	}

	// /auth/me gives the same user.
	me := d.me(t)
	expect(t, me, http.StatusOK, "")
	u, _ := me.JSON()["user"].(map[string]any)
	checkUserObject(t, me.req, u, false)
	if u["id"] != tr.User.ID || u["email"] != email {
		t.Errorf("/auth/me user = %v, want id %s email %s", u, tr.User.ID, email)
	}

	// Name is optional and then an empty string.
	d2 := s.newDevice(false)
	r2 := d2.do(t, "POST", "/auth/signup", map[string]any{"email": newEmail(), "password": newPassword()})
	if expect(t, r2, http.StatusCreated, "") {
		u2, _ := r2.JSON()["user"].(map[string]any)
		if name, ok := u2["name"].(string); !ok || name != "" {
			t.Errorf("signup without name: user.name = %#v, want \"\"", u2["name"])
		}
	}
}

func TestSignupBodyMode(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	d := s.newDevice(true)
	r := d.do(t, "POST", "/auth/signup", d.authBody(newEmail(), newPassword(), nil))
	if !expect(t, r, http.StatusCreated, "") {
		t.FailNow()
	}
	checkTokenResponse(t, r, true)
	if d.Refresh() == "" {
		t.Fatalf("body mode: no refresh_token in %s", r)
	}
	d.refreshOK(t)
}

func TestSignupConflictsAndValidation(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	email := "Taken." + randHex(3) + "@example.com"
	s.signup(t, email, newPassword(), false)

	for _, variant := range []string{email, strings.ToUpper(email), strings.ToLower(email)} {
		r := s.do(t, "POST", "/auth/signup", map[string]any{"email": variant, "password": newPassword()})
		expect(t, r, http.StatusConflict, "email_taken")
		if c := r.Cookie(refreshCookie); c != nil {
			t.Errorf("%s: error sets a refresh cookie", r.req)
		}
	}

	for _, bad := range []string{"not-an-email", "", "a@", "@example.com", "two@@example.com", "spaces in@example.com"} {
		r := s.do(t, "POST", "/auth/signup", map[string]any{"email": bad, "password": newPassword()})
		if expect(t, r, http.StatusUnprocessableEntity, "validation_failed") {
			if f := errorFields(r); !contains(f, "email") {
				t.Errorf("%s: errors fields %v, want one for \"email\"", r.req, f)
			}
		}
	}
	// Missing fields are validation errors too.
	r := s.do(t, "POST", "/auth/signup", map[string]any{"email": newEmail()})
	expect(t, r, http.StatusUnprocessableEntity, "")

	for _, weak := range []string{"password123", "12345678", "password"} {
		r := s.do(t, "POST", "/auth/signup", map[string]any{"email": newEmail(), "password": weak})
		expect(t, r, http.StatusUnprocessableEntity, "weak_password")
	}
}

func TestPasswordLengthInCodePoints(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	runes := []rune("éñ€𝄞ß✓äöüжщшяπλΩ漢字かな")
	gen := func(n int) string {
		out := make([]rune, n)
		for i := range out {
			out[i] = runes[(i*7+i/3)%len(runes)]
		}
		return string(out)
	}
	// 8 code points, ~20 bytes: long enough.
	pw8 := "ñ€𝄞ß✓äöü"
	d := s.signup(t, newEmail(), pw8, true)
	d.another(t, true)

	// 7 code points but more than 8 bytes: too short.
	r := s.do(t, "POST", "/auth/signup", map[string]any{"email": newEmail(), "password": "ñ€𝄞ß✓äö"})
	if r.Status != http.StatusUnprocessableEntity || (r.Code() != "validation_failed" && r.Code() != "weak_password") {
		t.Errorf("%s\n\twant 422 validation_failed/weak_password for a 7-code-point password", r)
	}

	// 1024 code points (about 2.5 KB): accepted and not truncated.
	long := gen(1024)
	email := newEmail()
	s.signup(t, email, long, true)
	s.login(t, email, long, true)
	lr := []rune(long)
	for _, wrong := range []string{string(lr[:72]), string(lr[:1023]), string(lr[:1023]) + "x", strings.ToUpper(long)} {
		r := s.do(t, "POST", "/auth/login", map[string]any{"email": email, "password": wrong})
		expect(t, r, http.StatusUnauthorized, "invalid_credentials")
	}
	// Byte-truncation to 72 (bcrypt) must not make a prefix sufficient.
	b72 := newPassword() + strings.Repeat("x", 80)
	e2 := newEmail()
	s.signup(t, e2, b72, true)
	r = s.do(t, "POST", "/auth/login", map[string]any{"email": e2, "password": b72[:72]})
	expect(t, r, http.StatusUnauthorized, "invalid_credentials")

	// Case is significant.
	pw := "CaseSensitive-" + randHex(4)
	e3 := newEmail()
	s.signup(t, e3, pw, true)
	r = s.do(t, "POST", "/auth/login", map[string]any{"email": e3, "password": strings.ToLower(pw)})
	expect(t, r, http.StatusUnauthorized, "invalid_credentials")

	// 1025 code points: too long.
	r = s.do(t, "POST", "/auth/signup", map[string]any{"email": newEmail(), "password": gen(1025)})
	if r.Status != http.StatusUnprocessableEntity || (r.Code() != "validation_failed" && r.Code() != "weak_password") {
		t.Errorf("%s\n\twant 422 validation_failed/weak_password for a 1025-code-point password", r)
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	_, admin := s.makeAdmin(t)

	email := "Login.Case." + randHex(3) + "@Example.com"
	pw := newPassword()
	first := s.signup(t, email, pw, false)

	// Login with different case of the email; each login is a new session.
	d := s.login(t, strings.ToUpper(email), pw, false)
	if d.sid == first.sid {
		t.Errorf("login reused the signup session %s", d.sid)
	}
	if d.user.Email != email || d.user.ID != first.user.ID {
		t.Errorf("login user = %+v, want id %s email as stored %q", d.user, first.user.ID, email)
	}
	lower := s.login(t, strings.ToLower(email), pw, true)
	if lower.sid == d.sid {
		t.Errorf("two logins share session %s", d.sid)
	}

	// Failures look identical.
	unknown := s.do(t, "POST", "/auth/login", map[string]any{"email": newEmail(), "password": pw})
	wrong := s.do(t, "POST", "/auth/login", map[string]any{"email": email, "password": pw + "x"})
	expect(t, unknown, http.StatusUnauthorized, "invalid_credentials")
	expect(t, wrong, http.StatusUnauthorized, "invalid_credentials")

	// Disable a second account, then try it with its correct password.
	victim := s.newUser(t, true)
	pr := admin.srv.do(t, "PATCH", "/admin/users/"+victim.user.ID, map[string]any{"disabled": true}, bearer(admin.Access()))
	expect(t, pr, http.StatusOK, "")
	disabled := s.do(t, "POST", "/auth/login", map[string]any{"email": victim.email, "password": victim.password})
	expect(t, disabled, http.StatusUnauthorized, "invalid_credentials")

	var bu, bw, bd map[string]any
	json.Unmarshal(unknown.Body, &bu)
	json.Unmarshal(wrong.Body, &bw)
	json.Unmarshal(disabled.Body, &bd)
	if !reflect.DeepEqual(bu, bw) || !reflect.DeepEqual(bu, bd) {
		t.Errorf("login failure bodies differ:\n\tunknown email:  %s\n\twrong password: %s\n\tdisabled:       %s", unknown.Body, wrong.Body, disabled.Body)
	}
	for _, r := range []*resp{unknown, wrong, disabled} {
		if len(r.SetCookies) != 0 {
			t.Errorf("%s: failed login sets cookies %v", r.req, r.Header.Values("Set-Cookie"))
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
