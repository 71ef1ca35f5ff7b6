package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"testing"
	"time"
)

// checkRateLimited asserts a 429 rate_limited with a usable Retry-After.
func checkRateLimited(t *testing.T, r *resp) bool {
	t.Helper()
	if !expect(t, r, http.StatusTooManyRequests, "rate_limited") {
		return false
	}
	ra := r.Header.Get("Retry-After")
	if n, err := strconv.Atoi(ra); err == nil {
		if n <= 0 || n > 3600 {
			t.Errorf("%s: Retry-After = %d seconds", r.req, n)
		}
	} else if _, err := http.ParseTime(ra); err != nil {
		t.Errorf("%s: Retry-After = %q, want delay-seconds or an HTTP-date", r.req, ra)
	}
	return true
}

func wrongLogin(t *testing.T, s *server, email string, opts ...reqOpt) *resp {
	t.Helper()
	return s.do(t, "POST", "/auth/login", map[string]any{"email": email, "password": "Wrong-" + randHex(4)}, opts...)
}

func makeUsers(t *testing.T, s *server, n int) []*device {
	t.Helper()
	out := make([]*device, n)
	for i := range out {
		out[i] = s.newUser(t, true)
	}
	return out
}

func TestRateLimitLoginPerIP(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--rate-limit-login", "3/1m")
	users := makeUsers(t, s, 5)
	// One failure each on three accounts: the IP has used its three attempts.
	for i := 0; i < 3; i++ {
		expect(t, wrongLogin(t, s, users[i].email), http.StatusUnauthorized, "invalid_credentials")
	}
	checkRateLimited(t, wrongLogin(t, s, users[3].email))
	// Even the right password is limited now, from this IP.
	r := s.do(t, "POST", "/auth/login", map[string]any{"email": users[4].email, "password": users[4].password})
	checkRateLimited(t, r)
	// X-Forwarded-For is ignored without trusted proxies.
	r = wrongLogin(t, s, users[4].email, hdr("X-Forwarded-For", "203.0.113.77"))
	checkRateLimited(t, r)
	// Tokens keep working; only login is limited.
	users[0].assertAlive(t, "session while login is rate limited")
}

func TestRateLimitLoginPerAccountAcrossIPs(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--rate-limit-login", "3/1m", "--trusted-proxies", "127.0.0.1")
	victim := s.newUser(t, true)
	for i := 1; i <= 3; i++ {
		r := wrongLogin(t, s, victim.email, hdr("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i)))
		expect(t, r, http.StatusUnauthorized, "invalid_credentials")
	}
	checkRateLimited(t, wrongLogin(t, s, victim.email, hdr("X-Forwarded-For", "198.51.100.4")))
	// A limited account must not become an oracle: the right password is
	// limited too, from a fresh IP.
	r := s.do(t, "POST", "/auth/login", map[string]any{"email": victim.email, "password": victim.password},
		hdr("X-Forwarded-For", "198.51.100.5"))
	checkRateLimited(t, r)
	// Other accounts from fresh IPs are unaffected.
	other := s.newUser(t, true)
	r = s.do(t, "POST", "/auth/login", map[string]any{"email": other.email, "password": other.password},
		hdr("X-Forwarded-For", "198.51.100.6"))
	expect(t, r, http.StatusOK, "")
}

func TestRateLimitTrustedProxyXFF(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--rate-limit-login", "3/1m", "--trusted-proxies", "127.0.0.1")
	users := makeUsers(t, s, 9)
	// Distinct client IPs via a trusted proxy: five accounts, one failure each, no limit.
	for i := 0; i < 5; i++ {
		r := wrongLogin(t, s, users[i].email, hdr("X-Forwarded-For", fmt.Sprintf("192.0.2.%d", i+1)))
		expect(t, r, http.StatusUnauthorized, "invalid_credentials")
	}
	// One client IP, four accounts: the fourth attempt is limited.
	for i := 5; i < 8; i++ {
		expect(t, wrongLogin(t, s, users[i].email, hdr("X-Forwarded-For", "192.0.2.100")), http.StatusUnauthorized, "invalid_credentials")
	}
	checkRateLimited(t, wrongLogin(t, s, users[8].email, hdr("X-Forwarded-For", "192.0.2.100")))
	// Spoofed left-most entries do not give a new identity: the client is
	// the right-most address not in the trusted list.
	users2 := makeUsers(t, s, 4)
	for i := 0; i < 3; i++ {
		r := wrongLogin(t, s, users2[i].email, hdr("X-Forwarded-For", fmt.Sprintf("10.66.0.%d, 192.0.2.200", i+1)))
		expect(t, r, http.StatusUnauthorized, "invalid_credentials")
	}
	r := wrongLogin(t, s, users2[3].email, hdr("X-Forwarded-For", "10.66.0.9, 192.0.2.200"))
	checkRateLimited(t, r)
}

func TestRateLimitUnknownAccountLooksReal(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--rate-limit-login", "3/1m", "--trusted-proxies", "127.0.0.1")
	real := s.newUser(t, true)
	unknown := newEmail()
	var realResp, unkResp []*resp
	for i := 1; i <= 4; i++ {
		realResp = append(realResp, wrongLogin(t, s, real.email, hdr("X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i))))
		unkResp = append(unkResp, wrongLogin(t, s, unknown, hdr("X-Forwarded-For", fmt.Sprintf("203.0.113.%d", 100+i))))
	}
	for i := 0; i < 3; i++ {
		expect(t, realResp[i], http.StatusUnauthorized, "invalid_credentials")
		expect(t, unkResp[i], http.StatusUnauthorized, "invalid_credentials")
	}
	checkRateLimited(t, realResp[3])
	checkRateLimited(t, unkResp[3])
	for i := range realResp {
		var a, b map[string]any
		json.Unmarshal(realResp[i].Body, &a)
		json.Unmarshal(unkResp[i].Body, &b)
		if realResp[i].Status != unkResp[i].Status || !reflect.DeepEqual(a, b) {
			t.Errorf("attempt %d: real account and unknown account answer differently:\n\treal:    %s\n\tunknown: %s", i+1, realResp[i], unkResp[i])
		}
		if (realResp[i].Header.Get("Retry-After") == "") != (unkResp[i].Header.Get("Retry-After") == "") {
			t.Errorf("attempt %d: Retry-After present for one and not the other", i+1)
		}
	}
}

func TestRateLimitSignupAndRefresh(t *testing.T) {
	t.Parallel()
	t.Run("signup", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, "--rate-limit-signup", "2/1m")
		first := s.signup(t, newEmail(), newPassword(), true)
		s.signup(t, newEmail(), newPassword(), true)
		// The third signup is limited whether or not the email is taken, so
		// signup is no enumeration oracle.
		r := s.do(t, "POST", "/auth/signup", map[string]any{"email": first.email, "password": newPassword()})
		checkRateLimited(t, r)
		r = s.do(t, "POST", "/auth/signup", map[string]any{"email": newEmail(), "password": newPassword()})
		checkRateLimited(t, r)
	})
	t.Run("refresh", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, "--rate-limit-refresh", "3/1m")
		for i := 0; i < 3; i++ {
			expect(t, s.refreshWith(t, "garbage."+randHex(16)), http.StatusUnauthorized, "invalid_refresh_token")
		}
		checkRateLimited(t, s.refreshWith(t, "garbage."+randHex(16)))
	})
	t.Run("window", func(t *testing.T) {
		t.Parallel()
		// 2 per 6 s refills one attempt every 3 s: the three attempts below
		// fall inside that even when each takes a second on a loaded machine.
		s := startServer(t, "--rate-limit-login", "2/6s")
		u := s.newUser(t, true)
		expect(t, wrongLogin(t, s, u.email), http.StatusUnauthorized, "")
		expect(t, wrongLogin(t, s, u.email), http.StatusUnauthorized, "")
		checkRateLimited(t, wrongLogin(t, s, u.email))
		// After the window the limit lifts again.
		ok := eventually(10*time.Second, func() bool {
			time.Sleep(250 * time.Millisecond)
			r := s.do(t, "POST", "/auth/login", map[string]any{"email": u.email, "password": u.password})
			return r.Status == http.StatusOK
		})
		if !ok {
			t.Errorf("login still limited 10s after a 2/6s limit was hit")
		}
	})
}
