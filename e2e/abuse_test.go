package e2e

import (
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestLoginTimingDoesNotRevealAccounts is deliberately not parallel: Go runs
// it while every parallel test is paused, so the timings are not disturbed.
// An unknown email must cost a password hash like a wrong password does.
func TestLoginTimingDoesNotRevealAccounts(t *testing.T) {
	s := startServer(t)
	d := s.newUser(t, true)
	const n = 9
	unknownEmail := newEmail()
	time1 := func(email string) time.Duration {
		start := time.Now()
		r := wrongLogin(t, s, email)
		took := time.Since(start)
		expect(t, r, http.StatusUnauthorized, "invalid_credentials")
		return took
	}
	time1(d.email) // warm up
	time1(unknownEmail)
	// Interleaved, so background noise hits both series alike.
	var ws, us []time.Duration
	for i := 0; i < n; i++ {
		ws = append(ws, time1(d.email))
		us = append(us, time1(unknownEmail))
	}
	slices.Sort(ws)
	slices.Sort(us)
	wrong, unknown := ws[n/2], us[n/2]
	t.Logf("median login time: wrong password %v, unknown email %v", wrong, unknown)
	if unknown*3 < wrong || wrong*3 < unknown {
		t.Errorf("login timing reveals accounts: median wrong password %v vs unknown email %v", wrong, unknown)
	}
}

// TestLoginFlood: a burst of concurrent logins is answered (401, or 429/503
// when over capacity), never 500, and the server stays healthy.
func TestLoginFlood(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	d := s.newUser(t, true)
	const n = 60
	results := make([]*resp, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i] = wrongLogin(t, s, d.email) })
	}
	wg.Wait()
	counts := map[int]int{}
	for _, r := range results {
		counts[r.Status]++
		if r.Status != http.StatusUnauthorized && r.Status != http.StatusTooManyRequests && r.Status != http.StatusServiceUnavailable {
			t.Errorf("login flood: %s\n\twant 401, 429 or 503", r)
		}
	}
	t.Logf("login flood of %d: statuses %v", n, counts)
	expect(t, s.do(t, "GET", "/healthz", nil), http.StatusOK, "")
	s.login(t, d.email, d.password, true)
}
