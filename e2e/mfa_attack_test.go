package e2e

// Attacks on the second factor (API.md part 2, "Second factors"): no
// session or token before the second factor, mfa_tokens voided by a newer
// sign-in, used twice, after five failures, with another user's codes or
// concurrently, guessing spread over the mfa_tokens of many sign-ins
// (limited per account, also across two instances sharing PostgreSQL and
// Redis), and the TOTP secret read from the database file.

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestMFAAttacks runs the attacks that need no rate limit, each as a
// parallel subtest against one server per backend.
func TestMFAAttacks(t *testing.T) {
	mfaBegin(t)
	hrEachBackend(t, func(t *testing.T, backend string) {
		e := hrStart(t, backend)
		s := e.s
		t.Run("no session before the second factor", func(t *testing.T) {
			t.Parallel()
			mfaAttackNoSessionBefore(t, s)
		})
		t.Run("a newer sign-in voids the older mfa_token", func(t *testing.T) {
			t.Parallel()
			mfaAttackOlderTokenVoid(t, s)
		})
		t.Run("mfa_token is single use", func(t *testing.T) {
			t.Parallel()
			mfaAttackTokenReplay(t, s)
		})
		t.Run("concurrent uses", func(t *testing.T) {
			t.Parallel()
			mfaAttackConcurrentUses(t, s)
		})
		t.Run("five failures void the mfa_token", func(t *testing.T) {
			t.Parallel()
			mfaAttackFiveFailures(t, s)
		})
		t.Run("another user's codes", func(t *testing.T) {
			t.Parallel()
			mfaAttackOtherUser(t, s)
		})
		t.Run("wrong password reveals nothing", func(t *testing.T) {
			t.Parallel()
			mfaAttackWrongPassword(t, s)
		})
	})
}

// mfaAttackNoSessionBefore: between the password and the second factor
// there is no session (GET /auth/sessions from another device shows none),
// no cookie and no token; the mfa_token is neither an access nor a refresh
// token; mixing methods and codes gets nothing. Each mfa_token is used
// right after the sign-in that issued it: a newer sign-in voids it.
func mfaAttackNoSessionBefore(t *testing.T, s *server) {
	d0 := s.newUser(t, true)
	f, rc := mfaEnable(t, d0)
	before := mfaSessionIDs(t, s, d0.Access())

	// Wrong pairings of method and code on the mfa_token of one sign-in:
	// nothing.
	dm, tokM := mfaChallenge(t, s, d0.email, d0.password, true)
	r := mfaVerify(t, dm, tokM, "recovery_code", f.next(t))
	expectStatusIn(t, r, http.StatusUnauthorized, http.StatusUnprocessableEntity)
	r = mfaVerify(t, dm, tokM, "totp", rc[0])
	expectStatusIn(t, r, http.StatusUnauthorized, http.StatusUnprocessableEntity)
	r = mfaVerify(t, dm, tokM, "sms", f.wrong())
	expectStatusIn(t, r, http.StatusBadRequest, http.StatusUnauthorized, http.StatusUnprocessableEntity)
	r = mfaVerify(t, dm, tokM, "", "")
	expectStatusIn(t, r, http.StatusBadRequest, http.StatusUnauthorized, http.StatusUnprocessableEntity)

	// The next sign-in, cookie transport: no cookie, and its mfa_token
	// opens nothing.
	dc, tok := mfaChallenge(t, s, d0.email, d0.password, false)
	if h := dc.cookieHeader("/"); h != "" {
		t.Errorf("the device holds cookies before the second factor: %s", h)
	}
	for _, path := range []string{"/auth/me", "/auth/sessions"} {
		r := s.do(t, "GET", path, nil, bearer(tok))
		expect(t, r, http.StatusUnauthorized, "invalid_token")
	}
	r = s.do(t, "POST", "/auth/mfa/totp", map[string]any{"current_password": d0.password}, bearer(tok))
	expect(t, r, http.StatusUnauthorized, "invalid_token")
	r = s.refreshWith(t, tok)
	expect(t, r, http.StatusUnauthorized, "invalid_refresh_token")
	r = s.do(t, "POST", "/auth/refresh", nil, hdr("Cookie", refreshCookie+"="+tok))
	if r.Status == http.StatusOK {
		t.Errorf("%s: the mfa_token refreshed as a cookie", r)
	}
	r = s.do(t, "POST", "/auth/logout?scope=global", map[string]any{"refresh_token": tok})
	if r.Status/100 == 2 {
		t.Errorf("%s: the mfa_token logged out", r)
	}
	mfaRefused(t, mfaVerify(t, dc, tok, "totp", f.wrong()), "a wrong code")
	if dm.Access() != "" || dc.Access() != "" {
		t.Errorf("a refused second factor left an access token on a device")
	}
	if after := mfaSessionIDs(t, s, d0.Access()); !slices.Equal(after, before) {
		t.Errorf("sessions before the second factor: %v, want unchanged %v", after, before)
	}

	// The right code: one new session, the device's own.
	mfaVerifyOK(t, dc, tok, "totp", f.next(t), amrPwdOTP)
	after := mfaSessionIDs(t, s, d0.Access())
	if len(after) != len(before)+1 || !slices.Contains(after, dc.sid) {
		t.Errorf("sessions after the second factor: %v, want %v plus %s", after, before, dc.sid)
	}
}

// mfaAttackOlderTokenVoid: a sign-in voids the user's older mfa_tokens
// (API.md: one-time secrets are voided by a newer one of the same kind).
// The right TOTP code and a right recovery code on the older one are
// refused without being checked: neither is spent, and both then sign in
// on the newer mfa_token and the next one.
func mfaAttackOlderTokenVoid(t *testing.T, s *server) {
	u := s.newUser(t, true)
	f, rc := mfaEnable(t, u)
	dOld, tokOld := mfaChallenge(t, s, u.email, u.password, true)
	dNew, tokNew := mfaChallenge(t, s, u.email, u.password, false)
	if tokNew == tokOld {
		t.Fatalf("two sign-ins got the same mfa_token")
	}
	code := f.next(t)
	mfaRefused(t, mfaVerify(t, dOld, tokOld, "totp", code), "the right TOTP code on an mfa_token voided by a newer sign-in")
	mfaRefused(t, mfaVerify(t, dOld, tokOld, "recovery_code", rc[0]), "a right recovery code on an mfa_token voided by a newer sign-in")
	if dOld.Access() != "" {
		t.Errorf("a voided mfa_token gave a session")
	}
	mfaVerifyOK(t, dNew, tokNew, "totp", code, amrPwdOTP)
	dNew.assertAlive(t, "the session of the newer mfa_token")
	d3, tok3 := mfaChallenge(t, s, u.email, u.password, true)
	mfaVerifyOK(t, d3, tok3, "recovery_code", rc[0], amrPwdRecovery)
	// Voided stays void, also once the newer one has been used.
	mfaRefused(t, mfaVerify(t, dOld, tokOld, "totp", f.next(t)), "a fresh TOTP code on a voided mfa_token")
}

// mfaAttackTokenReplay: an mfa_token that completed a sign-in is dead, for
// a fresh TOTP code and for a recovery code; unknown and tampered
// mfa_tokens are refused.
func mfaAttackTokenReplay(t *testing.T, s *server) {
	d0 := s.newUser(t, true)
	f, rc := mfaEnable(t, d0)
	d, tok := mfaChallenge(t, s, d0.email, d0.password, true)
	mfaVerifyOK(t, d, tok, "totp", f.next(t), amrPwdOTP)
	d2 := s.newDevice(true)
	mfaRefused(t, mfaVerify(t, d2, tok, "totp", f.next(t)), "a used mfa_token with a fresh TOTP code")
	mfaRefused(t, mfaVerify(t, d2, tok, "recovery_code", rc[0]), "a used mfa_token with a recovery code")
	if d2.Access() != "" {
		t.Errorf("a used mfa_token gave a session")
	}

	// Tokens shaped like the live one are unknown: 401 invalid_code.
	// Malformed ones may also be refused as such (400 or 422).
	_, live := mfaChallenge(t, s, d0.email, d0.password, true)
	shaped := []string{live + "A", mfaFlip(live, len(live)/2), mfaFlip(live, len(live)-5), strings.ToUpper(live)}
	malformed := []string{"x", randHex(32)}
	if id, secret, ok := strings.Cut(live, "."); ok {
		shaped = append(shaped, id+"."+base64.RawURLEncoding.EncodeToString(make([]byte, 32)))
		malformed = append(malformed, id, "."+secret, id+".")
	}
	for i, bad := range append(shaped, malformed...) {
		if bad == live {
			continue
		}
		st, code, err := mfaRawVerify(s, bad, "recovery_code", rc[1], nil)
		if err != nil {
			t.Fatal(err)
		}
		refused := st == http.StatusUnauthorized && code == "invalid_code"
		if i >= len(shaped) {
			refused = refused || st == http.StatusBadRequest || st == http.StatusUnprocessableEntity
		}
		if !refused {
			t.Errorf("forged mfa_token %q: %d %s, want 401 invalid_code", abbrev(bad), st, code)
		}
	}
}

// mfaAttackConcurrentUses: racing requests never give two sessions: two
// fresh codes on one mfa_token, one TOTP code sent on one mfa_token by
// four requests at once, one recovery code likewise. (Only the newest
// mfa_token of a user is live, so the races are on one mfa_token.)
func mfaAttackConcurrentUses(t *testing.T, s *server) {
	race := func(what string, n int, f func(i int) (int, string, error)) {
		t.Helper()
		sts := make([]int, n)
		codes := make([]string, n)
		atOnce(n, func(i int) {
			st, code, err := f(i)
			if err != nil {
				t.Errorf("%s: request %d: %v", what, i, err)
			}
			sts[i], codes[i] = st, code
		})
		ok := 0
		for i, st := range sts {
			switch {
			case st == http.StatusOK:
				ok++
			case st == http.StatusUnauthorized && codes[i] == "invalid_code":
			default:
				t.Errorf("%s: an answer %d %s, want 200 or 401 invalid_code", what, st, codes[i])
			}
		}
		if ok != 1 {
			t.Errorf("%s: %d sign-ins succeeded (answers %v), want exactly 1", what, ok, sts)
		}
	}

	u := s.newUser(t, true)
	f, _ := mfaEnable(t, u)
	_, tok := mfaChallenge(t, s, u.email, u.password, true)
	two := []string{f.next(t), f.next(t)}
	race("two fresh codes on one mfa_token", 2, func(i int) (int, string, error) {
		return mfaRawVerify(s, tok, "totp", two[i], nil)
	})

	w := s.newUser(t, true)
	g, rc := mfaEnable(t, w)
	_, tokW := mfaChallenge(t, s, w.email, w.password, true)
	code := g.next(t)
	race("one TOTP code sent four times at once on one mfa_token", 4, func(int) (int, string, error) {
		return mfaRawVerify(s, tokW, "totp", code, nil)
	})
	for round := range 3 {
		_, tk := mfaChallenge(t, s, w.email, w.password, true)
		race("one recovery code sent four times at once on one mfa_token", 4, func(int) (int, string, error) {
			return mfaRawVerify(s, tk, "recovery_code", rc[round], nil)
		})
	}
	// Every code raced above is spent.
	d, tk := mfaChallenge(t, s, w.email, w.password, true)
	mfaRefused(t, mfaVerify(t, d, tk, "totp", code), "a TOTP code that won a race")
	for _, c := range []string{rc[0], rc[2]} {
		mfaRefused(t, mfaVerify(t, d, tk, "recovery_code", c), "a recovery code that won a race")
	}
	mfaVerifyOK(t, d, tk, "recovery_code", rc[3], amrPwdRecovery)
}

// mfaAttackFiveFailures: five wrong codes void an mfa_token even for the
// right code; four do not. Concurrent wrong guesses void it as well.
func mfaAttackFiveFailures(t *testing.T, s *server) {
	u := s.newUser(t, true)
	f, rc := mfaEnable(t, u)
	dB, tokB := mfaChallenge(t, s, u.email, u.password, true)
	for i := range 5 {
		mfaRefused(t, mfaVerify(t, dB, tokB, "totp", f.wrong()), "wrong code "+string(rune('1'+i)))
	}
	mfaRefused(t, mfaVerify(t, dB, tokB, "totp", f.next(t)), "the right code after five failures")
	mfaRefused(t, mfaVerify(t, dB, tokB, "recovery_code", rc[0]), "a recovery code after five failures")
	dA, tokA := mfaChallenge(t, s, u.email, u.password, false)
	for range 4 {
		mfaRefused(t, mfaVerify(t, dA, tokA, "totp", f.wrong()), "a wrong code")
	}
	mfaVerifyOK(t, dA, tokA, "totp", f.next(t), amrPwdOTP)

	// Twelve wrong guesses at once: whatever order they land in, the
	// mfa_token is void afterwards.
	v := s.newUser(t, true)
	g, rc2 := mfaEnable(t, v)
	_, tokC := mfaChallenge(t, s, v.email, v.password, true)
	wrong := make([]string, 12)
	for i := range wrong {
		wrong[i] = g.wrong()
	}
	var mu sync.Mutex
	answers := map[string]int{}
	atOnce(len(wrong), func(i int) {
		st, code, err := mfaRawVerify(s, tokC, "totp", wrong[i], nil)
		if err != nil {
			t.Errorf("guess %d: %v", i, err)
		}
		mu.Lock()
		answers[http.StatusText(st)+" "+code]++
		mu.Unlock()
	})
	if answers["Unauthorized invalid_code"] != len(wrong) {
		t.Errorf("concurrent wrong guesses answered %v, want 401 invalid_code every time", answers)
	}
	dC := s.newDevice(true)
	mfaRefused(t, mfaVerify(t, dC, tokC, "totp", g.next(t)), "the right code after twelve concurrent failures")
	mfaRefused(t, mfaVerify(t, dC, tokC, "recovery_code", rc2[0]), "a recovery code after twelve concurrent failures")
	// The account itself is fine: a new sign-in completes.
	d, tok := mfaChallenge(t, s, v.email, v.password, true)
	mfaVerifyOK(t, d, tok, "recovery_code", rc2[1], amrPwdRecovery)
}

// mfaAttackOtherUser: user A's mfa_token takes none of user B's codes, and
// trying them spends none of B's; A's own code then signs in A.
func mfaAttackOtherUser(t *testing.T, s *server) {
	a := s.newUser(t, true)
	b := s.newUser(t, true)
	fa, _ := mfaEnable(t, a)
	fb, rcb := mfaEnable(t, b)
	dA, tokA := mfaChallenge(t, s, a.email, a.password, true)
	mfaRefused(t, mfaVerify(t, dA, tokA, "totp", fb.next(t)), "A's mfa_token with B's TOTP code")
	mfaRefused(t, mfaVerify(t, dA, tokA, "recovery_code", rcb[0]), "A's mfa_token with B's recovery code")
	r := mfaVerifyOK(t, dA, tokA, "totp", fa.next(t), amrPwdOTP)
	if id := mailUser(t, r)["id"]; id != a.user.ID {
		t.Errorf("A's mfa_token signed in %v, want A %s", id, a.user.ID)
	}
	dB, tokB := mfaChallenge(t, s, b.email, b.password, true)
	r = mfaVerifyOK(t, dB, tokB, "recovery_code", rcb[0], amrPwdRecovery)
	if id := mailUser(t, r)["id"]; id != b.user.ID {
		t.Errorf("B's mfa_token signed in %v, want B %s", id, b.user.ID)
	}
	// B's session cannot switch off either factor with A's code.
	rr := s.do(t, "DELETE", "/auth/mfa/totp", map[string]any{"code": fa.next(t)}, bearer(dB.Access()))
	mfaRefused(t, rr, "B disabling with A's code")
	mfaExpectState(t, s, dA.Access(), true, "A after B's DELETE with A's code")
	mfaExpectState(t, s, dB.Access(), true, "B after B's DELETE with A's code")
}

// mfaAttackWrongPassword: a wrong password for a TOTP user answers like a
// wrong password for any other account or an unknown address, and hands
// out no mfa_token.
func mfaAttackWrongPassword(t *testing.T, s *server) {
	u := s.newUser(t, true)
	mfaEnable(t, u)
	plain := s.newUser(t, true)
	var bodies []map[string]any
	for _, email := range []string{u.email, plain.email, newEmail()} {
		r := s.do(t, "POST", "/auth/login", map[string]any{"email": email, "password": "Wrong-" + randHex(6)})
		expect(t, r, http.StatusUnauthorized, "invalid_credentials")
		m := r.JSON()
		if _, ok := m["mfa_token"]; ok {
			t.Errorf("%s: a wrong password got an mfa_token", r)
		}
		bodies = append(bodies, m)
	}
	for i := 1; i < len(bodies); i++ {
		if !reflect.DeepEqual(bodies[0], bodies[i]) {
			t.Errorf("a wrong password for a TOTP user answers %v, for another account or address %v", bodies[0], bodies[i])
		}
	}
}

// mfaGuessAcrossSignIns is how someone who knows an account's password
// spreads second-factor guesses over many mfa_tokens: a sign-in with the
// password, wrong guesses on the mfa_token it issued, the next sign-in,
// and so on (each sign-in voids the older mfa_tokens, so guesses go to
// the newest one only, and none of them reaches its own five). Round r is
// one sign-in and per[r] wrong guesses, sent one after another or, with
// concurrent, all at once. Sign-in i and guess j of the run go to
// inst[i%len(inst)] and inst[j%len(inst)]; every request comes from a
// client IP of its own.
//
// Under a per-account --rate-limit-login of limit: a sign-in answers 401
// mfa_required (a new mfa_token) or 429 rate_limited, a guess 401
// invalid_code (checked) or 429 rate_limited; once an answer was 429, every
// later one is; at most limit guesses are checked in all. It returns the
// newest mfa_token.
func mfaGuessAcrossSignIns(t *testing.T, inst []*server, email, password string, f *mfaFactor, per []int, concurrent bool, limit int) string {
	t.Helper()
	what := fmt.Sprintf("wrong guesses %v over %d sign-ins on %d instance(s)", per, len(per), len(inst))
	if concurrent {
		what = "concurrent " + what
	}
	tok, checked, guesses, limited := "", 0, 0, false
	answer := func(i int, kind string, st int, code string) {
		t.Helper()
		switch {
		case st == http.StatusTooManyRequests && code == "rate_limited":
			limited = true
		case limited:
			t.Errorf("%s: %s %d answered %d %s after an earlier answer was 429, want 429 rate_limited", what, kind, i+1, st, code)
		case kind == "guess" && st == http.StatusUnauthorized && code == "invalid_code":
			checked++
		default:
			t.Errorf("%s: %s %d answered %d %s", what, kind, i+1, st, code)
		}
	}
	for round, n := range per {
		s := inst[round%len(inst)]
		r := s.do(t, "POST", "/auth/login", map[string]any{"email": email, "password": password, "token_transport": "body"},
			hdr("X-Forwarded-For", prodIP()))
		switch {
		case r.Status == http.StatusTooManyRequests:
			checkRateLimited(t, r)
			answer(round, "sign-in", r.Status, r.Code())
		case !limited:
			tk := mfaCheckRequired(t, r)
			if tk == "" {
				t.FailNow()
			}
			tok = tk
		default:
			answer(round, "sign-in", r.Status, r.Code())
		}
		if tok == "" {
			t.Fatalf("%s: the first sign-in gave no mfa_token", what)
		}
		wrong, ips := make([]string, n), make([]string, n)
		for i := range n {
			wrong[i], ips[i] = f.wrong(), prodIP()
		}
		sts, codes := make([]int, n), make([]string, n)
		send := func(i int) {
			st, code, err := mfaRawVerify(inst[(guesses+i)%len(inst)], tok, "totp", wrong[i], map[string]string{"X-Forwarded-For": ips[i]})
			if err != nil {
				t.Errorf("%s: guess %d: %v", what, guesses+i+1, err)
			}
			sts[i], codes[i] = st, code
		}
		if concurrent {
			atOnce(n, send)
			// Within a batch the order is unknown: only the next
			// round sees a 429 of this one.
			batchLimited := false
			for i := range n {
				if sts[i] == http.StatusTooManyRequests && codes[i] == "rate_limited" {
					batchLimited = true
					continue
				}
				answer(guesses+i, "guess", sts[i], codes[i])
			}
			limited = limited || batchLimited
		} else {
			for i := range n {
				send(i)
				answer(guesses+i, "guess", sts[i], codes[i])
			}
		}
		guesses += n
	}
	if checked > limit {
		t.Errorf("%s: %d wrong guesses were checked, want at most %d (--rate-limit-login %d per account)", what, checked, limit, limit)
	}
	if checked == 0 {
		t.Errorf("%s: not one guess was checked", what)
	}
	if !limited {
		t.Errorf("%s: nothing was limited", what)
	}
	t.Logf("%s: %d of %d guesses checked", what, checked, guesses)
	return tok
}

// TestMFAGuessingLimitedPerAccount: second-factor guesses spread over the
// mfa_tokens of successive sign-ins, from many client IPs, count against
// the account's --rate-limit-login; then even the right code and the
// right password are limited, while other accounts are not. Sequential
// and concurrent, on SQLite. The period is long enough that no attempt
// comes back while the test runs.
func TestMFAGuessingLimitedPerAccount(t *testing.T) {
	mfaBegin(t)
	const limit = 3
	s := startServer(t, "--rate-limit-login", "3/10m", "--trusted-proxies", "127.0.0.1")
	ip := func() reqOpt { return hdr("X-Forwarded-For", prodIP()) }
	verify := func(t *testing.T, tok, method, code string) *resp {
		t.Helper()
		return s.do(t, "POST", "/auth/mfa/verify",
			map[string]any{"mfa_token": tok, "method": method, "code": code, "token_transport": "body"}, ip())
	}
	otherAccountFine := func(t *testing.T) {
		t.Helper()
		w := s.newUser(t, true)
		g, _ := mfaEnable(t, w)
		d, tok := mfaChallenge(t, s, w.email, w.password, true, ip())
		mfaVerifyOK(t, d, tok, "totp", g.next(t), amrPwdOTP, ip())
	}

	t.Run("sequential", func(t *testing.T) {
		t.Parallel()
		v := s.newUser(t, true)
		f, rc := mfaEnable(t, v)
		// Sign-in, two guesses, sign-in, two guesses, sign-in, one guess:
		// at most three reach the code check, then everything is limited.
		tok := mfaGuessAcrossSignIns(t, []*server{s}, v.email, v.password, f, []int{2, 2, 1}, false, limit)
		checkRateLimited(t, verify(t, tok, "totp", f.next(t)))
		checkRateLimited(t, verify(t, tok, "recovery_code", rc[0]))
		r := s.do(t, "POST", "/auth/login", map[string]any{"email": v.email, "password": v.password}, ip())
		checkRateLimited(t, r)
		otherAccountFine(t)
	})

	t.Run("concurrent", func(t *testing.T) {
		t.Parallel()
		v := s.newUser(t, true)
		f, _ := mfaEnable(t, v)
		// Sign-in, two guesses at once, sign-in, four guesses at once.
		tok := mfaGuessAcrossSignIns(t, []*server{s}, v.email, v.password, f, []int{2, 4}, true, limit)
		checkRateLimited(t, verify(t, tok, "totp", f.next(t)))
		r := s.do(t, "POST", "/auth/login", map[string]any{"email": v.email, "password": v.password}, ip())
		checkRateLimited(t, r)
		otherAccountFine(t)
	})
}

// TestMFAGuessingLimitedAcrossInstances: two instances sharing PostgreSQL
// and Redis: an mfa_token from one completes on the other, a code spent on
// one is refused by the other (also when both race), a sign-in on one
// voids the mfa_token of an earlier sign-in on the other, and guesses
// against one account alternating between the instances share one limit.
func TestMFAGuessingLimitedAcrossInstances(t *testing.T) {
	mfaBegin(t)
	const limit = 3
	c, _ := prodNewCluster(t)
	a := c.start(t, "--rate-limit-login", "3/10m")
	b := c.start(t, "--rate-limit-login", "3/10m")
	inst := []*server{a, b}
	ip := func() reqOpt { return hdr("X-Forwarded-For", prodIP()) }
	verify := func(t *testing.T, s *server, tok, method, code string) *resp {
		t.Helper()
		return s.do(t, "POST", "/auth/mfa/verify",
			map[string]any{"mfa_token": tok, "method": method, "code": code, "token_transport": "body"}, ip())
	}

	t.Run("codes and mfa_tokens across instances", func(t *testing.T) {
		t.Parallel()
		u := a.newUser(t, true)
		f, _ := mfaEnable(t, u)
		_, tokA := mfaChallenge(t, a, u.email, u.password, true, ip())
		code := f.next(t)
		r := verify(t, b, tokA, "totp", code)
		if expect(t, r, http.StatusOK, "") {
			checkTokenResponse(t, r, true)
			var tr tokenResp
			if err := json.Unmarshal(r.Body, &tr); err == nil {
				if got := mailAMR(t, tr.AccessToken); !slices.Equal(got, amrPwdOTP) {
					t.Errorf("amr %v, want %v", got, amrPwdOTP)
				}
			}
		}
		// fresh is refused below without being checked, so it stays
		// unspent for the last sign-in.
		fresh := f.next(t)
		mfaRefused(t, verify(t, a, tokA, "totp", fresh), "an mfa_token used on the other instance")
		_, tokB := mfaChallenge(t, b, u.email, u.password, true, ip())
		mfaRefused(t, verify(t, a, tokB, "totp", code), "a code spent on the other instance")
		// A sign-in on a voids the mfa_token of the sign-in on b.
		_, tokA2 := mfaChallenge(t, a, u.email, u.password, true, ip())
		for _, s := range inst {
			mfaRefused(t, verify(t, s, tokB, "totp", fresh), "an mfa_token voided by a sign-in on the other instance")
		}
		expect(t, verify(t, b, tokA2, "totp", fresh), http.StatusOK, "")

		// One fresh code on one mfa_token at both instances at once.
		w := b.newUser(t, true)
		g, _ := mfaEnable(t, w)
		_, tk := mfaChallenge(t, a, w.email, w.password, true, ip())
		fresh = g.next(t)
		sts := make([]int, 2)
		atOnce(2, func(i int) {
			st, _, err := mfaRawVerify(inst[i], tk, "totp", fresh, map[string]string{"X-Forwarded-For": prodIP()})
			if err != nil {
				t.Errorf("race %d: %v", i, err)
			}
			sts[i] = st
		})
		if n := countOf(sts, http.StatusOK); n != 1 {
			t.Errorf("one code raced on one mfa_token at two instances: answers %v, want exactly one 200", sts)
		}
	})

	t.Run("guesses share one limit", func(t *testing.T) {
		t.Parallel()
		v := a.newUser(t, true)
		f, rc := mfaEnable(t, v)
		tok := mfaGuessAcrossSignIns(t, inst, v.email, v.password, f, []int{2, 2, 1}, false, limit)
		checkRateLimited(t, verify(t, a, tok, "recovery_code", rc[0]))
		checkRateLimited(t, verify(t, b, tok, "totp", f.next(t)))
		for _, s := range inst {
			checkRateLimited(t, s.do(t, "POST", "/auth/login", map[string]any{"email": v.email, "password": v.password}, ip()))
		}
		// Another account is not limited, on either instance.
		w := b.newUser(t, true)
		g, _ := mfaEnable(t, w)
		for _, s := range inst {
			d, tk := mfaChallenge(t, s, w.email, w.password, true, ip())
			mfaVerifyOK(t, d, tk, "totp", g.next(t), amrPwdOTP, ip())
		}
	})
}

// mfaFlip changes the character at i of tok (unless it is the dot).
func mfaFlip(tok string, i int) string {
	if i < 0 || i >= len(tok) || tok[i] == '.' {
		return tok
	}
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

func countOf(xs []int, v int) int {
	n := 0
	for _, x := range xs {
		if x == v {
			n++
		}
	}
	return n
}

// TestMFASecretNotInDatabase: after enrolments confirmed, pending,
// replaced, disabled and reset by an admin, neither the SQLite file nor
// its WAL (while running and after shutdown) nor the logs hold a TOTP
// secret (base32 either case, raw, hex, base64) or a recovery code.
func TestMFASecretNotInDatabase(t *testing.T) {
	mfaBegin(t)
	s := startServer(t)
	_, admin := s.makeAdmin(t)
	var factors []*mfaFactor
	var codes []string

	// Confirmed, used for a sign-in, codes used and regenerated.
	u1 := s.newUser(t, true)
	f1, rc1 := mfaEnable(t, u1)
	factors, codes = append(factors, f1), append(codes, rc1...)
	d, tok := mfaChallenge(t, s, u1.email, u1.password, true)
	mfaVerifyOK(t, d, tok, "totp", f1.next(t), amrPwdOTP)
	d, tok = mfaChallenge(t, s, u1.email, u1.password, true)
	mfaVerifyOK(t, d, tok, "recovery_code", rc1[0], amrPwdRecovery)
	r := s.do(t, "POST", "/auth/mfa/recovery-codes", map[string]any{"code": f1.next(t)}, bearer(u1.Access()))
	if expect(t, r, http.StatusOK, "") {
		codes = append(codes, mfaRecoveryCodes(t, r)...)
	}
	// Pending, never confirmed.
	u2 := s.newUser(t, true)
	factors = append(factors, mfaEnrol(t, s, u2.Access(), u2.email, u2.password))
	// Pending, replaced by another pending one.
	u3 := s.newUser(t, true)
	factors = append(factors, mfaEnrol(t, s, u3.Access(), u3.email, u3.password))
	factors = append(factors, mfaEnrol(t, s, u3.Access(), u3.email, u3.password))
	// Confirmed, then disabled.
	u4 := s.newUser(t, true)
	f4, rc4 := mfaEnable(t, u4)
	factors, codes = append(factors, f4), append(codes, rc4...)
	expect(t, s.do(t, "DELETE", "/auth/mfa/totp", map[string]any{"code": f4.next(t)}, bearer(u4.Access())), http.StatusNoContent, "")
	// Confirmed, then reset by an admin.
	u5 := s.newUser(t, true)
	f5, rc5 := mfaEnable(t, u5)
	factors, codes = append(factors, f5), append(codes, rc5...)
	expect(t, s.do(t, "DELETE", "/admin/users/"+u5.user.ID+"/mfa", nil, bearer(admin.Access())), http.StatusNoContent, "")

	forms := map[string][]byte{}
	for i, f := range factors {
		label := func(s string) string { return s + " of TOTP secret " + string(rune('1'+i)) }
		forms[label("base32")] = []byte(f.Secret)
		forms[label("lower-case base32")] = []byte(strings.ToLower(f.Secret))
		forms[label("raw bytes")] = f.Key
		forms[label("hex")] = []byte(hex.EncodeToString(f.Key))
		forms[label("upper-case hex")] = []byte(strings.ToUpper(hex.EncodeToString(f.Key)))
		for name, enc := range map[string]*base64.Encoding{"base64": base64.StdEncoding, "unpadded base64": base64.RawStdEncoding,
			"base64url": base64.URLEncoding, "unpadded base64url": base64.RawURLEncoding} {
			forms[label(name)] = []byte(enc.EncodeToString(f.Key))
		}
		forms[label("otpauth URI")] = []byte(f.URI)
	}
	for i, c := range codes {
		label := "recovery code " + c + " (" + string(rune('a'+i%26)) + ")"
		forms[label] = []byte(c)
		bare := strings.NewReplacer("-", "", " ", "").Replace(c)
		if len(bare) >= 8 {
			forms[label+" without separators"] = []byte(bare)
			forms[label+" upper-case"] = []byte(strings.ToUpper(bare))
			forms[label+" lower-case"] = []byte(strings.ToLower(bare))
		}
	}

	scan := func(phase string) {
		t.Helper()
		entries, err := os.ReadDir(s.dir)
		if err != nil {
			t.Fatal(err)
		}
		scanned := 0
		for _, e := range entries {
			if e.IsDir() || e.Name() == "gh.db.key" {
				continue
			}
			data, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			scanned++
			for label, form := range forms {
				if bytes.Contains(data, form) {
					t.Errorf("%s: %s contains the %s", phase, e.Name(), label)
				}
			}
		}
		if scanned == 0 {
			t.Errorf("%s: no database files in %s", phase, s.dir)
		}
	}
	scan("while running")
	logs := s.stderr.String()
	for label, form := range forms {
		if len(form) >= 8 && strings.Contains(logs, string(form)) {
			t.Errorf("the server logs contain the %s", label)
		}
	}
	if code := s.Stop(); code != 0 {
		t.Errorf("exit code %d on SIGTERM", code)
	}
	scan("after shutdown")
}
