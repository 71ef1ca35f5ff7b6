package token

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

type jwksDoc struct {
	Keys []map[string]any `json:"keys"`
}

func parseJWKS(t *testing.T, k *Keys, now time.Time) (kids []string, doc jwksDoc) {
	t.Helper()
	b, err := k.JWKS(now)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("JWKS %s: %v", b, err)
	}
	if doc.Keys == nil {
		t.Fatalf("JWKS %s: keys must be an array", b)
	}
	// go-jose must be able to use it as a key set.
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	for _, key := range doc.Keys {
		kids = append(kids, key["kid"].(string))
	}
	return kids, doc
}

func TestNewKeysConfig(t *testing.T) {
	good := testConfig("")
	if k, err := NewKeys(&memStore{}, good); err != nil || k.cfg.Algorithm != AlgEdDSA {
		t.Fatalf("default algorithm: %v", err)
	}
	bad := map[string]func(*Config){
		"algorithm":   func(c *Config) { c.Algorithm = "RS256" },
		"alg none":    func(c *Config) { c.Algorithm = "none" },
		"no issuer":   func(c *Config) { c.Issuer = "" },
		"no audience": func(c *Config) { c.Audience = "" },
		"ttl":         func(c *Config) { c.TTL = 0 },
		"leeway":      func(c *Config) { c.Leeway = 61 * time.Second },
		"neg leeway":  func(c *Config) { c.Leeway = -time.Second },
		"seal key":    func(c *Config) { c.SealKey = make([]byte, 16) },
		"neg ahead":   func(c *Config) { c.PublishAhead = -time.Second },
	}
	for name, mutate := range bad {
		c := testConfig(AlgEdDSA)
		mutate(&c)
		if _, err := NewKeys(&memStore{}, c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewKeys(nil, good); err == nil {
		t.Error("nil store accepted")
	}
}

func TestLoadCreatesOnceAndSharesKeys(t *testing.T) {
	for _, alg := range allAlgs {
		t.Run(alg, func(t *testing.T) {
			store := &memStore{}
			a := newTestKeys(t, alg, store)
			if len(store.keys) != 1 || store.keys[0].Algorithm != alg || !store.keys[0].CreatedAt.Equal(t0) {
				t.Fatalf("store after first Load: %+v", store.keys)
			}
			if err := a.Load(context.Background(), t0.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			b := newTestKeys(t, alg, store)
			if len(store.keys) != 1 {
				t.Fatalf("Load created a key although one existed: %d keys", len(store.keys))
			}
			if signerKID(t, a) != signerKID(t, b) {
				t.Fatal("instances sign with different keys")
			}
			// b (which unsealed from the store) verifies a's tokens and
			// a verifies b's: the keys round-trip through sealing.
			if _, err := b.Verify(context.Background(), mustSign(t, a, testClaims()), t0); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Verify(context.Background(), mustSign(t, b, testClaims()), t0); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	store := &memStore{}
	newTestKeys(t, AlgEdDSA, store)

	c := testConfig(AlgEdDSA)
	c.SealKey = bytes.Repeat([]byte{7}, 32)
	wrong, _ := NewKeys(store, c)
	if err := wrong.Load(context.Background(), t0); err == nil {
		t.Fatal("Load with the wrong seal key succeeded")
	}

	// An edited algorithm column (EdDSA seed reused as an HMAC key) fails to open.
	store.keys[0].Algorithm = AlgHS256
	if err := newKeysNoLoad(t, store).Load(context.Background(), t0); err == nil {
		t.Fatal("Load of a key with a tampered algorithm succeeded")
	}
	store.keys[0].Algorithm = AlgEdDSA

	store.keys[0].Sealed[len(store.keys[0].Sealed)-1] ^= 1
	if err := newKeysNoLoad(t, store).Load(context.Background(), t0); err == nil {
		t.Fatal("Load of a tampered sealed key succeeded")
	}

	failing := &memStore{fail: errors.New("db down")}
	if err := newKeysNoLoad(t, failing).Load(context.Background(), t0); err == nil {
		t.Fatal("Load on a failing store succeeded")
	}
	k := newKeysNoLoad(t, &memStore{})
	if _, err := k.Rotate(context.Background(), t0); err == nil {
		t.Fatal("Rotate before Load succeeded")
	}
	if _, err := k.JWKS(t0); err == nil {
		t.Fatal("JWKS before Load succeeded")
	}
}

func newKeysNoLoad(t *testing.T, store *memStore) *Keys {
	t.Helper()
	k, err := NewKeys(store, testConfig(AlgEdDSA))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealedKeyHidesPrivateKey(t *testing.T) {
	for _, alg := range allAlgs {
		t.Run(alg, func(t *testing.T) {
			store := &memStore{}
			k := newTestKeys(t, alg, store)
			sk := store.keys[0]
			_, priv := privateKey(t, k, store, sk.ID)
			var secrets [][]byte
			switch p := priv.(type) {
			case ed25519.PrivateKey:
				secrets = [][]byte{p.Seed(), p}
			case *ecdsa.PrivateKey:
				d, _ := p.Bytes()
				secrets = [][]byte{d}
			case []byte:
				secrets = [][]byte{p}
			}
			for _, s := range secrets {
				// Any 8-byte window of the key would be a leak.
				for i := 0; i+8 <= len(s); i++ {
					if bytes.Contains(sk.Sealed, s[i:i+8]) {
						t.Fatalf("sealed bytes contain private key bytes %d..%d", i, i+8)
					}
				}
			}
			jwks, _ := k.JWKS(t0)
			for _, s := range secrets {
				if bytes.Contains(jwks, s) {
					t.Fatal("JWKS contains private key bytes")
				}
			}
			// Sealing the same key twice gives different bytes (fresh nonce).
			if bytes.Equal(k.seal(sk.ID, alg, secrets[0]), k.seal(sk.ID, alg, secrets[0])) {
				t.Fatal("sealing is deterministic")
			}
		})
	}
}

func TestRotateAndJWKSRetention(t *testing.T) {
	for _, alg := range []string{AlgEdDSA, AlgES256} {
		t.Run(alg, func(t *testing.T) {
			store := &memStore{}
			k := newTestKeys(t, alg, store)
			oldKID := signerKID(t, k)
			oldTok := mustSign(t, k, testClaims())

			kids, doc := parseJWKS(t, k, t0)
			if !slices.Equal(kids, []string{oldKID}) {
				t.Fatalf("JWKS kids = %v", kids)
			}
			key := doc.Keys[0]
			wantKty, wantCrv := "OKP", "Ed25519"
			if alg == AlgES256 {
				wantKty, wantCrv = "EC", "P-256"
			}
			if key["kty"] != wantKty || key["crv"] != wantCrv || key["alg"] != alg || key["use"] != "sig" {
				t.Fatalf("JWK = %v", key)
			}
			for _, private := range []string{"d", "k", "p", "q"} {
				if _, ok := key[private]; ok {
					t.Fatalf("JWK has private member %q", private)
				}
			}

			rot := t0.Add(time.Minute)
			newKID, err := k.Rotate(context.Background(), rot)
			if err != nil {
				t.Fatal(err)
			}
			if newKID == oldKID || signerKID(t, k) != newKID {
				t.Fatal("Rotate did not install a new signer")
			}
			if len(store.keys) != 2 || !store.keys[1].CreatedAt.Equal(rot) {
				t.Fatalf("store after Rotate: %+v", store.keys)
			}
			// The new key is published at once but signs only after the
			// pre-publication delay, so every cached JWKS has it by then.
			active := rot.Add(testAhead)
			for _, iat := range []time.Time{rot, active.Add(-time.Second)} {
				if got := kidAt(t, k, iat); got != oldKID {
					t.Fatalf("token issued at rotation+%v signed by %s; want the old key %s", iat.Sub(rot), got, oldKID)
				}
			}
			if got := kidAt(t, k, active); got != newKID {
				t.Fatalf("token issued when the delay has passed signed by %s; want the new key %s", got, newKID)
			}
			c := testClaims()
			c.IssuedAt = active
			newTok := mustSign(t, k, c)
			c.IssuedAt = active.Add(-time.Second)
			lastOld := mustSign(t, k, c)

			// The old key keeps verifying its tokens until they expire...
			if _, err := k.Verify(context.Background(), oldTok, rot.Add(time.Second)); err != nil {
				t.Fatalf("old token rejected after rotation: %v", err)
			}
			lastOldEnd := c.IssuedAt.Add(testTTL + testLeeway)
			if _, err := k.Verify(context.Background(), lastOld, lastOldEnd.Add(-time.Second)); err != nil {
				t.Fatalf("last token of the old key rejected before it expired: %v", err)
			}
			// ...and stays published until TTL+Leeway after the new key
			// began signing, when the last of them has expired.
			retire := active.Add(testTTL + testLeeway)
			for _, now := range []time.Time{rot, lastOldEnd, retire.Add(-time.Nanosecond)} {
				if kids, _ := parseJWKS(t, k, now); !slices.Equal(kids, []string{newKID, oldKID}) {
					t.Fatalf("JWKS at %v = %v; want new and old", now, kids)
				}
			}
			if kids, _ := parseJWKS(t, k, retire); !slices.Equal(kids, []string{newKID}) {
				t.Fatalf("JWKS at retirement = %v; want only the new key", kids)
			}
			// A second instance, loaded from the store, agrees on all of it.
			other := newTestKeys(t, alg, store)
			if signerKID(t, other) != newKID {
				t.Fatal("second instance does not know the newest key")
			}
			if kidAt(t, other, active.Add(-time.Second)) != oldKID || kidAt(t, other, active) != newKID {
				t.Fatal("second instance switches signer at another moment")
			}
			if kids, _ := parseJWKS(t, other, retire); !slices.Equal(kids, []string{newKID}) {
				t.Fatalf("second instance JWKS = %v", kids)
			}
			if _, err := other.Verify(context.Background(), newTok, active); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// kidAt is the kid of a token issued at iat.
func kidAt(t *testing.T, k *Keys, iat time.Time) string {
	t.Helper()
	c := testClaims()
	c.IssuedAt = iat
	return hdrKID(t, mustSign(t, k, c))
}

func TestRotateWithClockSteppedBack(t *testing.T) {
	k := newTestKeys(t, AlgEdDSA, nil)
	kid, err := k.Rotate(context.Background(), t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// The new key counts as created just after the old one, so it takes
	// over a delay after that, not an hour and a delay later.
	if signerKID(t, k) != kid || kidAt(t, k, t0.Add(testAhead+time.Second)) != kid {
		t.Fatal("a key rotated in with an earlier clock is not the signer")
	}
}

// A fresh install has nothing to publish ahead of: its first key signs at
// once, whatever the delay, and also for a clock a little behind the one
// that created it.
func TestFirstKeySignsAtOnce(t *testing.T) {
	store := &memStore{}
	k := newTestKeys(t, AlgEdDSA, store)
	kid := signerKID(t, k)
	for _, iat := range []time.Time{t0, t0.Add(-time.Second)} {
		if got := kidAt(t, k, iat); got != kid {
			t.Fatalf("first key does not sign at %v: %s", iat, got)
		}
	}
	// So does an instance configured with another algorithm, whose first
	// key of that algorithm is created beside the existing ones.
	es := newTestKeys(t, AlgES256, store)
	if got := kidAt(t, es, t0); got != signerKID(t, es) || got == kid {
		t.Fatalf("first ES256 key does not sign at once: %s", got)
	}
}

// Rotations in quick succession: each key signs from its own creation plus
// the delay, and each retires TTL+Leeway after its successor began signing.
func TestRotationsInQuickSuccession(t *testing.T) {
	store := &memStore{}
	k := newTestKeys(t, AlgEdDSA, store)
	kids := []string{signerKID(t, k)}
	rots := []time.Time{t0}
	for i := 1; i <= 2; i++ {
		rot := t0.Add(time.Duration(i) * 10 * time.Second)
		kid, err := k.Rotate(context.Background(), rot)
		if err != nil {
			t.Fatal(err)
		}
		kids, rots = append(kids, kid), append(rots, rot)
	}
	restarted := newTestKeys(t, AlgEdDSA, store)
	for _, inst := range []*Keys{k, restarted} {
		for i := 1; i <= 2; i++ {
			active := rots[i].Add(testAhead)
			if got := kidAt(t, inst, active.Add(-time.Millisecond)); got != kids[i-1] {
				t.Fatalf("just before key %d signs: signed by %s, want %s", i, got, kids[i-1])
			}
			if got := kidAt(t, inst, active); got != kids[i] {
				t.Fatalf("when key %d signs: signed by %s, want %s", i, got, kids[i])
			}
			retire := active.Add(testTTL + testLeeway)
			if got, _ := parseJWKS(t, inst, retire.Add(-time.Nanosecond)); !slices.Contains(got, kids[i-1]) {
				t.Fatalf("key %d left the JWKS before its retirement: %v", i-1, got)
			}
			if got, _ := parseJWKS(t, inst, retire); slices.Contains(got, kids[i-1]) {
				t.Fatalf("key %d still in the JWKS at its retirement: %v", i-1, got)
			}
		}
	}
}

func TestJWKSNeverPublishesHMAC(t *testing.T) {
	store := &memStore{}
	ed := newTestKeys(t, AlgEdDSA, store)
	hs := newTestKeys(t, AlgHS256, store)
	kids, _ := parseJWKS(t, hs, t0)
	if !slices.Equal(kids, []string{signerKID(t, ed)}) {
		t.Fatalf("JWKS of HS256 instance = %v; want only the EdDSA key", kids)
	}
	b, _ := hs.JWKS(t0)
	if bytes.Contains(b, []byte(`"oct"`)) || bytes.Contains(b, []byte(signerKID(t, hs))) {
		t.Fatalf("HS256 key published: %s", b)
	}
	only := newTestKeys(t, AlgHS256, nil)
	if b, _ := only.JWKS(t0); string(b) != `{"keys":[]}` {
		t.Fatalf("JWKS = %s", b)
	}
}

func hdrKID(t *testing.T, tok string) string {
	var h struct{ Kid string }
	if err := json.Unmarshal([]byte(decodeHeader(t, tok)), &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

// A periodic reload that finds no new key keeps the key set, and with it
// the cache of verified tokens; a reload that finds one replaces it.
func TestReloadKeepsSetUntilKeysChange(t *testing.T) {
	store := &memStore{}
	k := newTestKeys(t, AlgEdDSA, store)
	before := k.set.Load()
	if err := k.Load(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if k.set.Load() != before {
		t.Fatal("a reload without new keys replaced the key set")
	}
	other := newTestKeys(t, AlgEdDSA, store)
	if _, err := other.Rotate(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := k.Load(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if k.set.Load() == before || len(k.set.Load().byID) != 2 {
		t.Fatal("a reload after a rotation elsewhere did not pick up the new key")
	}
}

// A retired key (gone from the JWKS because every token it signed has
// expired) verifies nothing more: a token forged with it after a leak is
// refused, whether it was verified and cached before, is new, or reaches an
// instance that loaded the keys from the store after a restart (issue 10,
// item 7).
func TestRetiredKeyStopsVerifying(t *testing.T) {
	for _, alg := range allAlgs {
		t.Run(alg, func(t *testing.T) {
			store := &memStore{}
			k := newTestKeys(t, alg, store)
			oldKID := signerKID(t, k)
			_, priv := privateKey(t, k, store, oldKID)
			// A leaked key lets an attacker choose exp: far beyond retirement,
			// so only the key's retirement can refuse it.
			forgeAt := func(jti string) string {
				c := goodClaimsMap()
				c["jti"], c["role"], c["exp"] = jti, "admin", t0.Add(24*time.Hour).Unix()
				return forge(t, alg, priv, map[string]any{"kid": oldKID, "typ": "at+jwt"}, c)
			}
			cached := forgeAt("cached")
			if _, err := k.Verify(context.Background(), cached, t0); err != nil {
				t.Fatalf("token of the current key rejected: %v", err)
			}

			rot := t0.Add(time.Minute)
			if _, err := k.Rotate(context.Background(), rot); err != nil {
				t.Fatal(err)
			}
			retire := rotationSigningStart(k, rot).Add(testTTL + testLeeway)
			restarted := newTestKeys(t, alg, store)
			for name, inst := range map[string]*Keys{"same instance": k, "after restart": restarted} {
				// Until retirement the old key verifies (its legitimate tokens
				// are still live); the forged token enters the verified cache.
				if _, err := inst.Verify(context.Background(), cached, retire.Add(-time.Second)); err != nil {
					t.Fatalf("%s: old key refused before its retirement: %v", name, err)
				}
				wantInvalid(t, inst, cached, retire)
				wantInvalid(t, inst, forgeAt("fresh-"+name), retire)
				wantInvalid(t, inst, forgeAt("later-"+name), retire.Add(time.Hour))
			}
			// The new key is unaffected.
			c := testClaims()
			c.IssuedAt = retire
			if _, err := k.Verify(context.Background(), mustSign(t, k, c), retire); err != nil {
				t.Fatalf("token of the current key rejected: %v", err)
			}
		})
	}
}

// rotationSigningStart is when the key created by a rotation at rot starts
// signing.
func rotationSigningStart(k *Keys, rot time.Time) time.Time { return rot.Add(k.cfg.PublishAhead) }

// TestKeyOfSwitchedAlgorithmRetires: after --signing-alg changes, the old
// algorithm's key has no successor of its own; it must still stop
// verifying once the new algorithm's first key has signed for TTL+Leeway.
func TestKeyOfSwitchedAlgorithmRetires(t *testing.T) {
	store := &memStore{}
	old := newTestKeys(t, AlgES256, store)
	oldKID := signerKID(t, old)
	_, priv := privateKey(t, old, store, oldKID)
	c := goodClaimsMap()
	c["role"], c["exp"] = "admin", t0.Add(24*time.Hour).Unix()
	forged := forge(t, AlgES256, priv, map[string]any{"kid": oldKID, "typ": "at+jwt"}, c)

	switchedAt := t0.Add(time.Minute)
	k, err := NewKeys(store, testConfig(AlgEdDSA))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Load(context.Background(), switchedAt); err != nil {
		t.Fatal(err)
	}
	retire := switchedAt.Add(testTTL + testLeeway)
	if _, err := k.Verify(context.Background(), forged, retire.Add(-time.Second)); err != nil {
		t.Fatalf("the old algorithm's key refused while its tokens may still be live: %v", err)
	}
	wantInvalid(t, k, forged, retire)
	wantInvalid(t, k, forged, retire.Add(time.Hour))
}
