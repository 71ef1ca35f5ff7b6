package e2e

// The life of a signing key across `gatehouse keys rotate`: when a new key
// is published, when it starts signing, and when the old one stops being
// accepted (issue 10, items 7 and 15).

import (
	"encoding/base64"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// keysRotate runs `gatehouse keys rotate` against s's database (started by
// atkStartServer, so with the master key the test knows).
func keysRotate(t *testing.T, s *server) {
	t.Helper()
	res := runCLI(t, "", nil, "keys", "rotate", "--database", "sqlite:"+s.dbPath,
		"--master-key", base64.StdEncoding.EncodeToString(atkMasterKey))
	if res.code != 0 {
		t.Fatalf("gatehouse keys rotate: exit %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
}

// jwksKids fetches the JWKS and returns it with its kids.
func jwksKids(t *testing.T, s *server) (jose.JSONWebKeySet, map[string]bool) {
	t.Helper()
	set, _ := fetchJWKS(t, s)
	kids := map[string]bool{}
	for _, k := range set.Keys {
		kids[k.KeyID] = true
	}
	return set, kids
}

// A key removed from the JWKS by a rotation is refused from that moment,
// even for a token whose exp lies far ahead. A token the server signed
// itself cannot show this: it expires (iat+TTL, iat before the new key
// signs) before the old key retires (TTL+leeway after the new key signs),
// unless --access-ttl was lowered across a restart.
// So the test plays an attacker who leaked the old private key and signs
// an admin token with it, valid for an hour.
func TestKeysRetiredKeyRefused(t *testing.T) {
	t.Parallel()
	// A short access TTL and pre-publication delay bring retirement close:
	// TTL + 30 s leeway after the new key starts signing.
	s := atkStartServer(t, "--access-ttl", "2s", "--key-publish-ahead", "2s")
	adminID, admin := s.makeAdmin(t)
	_, claims := decodeJWT(t, admin.Access())
	oldKid, sign := atkServerKey(t, s, "EdDSA")

	forge := func() string {
		now := time.Now()
		return atkJWT(
			atkJSON(t, map[string]any{"alg": "EdDSA", "typ": "at+jwt", "kid": oldKid}),
			atkJSON(t, map[string]any{
				"iss": claims["iss"], "aud": claims["aud"], "sub": adminID, "sid": claims["sid"],
				"jti": "forged-" + randHex(8), "role": "admin",
				"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			}), sign)
	}
	accepted := func(label, tok string) {
		t.Helper()
		expect(t, s.meWith(t, tok), http.StatusOK, "")
		if r := s.do(t, "GET", "/admin/users", nil, bearer(tok)); !expect(t, r, http.StatusOK, "") {
			t.Errorf("  ^ %s", label)
		}
	}
	// While the key is current, whoever holds it can sign: that is the
	// premise of the attack, and proof that the forged token is well made.
	early := forge()
	accepted("forged with the current key", early)

	keysRotate(t, s)
	// The server picks up the new key (its reload runs every few seconds);
	// until retirement the old key still verifies, and the token enters
	// the server's cache of verified tokens under the new key set.
	if !eventually(20*time.Second, func() bool {
		_, kids := jwksKids(t, s)
		return len(kids) == 2 && kids[oldKid]
	}) {
		t.Fatal("the running server did not publish the rotated key within 20s")
	}
	accepted("forged with the old key before its retirement", early)

	// Retirement: the old key leaves the JWKS, and from then on nothing
	// it signs verifies.
	if !eventually(90*time.Second, func() bool {
		_, kids := jwksKids(t, s)
		return !kids[oldKid]
	}) {
		t.Fatalf("the old key %s is still in the JWKS 90s after rotation with --access-ttl 2s", oldKid)
	}
	atkExpectInvalidToken(t, s, "cached token of the retired key", early)
	atkExpectInvalidToken(t, s, "new token of the retired key", forge())

	s.Restart()
	atkExpectInvalidToken(t, s, "token of the retired key after restart", early)
	atkExpectInvalidToken(t, s, "new token of the retired key after restart", forge())
	if _, kids := jwksKids(t, s); kids[oldKid] || len(kids) != 1 {
		t.Errorf("JWKS after restart lists %v; want only the new key", kids)
	}
	// The new key works as before.
	admin.refreshOK(t)
	expect(t, admin.me(t), http.StatusOK, "")
}

// After `keys rotate` the new key is in the JWKS at once, but tokens stay
// signed by the old key until the pre-publication delay has passed: a
// resource server that cached the JWKS in between verifies the first
// tokens of the new key without a refetch (issue 10, item 15).
func TestKeysPublishedBeforeSigning(t *testing.T) {
	t.Parallel()
	// Longer than the server's key reload (5 s), so the JWKS shows the new
	// key well before it signs.
	const ahead = 10 * time.Second
	s := atkStartServer(t, "--key-publish-ahead", ahead.String())
	d := s.newUser(t, true)
	oldHeader, _ := decodeJWT(t, d.Access())
	oldKid := stringOf(oldHeader["kid"])

	rotStart := time.Now()
	keysRotate(t, s)
	// The key's created_at lies after rotStart, so it signs no earlier than
	// rotStart+ahead; iat, by which the server picks the key, is rounded up
	// to the second, hence the second of margin.
	earliest := rotStart.Add(ahead - time.Second)

	var cached jose.JSONWebKeySet
	var newKid string
	if !eventually(ahead, func() bool {
		set, kids := jwksKids(t, s)
		if len(kids) != 2 || !kids[oldKid] {
			return false
		}
		cached = set
		for kid := range kids {
			if kid != oldKid {
				newKid = kid
			}
		}
		return true
	}) {
		t.Fatalf("the new key is not in the JWKS %v after `keys rotate`", ahead)
	}
	// Published, not yet signing.
	d.refreshOK(t)
	if time.Now().Before(earliest) {
		if h, _ := decodeJWT(t, d.Access()); h["kid"] != oldKid {
			t.Errorf("token issued %v after `keys rotate` (delay %v) signed by %v; want the old key %s until the delay passes",
				time.Since(rotStart).Round(time.Millisecond), ahead, h["kid"], oldKid)
		}
	} else {
		t.Logf("the JWKS showed the new key only %v after `keys rotate`; not checking the old key still signs", time.Since(rotStart))
	}

	// Then the new key takes over, not before the delay.
	deadline := time.Now().Add(ahead + 15*time.Second)
	for {
		d.refreshOK(t)
		received := time.Now()
		h, _ := decodeJWT(t, d.Access())
		if h["kid"] == newKid {
			if received.Before(earliest) {
				t.Errorf("the new key signed %v after `keys rotate`; want not before the %v delay", received.Sub(rotStart), ahead)
			}
			break
		}
		if h["kid"] != oldKid {
			t.Fatalf("token signed by %v, neither the old key %s nor the new %s", h["kid"], oldKid, newKid)
		}
		if received.After(deadline) {
			t.Fatalf("tokens still signed by the old key %v after `keys rotate` (delay %v)", received.Sub(rotStart), ahead)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A resource server that fetched the JWKS before the switch verifies
	// the new key's tokens from its cache.
	verifyOffline(t, d.Access(), cached)
	expect(t, d.me(t), http.StatusOK, "")

	// The choice comes from the stored keys and the clock: after a restart
	// the new key signs, and the old one is still published for the
	// tokens it signed.
	s.Restart()
	d.refreshOK(t)
	if h, _ := decodeJWT(t, d.Access()); h["kid"] != newKid {
		t.Errorf("after restart, tokens signed by %v; want the new key %s", h["kid"], newKid)
	}
	if _, kids := jwksKids(t, s); !kids[oldKid] || !kids[newKid] {
		t.Errorf("JWKS after restart = %v; want the old and the new key", kids)
	}
}

// The default delay outlasts the JWKS cache lifetime the server announces.
func TestKeysDefaultPublishAheadExceedsJWKSCache(t *testing.T) {
	t.Parallel()
	help := runCLI(t, "", nil, "serve", "--help")
	m := regexp.MustCompile(`-key-publish-ahead duration\s*\n?[^\n]*\(default ([^)]+)\)`).FindStringSubmatch(help.stdout)
	if help.code != 0 || m == nil {
		t.Fatalf("gatehouse serve --help (exit %d) shows no default for --key-publish-ahead:\n%s%s", help.code, help.stdout, help.stderr)
	}
	def, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatalf("default of --key-publish-ahead %q: %v", m[1], err)
	}
	s := startServer(t)
	r := s.do(t, "GET", "/.well-known/jwks.json", nil)
	maxAge := -1
	for _, part := range strings.Split(r.Header.Get("Cache-Control"), ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "max-age="); ok {
			maxAge, _ = strconv.Atoi(v)
		}
	}
	if maxAge < 0 {
		t.Fatalf("JWKS Cache-Control %q has no max-age", r.Header.Get("Cache-Control"))
	}
	if def <= time.Duration(maxAge)*time.Second {
		t.Errorf("default --key-publish-ahead %v does not exceed the JWKS max-age %ds", def, maxAge)
	}
}

// The delay is a flag and a GATEHOUSE_* variable like every setting, and a
// bad value stops the server with one line on stderr.
func TestKeysPublishAheadConfig(t *testing.T) {
	t.Parallel()
	db := "sqlite:" + t.TempDir() + "/gh.db"
	for _, c := range []struct {
		env  []string
		args []string
	}{
		{nil, []string{"--key-publish-ahead", "-1s"}},
		{[]string{"GATEHOUSE_KEY_PUBLISH_AHEAD=-1s"}, nil},
		{[]string{"GATEHOUSE_KEY_PUBLISH_AHEAD=soon"}, nil},
	} {
		args := append([]string{"serve", "--addr", "127.0.0.1:0", "--database", db}, c.args...)
		res := runCLI(t, "", c.env, args...)
		lines := strings.Split(strings.TrimSpace(res.stderr), "\n")
		names := strings.Contains(lines[0], "--key-publish-ahead") || strings.Contains(lines[0], "GATEHOUSE_KEY_PUBLISH_AHEAD")
		if res.code == 0 || len(lines) != 1 || !names {
			t.Errorf("serve %v %v: exit %d, stderr %q; want non-zero and one line naming the setting", c.env, c.args, res.code, res.stderr)
		}
	}
}
