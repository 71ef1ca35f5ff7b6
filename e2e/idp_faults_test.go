package e2e

import (
	"bufio"
	"bytes"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// idpGoroutines reads go_goroutines from the server's /metrics, after
// closing the test client's idle connections (each is a goroutine of the
// server's, and not a leak).
func idpGoroutines(t *testing.T, s *server) int {
	t.Helper()
	s.tr.CloseIdleConnections()
	time.Sleep(50 * time.Millisecond)
	r := s.do(t, "GET", "/metrics", nil, hdr("Connection", "close"))
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return int(n)
			}
		}
	}
	t.Fatalf("/metrics has no go_goroutines")
	return 0
}

// idpUnavailable asserts an authorize answered with #error=unavailable.
func idpUnavailable(t *testing.T, r *resp) {
	t.Helper()
	if r.Status != http.StatusFound || !strings.HasSuffix(r.Header.Get("Location"), "#error=unavailable") {
		t.Errorf("%s: Location %q, want the redirect_to with #error=unavailable", r, r.Header.Get("Location"))
	}
	if r.Cookie(idpFlowCookie) != nil {
		t.Errorf("%s: a failed authorize set a flow cookie", r.req)
	}
}

// TestIdPFaults: a provider that is down or slow fails only its own
// sign-ins, within the timeout and without leaking goroutines; a rotated
// JWKS is fetched once for the new key.
func TestIdPFaults(t *testing.T) {
	t.Parallel()
	up, down := idpStartOP(t), idpStartOP(t)
	env := hrStart(t, "sqlite", "--idp-timeout", "1s")
	up.addTo(t, env, "up")
	down.addTo(t, env, "down")
	s := env.s

	t.Run("DownAffectsOnlyItsButton", func(t *testing.T) {
		down.down.Store(true)
		defer down.down.Store(false)
		idpUnavailable(t, idpAuthorize(t, s.newDevice(false), "down", nil))
		up.queue("sub-"+randHex(6), newEmail(), true)
		idpSignIn(t, s, "up")
		r := s.do(t, "GET", "/auth/idps", nil)
		if list, _ := r.JSON()["providers"].([]any); len(list) != 2 {
			t.Errorf("%s: both buttons stay listed", r)
		}
	})

	t.Run("SlowTimesOutWithoutLeaks", func(t *testing.T) {
		slow := idpStartOP(t)
		slow.addTo(t, env, "slow")
		before := idpGoroutines(t, s)
		slow.delay.Store(int64(4 * time.Second))
		start := time.Now()
		atOnce(12, func(int) { idpUnavailable(t, idpAuthorize(t, s.newDevice(false), "slow", nil)) })
		if took := time.Since(start); took > 3500*time.Millisecond {
			t.Errorf("authorize against a provider slower than --idp-timeout 1s took %v", took)
		}
		// While it is slow, the other provider answers as usual.
		up.queue("sub-"+randHex(6), newEmail(), true)
		idpSignIn(t, s, "up")
		// A leak would keep one or more goroutines per sign-in (12); the
		// margin is for idle connections to the other provider.
		if !eventually(10*time.Second, func() bool { return idpGoroutines(t, s) <= before+4 }) {
			t.Errorf("goroutines: %d before the slow sign-ins, %d after (leak)", before, idpGoroutines(t, s))
		}
		// Back to speed: the provider works again once the failed
		// discovery is retried.
		slow.delay.Store(0)
		ok := eventually(12*time.Second, func() bool {
			r := idpAuthorize(t, s.newDevice(false), "slow", nil)
			return r.Status == http.StatusFound && !strings.Contains(r.Header.Get("Location"), "#error=")
		})
		if !ok {
			t.Error("the provider was not tried again after it recovered")
		}

		// Slow at the token endpoint only: the callback gives up in time.
		slow.queue("sub-"+randHex(6), newEmail(), true)
		d := s.newDevice(false)
		f := idpBegin(t, d, "slow", nil)
		slow.delay.Store(int64(4 * time.Second))
		start = time.Now()
		idpRefused(t, idpCallback(t, d, f.callback), "unavailable")
		if took := time.Since(start); took > 3500*time.Millisecond {
			t.Errorf("callback against a slow token endpoint took %v", took)
		}
		slow.delay.Store(0)
	})

	t.Run("JWKSRotationFetchedOnce", func(t *testing.T) {
		rot := idpStartOP(t)
		rot.addTo(t, env, "rot")
		rot.queue("sub-"+randHex(6), newEmail(), true)
		idpSignIn(t, s, "rot")
		if n := rot.jwksHits.Load(); n != 1 {
			t.Fatalf("JWKS fetched %d times for the first sign-in, want 1", n)
		}
		idpSignIn(t, s, "rot") // cached: no fetch
		if n := rot.jwksHits.Load(); n != 1 {
			t.Errorf("JWKS fetched again for a known key (%d fetches)", n)
		}
		// The provider rotates to a new key with a new kid.
		next := idpRSAKey(t)
		oldKid, _ := rot.m.Keypair.KeyID()
		rot.setKeys(&jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &next.PublicKey, KeyID: "rotated-2", Algorithm: "RS256", Use: "sig"},
			{Key: rot.m.Keypair.PublicKey, KeyID: oldKid, Algorithm: "RS256", Use: "sig"},
		}})
		rot.setForge(func(c map[string]any) string { return idpSign(t, next, "rotated-2", c) })
		defer rot.setForge(nil)
		for range 3 {
			rot.queue("sub-"+randHex(6), newEmail(), true)
			idpSignIn(t, s, "rot")
		}
		if n := rot.jwksHits.Load(); n != 2 {
			t.Errorf("JWKS fetched %d times in all, want 2 (the new kid once)", n)
		}
	})
}

// TestIdPMultiInstance: authorize on one instance, callback on another
// (PostgreSQL + Redis): the sealed flow cookie and the stored state work
// on any instance, the state stays single use across them, and a
// login_code made on one is exchanged on the other.
func TestIdPMultiInstance(t *testing.T) {
	t.Parallel()
	cluster, _ := prodNewCluster(t)
	op := idpStartOP(t)
	a := cluster.start(t, "--redirect-allowlist", "com.example.app:/oauth")
	b := cluster.start(t, "--redirect-allowlist", "com.example.app:/oauth")
	op.addTo(t, &hrEnv{backend: "postgres", s: a, db: cluster.dbURL, key: cluster.key}, "corp")

	email := newEmail()
	op.queue("sub-"+randHex(6), email, true)
	d := a.newDevice(false)
	f := idpBegin(t, d, "corp", nil)
	cookie := d.cookie(idpFlowCookie)
	prodUse(d, b)
	u := idpSignedIn(t, d, idpCallback(t, d, f.callback))
	if u["email"] != email {
		t.Errorf("user = %v, want %s", u, email)
	}
	prodUse(d, a).refreshOK(t)

	// The same callback replayed on the first instance: spent.
	replay := a.newDevice(false)
	replay.setCookie(idpFlowCookie, cookie, "/")
	idpRefused(t, idpCallback(t, replay, f.callback), "invalid_state")

	// Body transport: the login_code of B is exchanged on A, once.
	op.queue("sub-"+randHex(6), newEmail(), true)
	n := a.newDevice(true)
	f = idpBegin(t, n, "corp", url.Values{"token_transport": {"body"}, "redirect_to": {"com.example.app:/oauth"}})
	prodUse(n, b)
	o := idpCallback(t, n, f.callback)
	code := o.fragment.Get("login_code")
	r := a.do(t, "POST", "/auth/idps/exchange", map[string]any{"login_code": code})
	if expect(t, r, http.StatusOK, "") {
		checkTokenResponse(t, r, true)
	}
	expect(t, b.do(t, "POST", "/auth/idps/exchange", map[string]any{"login_code": code}), http.StatusUnauthorized, "invalid_code")
}
