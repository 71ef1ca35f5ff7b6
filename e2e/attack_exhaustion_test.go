package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestAttackLoginFlood: 200 concurrent logins against a server with one
// hashing worker and a queue of 4. Every answer is 200, 401, 429 or 503
// (never 500 or a dropped connection), the excess is refused at once
// (hashing is bounded: some 503s, and they come fast), and the server's
// resident memory stays under 256 MB throughout.
func TestAttackLoginFlood(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--hash-workers", "1", "--hash-queue", "4")
	u := s.newUser(t, true)
	pid := atkPid(s)

	var maxRSS atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if rss, err := atkRSS(pid); err == nil && rss > maxRSS.Load() {
				maxRSS.Store(rss)
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()

	const n = 200
	type result struct {
		status int
		took   time.Duration
		err    error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	// Its own transport: 200 connections at once, not the harness's pool.
	client := &http.Client{Timeout: 60 * time.Second, Transport: validated(t, &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: n})}
	defer client.CloseIdleConnections()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var body map[string]any
			switch i % 3 {
			case 0:
				body = map[string]any{"email": u.email, "password": u.password}
			case 1:
				body = map[string]any{"email": u.email, "password": "wrong-" + randHex(4)}
			default:
				body = map[string]any{"email": fmt.Sprintf("flood%d@example.com", i), "password": "wrong-" + randHex(4)}
			}
			b, _ := json.Marshal(body)
			<-start
			t0 := time.Now()
			req, _ := http.NewRequest("POST", s.base+"/auth/login", atkBytesReader(b))
			req.Header.Set("Content-Type", "application/json")
			res, err := client.Do(req)
			r := result{took: time.Since(t0), err: err}
			if err == nil {
				r.status = res.StatusCode
				res.Body.Close()
			}
			results[i] = r
		}(i)
	}
	close(start)
	wg.Wait()
	close(stop)
	<-sampled

	counts := map[int]int{}
	var slow503 int
	var maxTook time.Duration
	for i, r := range results {
		if r.err != nil {
			t.Errorf("login %d: %v", i, r.err)
			continue
		}
		counts[r.status]++
		switch r.status {
		case http.StatusOK, http.StatusUnauthorized, http.StatusTooManyRequests, http.StatusServiceUnavailable:
		default:
			t.Errorf("login %d: status %d, want 200/401/429/503", i, r.status)
		}
		if r.status == http.StatusServiceUnavailable && r.took > 2*time.Second {
			slow503++
		}
		maxTook = max(maxTook, r.took)
	}
	t.Logf("flood: statuses %v, slowest %v, max RSS %d MB", counts, maxTook, maxRSS.Load()>>20)
	if counts[http.StatusServiceUnavailable]+counts[http.StatusTooManyRequests] == 0 {
		t.Errorf("200 concurrent logins with 1 worker and a queue of 4 were all admitted: hashing is not bounded")
	}
	if slow503 > 0 {
		t.Errorf("%d refusals took over 2s: excess logins must be refused at once, not queued", slow503)
	}
	if maxTook > 30*time.Second {
		t.Errorf("slowest login took %v", maxTook)
	}
	if rss := maxRSS.Load(); rss > 256<<20 {
		t.Errorf("server RSS reached %d MB during the flood, want under 256 MB", rss>>20)
	}
	// The server is still healthy and serves the real user.
	r := s.do(t, "POST", "/auth/login", map[string]any{"email": u.email, "password": u.password})
	expect(t, r, http.StatusOK, "")
}

// TestAttackAccountLimitConcurrent: the per-account failure limit holds
// against guesses fired all at once from many addresses: with a limit of
// 5/1m, 40 concurrent wrong passwords from 40 clients get at most 5
// password checks (401); the rest are 429 (or 503 when the hash queue is
// full), never more guesses than the limit.
func TestAttackAccountLimitConcurrent(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--trusted-proxies", "127.0.0.1", "--rate-limit-login", "5/1m")
	u := s.newUser(t, true)
	const n = 40
	var mu sync.Mutex
	counts := map[int]int{}
	atOnce(n, func(i int) {
		b, _ := json.Marshal(map[string]any{"email": u.email, "password": "guess-" + randHex(4)})
		st, _, _, err := atkRaw(s, "POST", "/auth/login", b, map[string]string{"X-Forwarded-For": fmt.Sprintf("203.0.113.%d", i+1)})
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			t.Errorf("login: %v", err)
			return
		}
		counts[st]++
	})
	t.Logf("concurrent guesses: %v", counts)
	for st := range counts {
		if st != http.StatusUnauthorized && st != http.StatusTooManyRequests && st != http.StatusServiceUnavailable {
			t.Errorf("unexpected status %d", st)
		}
	}
	if counts[http.StatusUnauthorized] > 5 {
		t.Errorf("%d concurrent guesses were checked against the password (401) with a per-account limit of 5/1m", counts[http.StatusUnauthorized])
	}
}

func atkBytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// TestAttackPasswordChangeLimitConcurrent: a stolen access token cannot
// brute-force the current password through POST /auth/password by firing
// guesses at once: with a limit of 5/1m at most 5 are checked (401).
func TestAttackPasswordChangeLimitConcurrent(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--rate-limit-login", "5/1m")
	u := s.newUser(t, true)
	const n = 30
	var mu sync.Mutex
	counts := map[int]int{}
	atOnce(n, func(int) {
		b, _ := json.Marshal(map[string]any{"current_password": "guess-" + randHex(4), "new_password": newPassword()})
		st, _, _, err := atkRaw(s, "POST", "/auth/password", b, map[string]string{"Authorization": "Bearer " + u.Access()})
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			t.Errorf("password change: %v", err)
			return
		}
		counts[st]++
	})
	t.Logf("concurrent current-password guesses: %v", counts)
	for st := range counts {
		if st != http.StatusUnauthorized && st != http.StatusTooManyRequests && st != http.StatusServiceUnavailable {
			t.Errorf("unexpected status %d", st)
		}
	}
	if counts[http.StatusUnauthorized] > 5 {
		t.Errorf("%d concurrent current-password guesses were checked with a limit of 5/1m", counts[http.StatusUnauthorized])
	}
	// The account still works with its real password.
	u.assertAlive(t, "after the guesses")
}
