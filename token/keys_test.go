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
			c := testClaims()
			c.IssuedAt = rot
			newTok := mustSign(t, k, c)
			if hdrKID(t, newTok) != newKID {
				t.Fatal("new tokens not signed by the new key")
			}

			// The old key keeps verifying its tokens until they expire...
			if _, err := k.Verify(context.Background(), oldTok, rot.Add(time.Second)); err != nil {
				t.Fatalf("old token rejected after rotation: %v", err)
			}
			// ...and stays published until TTL+Leeway after the rotation.
			retire := rot.Add(testTTL + testLeeway)
			for _, now := range []time.Time{rot, retire.Add(-time.Nanosecond)} {
				if kids, _ := parseJWKS(t, k, now); !slices.Equal(kids, []string{newKID, oldKID}) {
					t.Fatalf("JWKS at %v = %v; want new and old", now, kids)
				}
			}
			if kids, _ := parseJWKS(t, k, retire); !slices.Equal(kids, []string{newKID}) {
				t.Fatalf("JWKS at retirement = %v; want only the new key", kids)
			}
			// A second instance agrees.
			other := newTestKeys(t, alg, store)
			if signerKID(t, other) != newKID {
				t.Fatal("second instance does not sign with the newest key")
			}
			if kids, _ := parseJWKS(t, other, retire); !slices.Equal(kids, []string{newKID}) {
				t.Fatalf("second instance JWKS = %v", kids)
			}
			if _, err := other.Verify(context.Background(), newTok, rot); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRotateWithClockSteppedBack(t *testing.T) {
	k := newTestKeys(t, AlgEdDSA, nil)
	kid, err := k.Rotate(context.Background(), t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if signerKID(t, k) != kid {
		t.Fatal("a key rotated in with an earlier clock is not the signer")
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
