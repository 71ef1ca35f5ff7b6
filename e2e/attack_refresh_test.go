package e2e

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// atkRefreshBody presents a refresh token in body mode without the harness
// (safe from goroutines). It returns status, problem code and the new
// refresh and access tokens on success.
func atkRefreshBody(s *server, tok string) (status int, code, refresh, access string, err error) {
	body, _ := json.Marshal(map[string]any{"refresh_token": tok})
	st, _, b, err := atkRaw(s, "POST", "/auth/refresh", body, nil)
	if err != nil {
		return 0, "", "", "", err
	}
	var m struct {
		Code         string `json:"code"`
		RefreshToken string `json:"refresh_token"`
		AccessToken  string `json:"access_token"`
	}
	_ = json.Unmarshal(b, &m)
	return st, m.Code, m.RefreshToken, m.AccessToken, nil
}

// atkForgedRefresh derives malformed, tampered and foreign variants of a
// genuine refresh token.
func atkForgedRefresh(t *testing.T, tok, otherSID string) map[string]string {
	t.Helper()
	sid, secret := splitRefresh(t, tok)
	raw, err := base64.RawURLEncoding.DecodeString(secret)
	if err != nil {
		t.Fatalf("refresh secret is not base64url: %v", err)
	}
	flip := func(i int) string {
		b := []byte(secret)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return sid + "." + string(b)
	}
	out := map[string]string{
		"truncated by one":       tok[:len(tok)-1],
		"truncated to half":      tok[:len(sid)+1+len(secret)/2],
		"sid only":               sid,
		"sid and dot":            sid + ".",
		"secret only":            secret,
		"dot and secret":         "." + secret,
		"first secret char":      flip(0),
		"last secret char":       flip(len(secret) - 1),
		"middle secret char":     flip(len(secret) / 2),
		"extra char":             tok + "A",
		"extra segment":          tok + "." + secret,
		"other session's sid":    otherSID + "." + secret,
		"unknown sid":            "AAAAAAAAAAAAAAAAAAAAAA." + secret,
		"sid case flipped":       strings.ToUpper(sid) + "." + secret,
		"padded secret":          tok + "==",
		"std base64 alphabet":    sid + "." + base64.RawStdEncoding.EncodeToString(raw),
		"whitespace":             " " + tok,
		"trailing newline":       tok + "\n",
		"NUL inside":             sid + "\x00." + secret,
		"empty":                  "",
		"garbage":                "garbage",
		"emoji":                  "💥.💥",
		"SQL":                    "' OR 1=1 --." + secret,
		"path":                   "../../etc/passwd." + secret,
		"huge 60KB":              strings.Repeat("A", 60<<10),
		"huge sid":               strings.Repeat("A", 4000) + "." + secret,
		"lots of dots":           strings.Repeat(".", 1000),
		"zero secret":            sid + "." + base64.RawURLEncoding.EncodeToString(make([]byte, len(raw))),
		"access-token-like JWT":  "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
		"unicode look-alike sid": strings.Replace(sid, string(sid[0]), "\u0410", 1) + "." + secret,
	}
	// A genuine-looking generation bump with the old MAC: the MAC binds
	// the generation, so this is a forgery, not a future token.
	if len(raw) >= 8 {
		b := append([]byte(nil), raw...)
		binary.BigEndian.PutUint64(b[:8], binary.BigEndian.Uint64(b[:8])+1)
		out["generation bumped"] = sid + "." + base64.RawURLEncoding.EncodeToString(b)
		binary.BigEndian.PutUint64(b[:8], 0)
		out["generation zero"] = sid + "." + base64.RawURLEncoding.EncodeToString(b)
		binary.BigEndian.PutUint64(b[:8], ^uint64(0))
		out["generation max"] = sid + "." + base64.RawURLEncoding.EncodeToString(b)
	}
	for k, v := range out {
		if v == tok {
			delete(out, k) // e.g. a secret with no '-' or '_' reads the same in both alphabets
		}
	}
	return out
}

// TestAttackRefreshForgeries presents tampered, truncated, unknown,
// garbage and huge refresh tokens, by body and by cookie, to refresh and to
// logout: each is 401 invalid_refresh_token (never 5xx, never success) and
// none revokes or rotates the victim's session.
func TestAttackRefreshForgeries(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	victim := s.newUser(t, true)
	cookieVictim := victim.another(t, false)
	other := s.newUser(t, true)
	tok := victim.Refresh()
	forged := atkForgedRefresh(t, tok, other.sid)

	for name, f := range forged {
		r := s.refreshWith(t, f)
		if !expect(t, r, http.StatusUnauthorized, "invalid_refresh_token") {
			t.Errorf("  ^ body-mode forgery %q", name)
		}
		// Logout with a forged token must not end the session it names.
		r = s.do(t, "POST", "/auth/logout", map[string]any{"refresh_token": f})
		if r.Status != http.StatusUnauthorized {
			t.Errorf("logout with forgery %q: %s, want 401", name, r)
		}
		// Cookie mode, with the victim's real CSRF pair (the attacker can
		// read neither, but this isolates the token check). Cookie values
		// with characters a cookie cannot carry are skipped.
		if f == "" || strings.ContainsAny(f, " \n\x00\";,\\") || len(f) > 8<<10 || !isASCII(f) {
			continue
		}
		csrf := cookieVictim.cookie(csrfCookie)
		r = s.do(t, "POST", "/auth/refresh", nil,
			hdr("Cookie", refreshCookie+"="+f+"; "+csrfCookie+"="+csrf), hdr("X-CSRF-Token", csrf))
		// A forged cookie naming another session fails CSRF binding (403)
		// or the token check (401): either way nothing happens.
		if r.Status != http.StatusUnauthorized && !(r.Status == http.StatusForbidden && r.Code() == "csrf_failed") {
			t.Errorf("cookie-mode forgery %q: %s, want 401 or 403 csrf_failed", name, r)
		} else if r.Status == http.StatusUnauthorized && r.Code() != "invalid_refresh_token" {
			t.Errorf("cookie-mode forgery %q: code %q, want invalid_refresh_token", name, r.Code())
		}
	}
	// Wrong JSON types for refresh_token.
	for _, body := range []string{`{"refresh_token":1}`, `{"refresh_token":["` + tok + `"]}`, `{"refresh_token":{"t":"x"}}`, `{"refresh_token":true}`} {
		r := s.do(t, "POST", "/auth/refresh", rawBody(body))
		expectStatusIn(t, r, http.StatusBadRequest, http.StatusUnprocessableEntity)
	}

	// Nothing was revoked or rotated: the victim's current token (not a
	// grace replay) refreshes and its access token still works.
	if victim.Refresh() != tok {
		t.Fatal("test bug: the victim's token changed")
	}
	victim.assertAlive(t, "after forgeries against the body-mode session")
	cookieVictim.assertAlive(t, "after forgeries against the cookie-mode session")
	other.assertAlive(t, "after forgeries naming this session's id")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// TestAttackRefreshExpired: a genuine token past its idle lifetime is 401
// invalid_refresh_token.
func TestAttackRefreshExpired(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--refresh-idle-ttl", "1s")
	d := s.newUser(t, true)
	tok := d.Refresh()
	time.Sleep(1500 * time.Millisecond)
	r := s.refreshWith(t, tok)
	expect(t, r, http.StatusUnauthorized, "invalid_refresh_token")
	r = s.refreshWith(t, tok)
	expect(t, r, http.StatusUnauthorized, "invalid_refresh_token")
}

// TestAttackRefreshBruteForce: guessing refresh tokens from one address
// runs into 429 rate_limited with Retry-After, and the guessing revokes
// nothing.
func TestAttackRefreshBruteForce(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--rate-limit-refresh", "10/1m")
	victim := s.newUser(t, true)
	sid, _ := splitRefresh(t, victim.Refresh())
	limited := 0
	for i := 0; i < 40; i++ {
		guess := sid + "." + base64.RawURLEncoding.EncodeToString([]byte(randHex(20)))
		r := s.refreshWith(t, guess)
		switch r.Status {
		case http.StatusUnauthorized:
			if limited > 0 {
				t.Errorf("guess %d: 401 after being rate limited: %s", i, r)
			}
			expect(t, r, http.StatusUnauthorized, "invalid_refresh_token")
		case http.StatusTooManyRequests:
			limited++
			expect(t, r, http.StatusTooManyRequests, "rate_limited")
			if ra := atoiOr(r.Header.Get("Retry-After"), 0); ra < 1 {
				t.Errorf("429 without a positive Retry-After: %q", r.Header.Get("Retry-After"))
			}
		default:
			t.Errorf("guess %d: %s, want 401 or 429", i, r)
		}
	}
	if limited < 25 {
		t.Errorf("only %d of 40 guesses were rate limited with --rate-limit-refresh 10/1m", limited)
	}
	// The victim's session was not revoked by the guessing (its access
	// token works; the refresh limit is per address, so it is not retried
	// from here).
	if r := victim.me(t); r.Status != http.StatusOK {
		t.Errorf("victim's session revoked by brute force: %s", r)
	}
}

// TestAttackRefreshReuseAfterGrace: presenting an already-rotated token
// after the grace window is theft: 401 refresh_token_reused, the newest
// token of the session fails, its access tokens are rejected at once, and
// the user's other sessions are untouched. Both transports.
func TestAttackRefreshReuseAfterGrace(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--reuse-grace", "1s")
	for _, body := range []bool{true, false} {
		d := s.newUser(t, body)
		bystander := d.another(t, true)
		t0 := d.Refresh()
		d.refreshOK(t)
		t1 := d.Refresh()
		d.refreshOK(t)
		access := d.Access()
		time.Sleep(1200 * time.Millisecond)
		// The thief replays the just-rotated token t1 after the window.
		r := d.presentRefresh(t, t1)
		expect(t, r, http.StatusUnauthorized, "refresh_token_reused")
		if r := s.meWith(t, access); !expect(t, r, http.StatusUnauthorized, "invalid_token") {
			t.Errorf("body=%v: access token survived reuse detection", body)
		}
		d.assertDead(t, "after reuse")
		for _, old := range []string{t0, t1} {
			if r := d.presentRefresh(t, old); r.Status != http.StatusUnauthorized {
				t.Errorf("body=%v: old token refreshed after reuse: %s", body, r)
			}
		}
		bystander.assertAlive(t, "other session after reuse")
	}
}

// TestAttackRefreshConcurrent: 80 concurrent refreshes of one token all
// succeed with the same successor (exactly one distinct successor, so there
// are never two live successors); the successor then rotates normally and
// the original, replayed after that, is reuse that kills the session.
func TestAttackRefreshConcurrent(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	d := s.newUser(t, true)
	orig := d.Refresh()
	const n = 80
	var (
		wg       sync.WaitGroup
		start    = make(chan struct{})
		mu       sync.Mutex
		statuses = map[int]int{}
		succ     = map[string]int{}
		access   []string
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			st, code, rt, at, err := atkRefreshBody(s, orig)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("refresh: %v", err)
				return
			}
			statuses[st]++
			if st == http.StatusOK {
				succ[rt]++
				access = append(access, at)
			} else {
				t.Errorf("concurrent refresh: %d %s", st, code)
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(succ) != 1 {
		t.Fatalf("%d concurrent refreshes produced %d distinct successors (statuses %v), want exactly 1", n, len(succ), statuses)
	}
	var next string
	for k := range succ {
		next = k
	}
	if next == orig || next == "" {
		t.Fatalf("successor %q is not a new token", abbrev(next))
	}
	for _, at := range access[:min(5, len(access))] {
		if r := s.meWith(t, at); r.Status != http.StatusOK {
			t.Errorf("access token from a concurrent refresh: %s", r)
		}
	}
	// The successor rotates once; afterwards only its successor lives.
	r := s.refreshWith(t, next)
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	third, _ := r.JSON()["refresh_token"].(string)
	// The original is now two generations old: reuse, the session ends.
	r = s.refreshWith(t, orig)
	expect(t, r, http.StatusUnauthorized, "refresh_token_reused")
	for _, tok := range []string{orig, next, third} {
		if r := s.refreshWith(t, tok); r.Status != http.StatusUnauthorized {
			t.Errorf("token refreshes after reuse killed the session: %s", r)
		}
	}
	for _, at := range access[:min(5, len(access))] {
		if r := s.meWith(t, at); r.Status != http.StatusUnauthorized {
			t.Errorf("access token survives reuse detection: %s", r)
		}
	}
}

// TestAttackRefreshConcurrentCookie is the concurrent race in cookie mode:
// every answer sets the same refresh cookie.
func TestAttackRefreshConcurrentCookie(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	d := s.newUser(t, false)
	orig, csrf := d.Refresh(), d.cookie(csrfCookie)
	const n = 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	succ := map[string]int{}
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := http.NewRequest("POST", s.base+"/auth/refresh", nil)
			req.Header.Set("Cookie", refreshCookie+"="+orig+"; "+csrfCookie+"="+csrf)
			req.Header.Set("X-CSRF-Token", csrf)
			res, err := s.hc.Do(req)
			if err != nil {
				t.Errorf("refresh: %v", err)
				return
			}
			res.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			if res.StatusCode != http.StatusOK {
				t.Errorf("concurrent cookie refresh: %d", res.StatusCode)
				return
			}
			for _, c := range res.Cookies() {
				if c.Name == refreshCookie {
					succ[c.Value]++
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(succ) != 1 {
		t.Errorf("%d concurrent cookie refreshes set %d distinct refresh cookies, want 1", n, len(succ))
	}
}

// atkHammer refreshes tok from many goroutines at once while race() runs, and returns every refresh and access token seen.
func atkHammer(t *testing.T, s *server, tok string, workers int, race func()) (refresh, access []string) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		seenR = map[string]bool{tok: true}
		seenA = map[string]bool{}
		start = make(chan struct{})
	)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			cur := tok
			for j := 0; j < 4; j++ {
				st, _, rt, at, err := atkRefreshBody(s, cur)
				if err != nil {
					t.Errorf("refresh: %v", err)
					return
				}
				if st >= 500 {
					t.Errorf("refresh racing a revocation: status %d", st)
				}
				if st != http.StatusOK {
					return
				}
				mu.Lock()
				seenR[rt], seenA[at] = true, true
				mu.Unlock()
				// Workers keep presenting tok rather than following the
				// chain: a worker two generations behind would be (rightly)
				// treated as reuse, which is not the race under test.
			}
		}(i)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-start
		time.Sleep(2 * time.Millisecond)
		race()
	}()
	close(start)
	wg.Wait()
	for k := range seenR {
		refresh = append(refresh, k)
	}
	for k := range seenA {
		access = append(access, k)
	}
	return refresh, access
}

// atkAssertAllDead checks that no token of a session works any more.
func atkAssertAllDead(t *testing.T, s *server, what string, refresh, access []string) {
	t.Helper()
	for _, tok := range refresh {
		if st, code, _, _, err := atkRefreshBody(s, tok); err != nil || st != http.StatusUnauthorized {
			t.Errorf("%s: a refresh token of the ended session still answers %d %s (err %v)", what, st, code, err)
		}
	}
	for _, at := range access {
		if r := s.meWith(t, at); r.Status != http.StatusUnauthorized {
			t.Errorf("%s: an access token of the ended session still works: %s", what, r)
		}
	}
}

// TestAttackRefreshRacingLogout: refreshes racing a logout of the same
// session: afterwards the session is dead, every refresh token seen during
// the race fails and every access token handed out is rejected.
func TestAttackRefreshRacingLogout(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	u := s.newUser(t, true)
	for round := 0; round < 4; round++ {
		d := u.another(t, true)
		access0 := d.Access()
		var logoutStatus int
		refresh, access := atkHammer(t, s, d.Refresh(), 24, func() {
			st, _, _, err := atkRaw(s, "POST", "/auth/logout", nil, map[string]string{"Authorization": "Bearer " + access0})
			if err != nil {
				t.Errorf("logout: %v", err)
			}
			logoutStatus = st
		})
		if logoutStatus != http.StatusNoContent {
			t.Errorf("round %d: logout answered %d, want 204", round, logoutStatus)
		}
		atkAssertAllDead(t, s, "after refresh racing logout", refresh, append(access, access0))
	}
	u.assertAlive(t, "the user's other session")
}

// TestAttackRefreshRacingPasswordChange: refreshes of other sessions racing
// a password change: afterwards every other session is dead, the calling
// session lives, and the new password is the one that works.
func TestAttackRefreshRacingPasswordChange(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	caller := s.newUser(t, true)
	for round := 0; round < 3; round++ {
		victim := caller.another(t, true)
		newPW := newPassword()
		var st int
		refresh, access := atkHammer(t, s, victim.Refresh(), 24, func() {
			body, _ := json.Marshal(map[string]any{"current_password": caller.password, "new_password": newPW})
			var err error
			st, _, _, err = atkRaw(s, "POST", "/auth/password", body, map[string]string{"Authorization": "Bearer " + caller.Access()})
			if err != nil {
				t.Errorf("password change: %v", err)
			}
		})
		if st != http.StatusNoContent {
			t.Fatalf("round %d: password change answered %d", round, st)
		}
		caller.password = newPW
		atkAssertAllDead(t, s, "other session after refresh racing password change", refresh, append(access, victim.Access()))
		caller.assertAlive(t, "the session that changed the password")
	}
	r := s.do(t, "POST", "/auth/login", map[string]any{"email": caller.email, "password": caller.password, "token_transport": "body"})
	expect(t, r, http.StatusOK, "")
}
