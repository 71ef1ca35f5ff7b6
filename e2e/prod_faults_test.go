package e2e

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestProdRedisOutage: Redis goes away under two instances and comes back
// (issue 4, acceptance 3; API.md "Redis lost while the database is up").
func TestProdRedisOutage(t *testing.T) {
	t.Parallel()
	c, rd := prodNewCluster(t)
	a := c.start(t, "--rate-limit-login", "3/1m")
	b := c.start(t, "--rate-limit-login", "3/1m")
	for _, s := range []*server{a, b} {
		if _, r := prodUntilStatus(t, s, 5*time.Second, http.StatusOK, "/readyz"); r.Status != http.StatusOK {
			t.Fatalf("before the outage: %s\n\twant 200", r)
		}
	}
	before := a.newUser(t, true)

	rd.Kill()
	for i, s := range []*server{a, b} {
		took, r := prodUntilStatus(t, s, 10*time.Second, http.StatusServiceUnavailable, "/readyz")
		if !expect(t, r, http.StatusServiceUnavailable, "") {
			t.Fatalf("instance %d: /readyz still %d %v after Redis died", i, r.Status, took)
		}
		t.Logf("instance %d: /readyz 503 %v after Redis was killed", i, took.Round(time.Millisecond))
		expect(t, s.do(t, "GET", "/healthz", nil), http.StatusOK, "")
	}

	// The service keeps working on both instances.
	u := a.newUser(t, true)
	prodUse(u, b)
	u.refreshOK(t)
	expect(t, a.meWith(t, u.Access()), http.StatusOK, "")
	before.refreshOK(t)
	expect(t, b.meWith(t, before.Access()), http.StatusOK, "")
	l := prodLogin(t, b, u.email, u.password, false)
	l.refreshOK(t)
	expect(t, a.meWith(t, l.Access()), http.StatusOK, "")

	// Rate limits still apply, in process (per instance while Redis is gone).
	// Each check uses an account and a client IP of its own: a login spends
	// the budgets of both.
	var lim *device
	ip := ""
	login := func(s *server) *resp {
		return s.do(t, "POST", "/auth/login", map[string]any{"email": lim.email, "password": lim.password, "token_transport": "body"},
			hdr("X-Forwarded-For", ip))
	}
	lim, ip = a.newUser(t, true), prodIP()
	for i := 1; i <= 3; i++ {
		if r := login(a); r.Status != http.StatusOK {
			t.Fatalf("login %d of 3 through A without Redis: %s", i, r)
		}
	}
	checkRateLimited(t, login(a))

	// Revocations reach the other instance through the database poll.
	// (First give A's subscription a moment to notice the dead connection,
	// which its /readyz detail reports; until then a publish may still be
	// tried and time out.)
	prodUntil(3*time.Second, func() bool {
		return strings.Contains(a.do(t, "GET", "/readyz", nil).String(), "redis subscription down")
	})
	x := a.newUser(t, true)
	expect(t, b.meWith(t, x.Access()), http.StatusOK, "")
	logoutStart := time.Now()
	expect(t, a.do(t, "POST", "/auth/logout", nil, bearer(x.Access())), http.StatusNoContent, "")
	logoutTook := time.Since(logoutStart)
	t.Logf("logout on A without Redis answered in %v", logoutTook.Round(time.Millisecond))
	// A dead Redis must not hold up revoking requests (it used to cost each
	// one the full 1 s publish timeout).
	if logoutTook > 500*time.Millisecond {
		t.Errorf("logout on A took %v with Redis down, want < 500ms", logoutTook)
	}
	prodAwaitRevoked(t, "logout on A without Redis", b, x.Access(), 3*time.Second)
	y := b.newUser(t, true)
	y2 := prodLogin(t, b, y.email, y.password, true)
	expect(t, a.meWith(t, y2.Access()), http.StatusOK, "")
	expect(t, b.do(t, "DELETE", "/auth/sessions/"+y2.sid, nil, bearer(y.Access())), http.StatusNoContent, "")
	prodAwaitRevoked(t, "session delete on B without Redis", a, y2.Access(), 3*time.Second)

	// Redis comes back (empty) on the same port: readiness recovers without
	// a restart and revocations travel by pub/sub again.
	rd.Start()
	for i, s := range []*server{a, b} {
		took, r := prodUntilStatus(t, s, 15*time.Second, http.StatusOK, "/readyz")
		if !expect(t, r, http.StatusOK, "") {
			t.Fatalf("instance %d: /readyz did not recover within %v of Redis coming back", i, took)
		}
		t.Logf("instance %d: /readyz 200 %v after Redis came back", i, took.Round(time.Millisecond))
	}
	var worst time.Duration
	for i := range 3 {
		z := a.newUser(t, true)
		expect(t, b.meWith(t, z.Access()), http.StatusOK, "")
		from, to := a, b
		if i%2 == 1 {
			from, to = b, a
		}
		expect(t, from.do(t, "POST", "/auth/logout", nil, bearer(z.Access())), http.StatusNoContent, "")
		// The poll alone takes up to a second; pub/sub takes milliseconds.
		worst = max(worst, prodAwaitRevoked(t, "logout after Redis came back", to, z.Access(), time.Second))
	}
	if worst >= 500*time.Millisecond {
		t.Errorf("slowest revocation after Redis came back took %v; pub/sub takes milliseconds, the poll up to 1 s", worst)
	}
	// And rate limits are shared again: three through A, the fourth through B.
	lim, ip = a.newUser(t, true), prodIP()
	for i := 1; i <= 3; i++ {
		if r := login(a); r.Status != http.StatusOK {
			t.Fatalf("login %d through A after Redis came back: %s", i, r)
		}
	}
	checkRateLimited(t, login(b))
}

// TestProdRevocationSurvivesRestarts: nothing revoked comes back after a
// Redis restart (Redis keeps nothing), after restarting both instances, or
// after restarting them while Redis is down.
func TestProdRevocationSurvivesRestarts(t *testing.T) {
	t.Parallel()
	c, rd := prodNewCluster(t)
	a := c.start(t)
	b := c.start(t)

	u := a.newUser(t, true)
	loggedOut := prodLogin(t, a, u.email, u.password, true)
	deleted := prodLogin(t, b, u.email, u.password, true)
	reused := prodLogin(t, a, u.email, u.password, true)
	live := prodLogin(t, b, u.email, u.password, true)
	g := b.newUser(t, true)
	g2 := prodLogin(t, a, g.email, g.password, false)
	p := a.newUser(t, true)
	pOther := prodLogin(t, b, p.email, p.password, true)

	expect(t, a.do(t, "POST", "/auth/logout", nil, bearer(loggedOut.Access())), http.StatusNoContent, "")
	expect(t, b.do(t, "DELETE", "/auth/sessions/"+deleted.sid, nil, bearer(u.Access())), http.StatusNoContent, "")
	rt0 := reused.Refresh()
	reused.refreshOK(t)
	reused.refreshOK(t) // rt0 is now two generations old: reuse, not grace
	expect(t, a.refreshWith(t, rt0), http.StatusUnauthorized, "refresh_token_reused")
	expect(t, b.do(t, "POST", "/auth/logout?scope=global", nil, bearer(g.Access())), http.StatusNoContent, "")
	expect(t, a.do(t, "POST", "/auth/password", map[string]any{"current_password": p.password, "new_password": newPassword()},
		bearer(p.Access())), http.StatusNoContent, "")

	dead := map[string]*device{
		"locally logged out": loggedOut, "deleted": deleted, "reuse-killed": reused,
		"global logout (caller)": g, "global logout (other)": g2, "other session after password change": pOther,
	}
	alive := map[string]*device{"untouched session": live, "the revoking session": u, "password changer": p}
	check := func(phase string) {
		t.Helper()
		for _, s := range []*server{a, b} {
			for name, d := range dead {
				if r := s.meWith(t, d.Access()); !expect(t, r, http.StatusUnauthorized, "invalid_token") {
					t.Errorf("%s: %s: access token accepted again on %s", phase, name, s.base)
				}
				if r := s.refreshWith(t, d.Refresh()); r.Status != http.StatusUnauthorized {
					t.Errorf("%s: %s: refresh token on %s: %s\n\twant 401", phase, name, s.base, r)
				}
			}
			for name, d := range alive {
				if r := s.meWith(t, d.Access()); r.Status != http.StatusOK {
					t.Errorf("%s: %s: %s\n\twant 200", phase, name, r)
				}
			}
		}
		for _, d := range alive {
			prodUse(d, b)
			d.refreshOK(t)
		}
	}
	for name, d := range dead {
		for _, s := range []*server{a, b} {
			prodAwaitRevoked(t, name, s, d.Access(), time.Second)
		}
	}
	check("before any restart")

	rd.Kill()
	rd.Start()
	for _, s := range []*server{a, b} {
		if _, r := prodUntilStatus(t, s, 15*time.Second, http.StatusOK, "/readyz"); r.Status != http.StatusOK {
			t.Errorf("after Redis restart: %s\n\twant 200", r)
		}
	}
	check("after a Redis restart")

	for _, s := range []*server{a, b} {
		if code := s.Stop(); code != 0 {
			t.Errorf("instance exited %d on SIGTERM", code)
		}
	}
	a.Start()
	b.Start()
	check("after restarting both instances")

	// Both instances restarted while Redis is down: the state comes from the
	// database alone.
	rd.Kill()
	for _, s := range []*server{a, b} {
		if code := s.Stop(); code != 0 {
			t.Errorf("instance exited %d on SIGTERM", code)
		}
	}
	a.Start()
	b.Start()
	check("after restarting both instances with Redis down")
	rd.Start()
}

// TestProdDatabaseOutage: the database goes away (a proxy drops every
// connection and refuses new ones) and comes back.
func TestProdDatabaseOutage(t *testing.T) {
	t.Parallel()
	env := prodRequire(t)
	db := prodNewDatabase(t, env)
	rd := prodStartRedis(t)
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	proxy := prodNewProxy(t, u.Host)
	c := prodCluster{dbURL: prodWithHost(t, db, proxy.Addr()), redisURL: rd.URL(), key: prodMasterKey()}
	closed := c.start(t)
	open := c.start(t, "--fail-open")

	d := closed.newUser(t, true)
	cookie := prodLogin(t, closed, d.email, d.password, false)
	revoked := prodLogin(t, closed, d.email, d.password, true)
	expect(t, closed.do(t, "POST", "/auth/logout", nil, bearer(revoked.Access())), http.StatusNoContent, "")
	prodAwaitRevoked(t, "logout before the outage", open, revoked.Access(), time.Second)
	// Access tokens are stamped up to a second ahead (iat rounds up), and
	// the user cache serves a user only to tokens issued before it was
	// read: wait past d's iat so this read is the one the outage relies on.
	time.Sleep(1100 * time.Millisecond)
	expect(t, open.meWith(t, d.Access()), http.StatusOK, "")

	proxy.SetDown(true)
	downAt := time.Now()
	for _, s := range []*server{closed, open} {
		took, r := prodUntilStatus(t, s, 10*time.Second, http.StatusServiceUnavailable, "/readyz")
		expect(t, r, http.StatusServiceUnavailable, "")
		t.Logf("%s: /readyz 503 %v after the database went away", s.base, took.Round(time.Millisecond))
		// Six seconds in, the revocation poll has failed too; its driver
		// error must stay in the logs, not reach the answer.
		if _, stale := prodUntil(8*time.Second, func() bool {
			return strings.Contains(s.do(t, "GET", "/readyz", nil).String(), "revocation state not current")
		}); stale {
			if body := s.do(t, "GET", "/readyz", nil).String(); strings.Contains(body, "dial") || strings.Contains(body, "postgres") || strings.Contains(body, "127.0.0.1") {
				t.Errorf("/readyz leaks driver details: %s", body)
			}
		} else {
			t.Errorf("/readyz never reported the stale revocation state")
		}
	}
	for _, s := range []*server{closed, open} {
		loginReq := func() *resp {
			return s.do(t, "POST", "/auth/login", map[string]any{"email": d.email, "password": d.password})
		}
		var r *resp
		prodUntil(10*time.Second, func() bool { r = loginReq(); return r.Status != http.StatusOK })
		expect(t, r, http.StatusServiceUnavailable, "unavailable")
		expect(t, loginReq(), http.StatusServiceUnavailable, "unavailable")
		expect(t, s.refreshWith(t, d.Refresh()), http.StatusServiceUnavailable, "unavailable")
		expect(t, s.do(t, "POST", "/auth/refresh", nil, hdr("Cookie", cookie.cookieHeader("/auth")), cookie.csrf()),
			http.StatusServiceUnavailable, "unavailable")
		expect(t, s.do(t, "POST", "/auth/signup", map[string]any{"email": newEmail(), "password": newPassword()}),
			http.StatusServiceUnavailable, "unavailable")
		expect(t, s.do(t, "GET", "/healthz", nil), http.StatusOK, "")
		// A token known to be revoked stays refused, even on stale state.
		expect(t, s.meWith(t, revoked.Access()), http.StatusUnauthorized, "invalid_token")
	}
	// Protected endpoints fail closed once the cached revocation state is
	// older than the bound (5 s).
	_, r := prodUntilStatus(t, closed, 12*time.Second, http.StatusServiceUnavailable, "/auth/me", bearer(d.Access()))
	expect(t, r, http.StatusServiceUnavailable, "unavailable")
	t.Logf("fail-closed instance: /auth/me 503 %v after the database went away", time.Since(downAt).Round(time.Millisecond))
	// The fail-open instance keeps serving what it can without the
	// database: the token verifies offline, the revocation state is trusted
	// as configured, and the user was read before the outage.
	r = open.meWith(t, d.Access())
	t.Logf("fail-open instance during the outage: %s", r)
	expect(t, r, http.StatusOK, "")
	for _, s := range []*server{closed, open} {
		if !s.running() {
			t.Fatalf("%s exited during the database outage", s.base)
		}
	}

	proxy.SetDown(false)
	upAt := time.Now()
	for _, s := range []*server{closed, open} {
		var lr *resp
		_, ok := prodUntil(15*time.Second, func() bool {
			lr = s.do(t, "POST", "/auth/login", map[string]any{"email": d.email, "password": d.password, "token_transport": "body"},
				hdr("X-Forwarded-For", prodIP()))
			return lr.Status == http.StatusOK
		})
		if !ok {
			t.Fatalf("%s: login did not recover after the database came back: %s", s.base, lr)
		}
		t.Logf("%s: login works again %v after the database came back", s.base, time.Since(upAt).Round(time.Millisecond))
		if took, r := prodUntilStatus(t, s, 10*time.Second, http.StatusOK, "/readyz"); r.Status != http.StatusOK {
			t.Errorf("%s: /readyz did not recover within %v: %s", s.base, took, r)
		}
		expect(t, s.meWith(t, d.Access()), http.StatusOK, "")
		expect(t, s.meWith(t, revoked.Access()), http.StatusUnauthorized, "invalid_token")
	}
	// The refreshes refused during the outage consumed nothing.
	d.refreshOK(t)
	cookie.refreshOK(t)
}

// TestProdFailOpenVsClosed: the revocation log alone cannot be read (its
// table is locked) while the rest of the database answers. A fail-closed
// instance refuses protected requests once its state is stale; an instance
// with --fail-open keeps serving them, still refusing known revocations.
func TestProdFailOpenVsClosed(t *testing.T) {
	t.Parallel()
	c, _ := prodNewCluster(t)
	closed := c.start(t)
	open := c.start(t, "--fail-open")
	d := closed.newUser(t, true)
	revoked := prodLogin(t, closed, d.email, d.password, true)
	expect(t, closed.do(t, "POST", "/auth/logout", nil, bearer(revoked.Access())), http.StatusNoContent, "")
	prodAwaitRevoked(t, "logout", open, revoked.Access(), time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE revocations IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	lockedAt := time.Now()
	took, r := prodUntilStatus(t, closed, 15*time.Second, http.StatusServiceUnavailable, "/auth/me", bearer(d.Access()))
	expect(t, r, http.StatusServiceUnavailable, "unavailable")
	t.Logf("fail-closed: /auth/me 503 %v after the revocation log became unreadable", took.Round(time.Millisecond))
	expect(t, closed.do(t, "GET", "/readyz", nil), http.StatusServiceUnavailable, "")
	expect(t, closed.meWith(t, revoked.Access()), http.StatusUnauthorized, "invalid_token")
	for range 3 {
		expect(t, open.meWith(t, d.Access()), http.StatusOK, "")
		expect(t, open.meWith(t, revoked.Access()), http.StatusUnauthorized, "invalid_token")
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("fail-open: /auth/me still 200 %v after the revocation log became unreadable", time.Since(lockedAt).Round(time.Millisecond))
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	took, r = prodUntilStatus(t, closed, 10*time.Second, http.StatusOK, "/auth/me", bearer(d.Access()))
	expect(t, r, http.StatusOK, "")
	t.Logf("fail-closed: /auth/me 200 again %v after the lock was released", took.Round(time.Millisecond))
}
