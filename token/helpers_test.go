package token

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/gatehouse/gatehouse"
)

// memStore is an in-memory KeyStore that counts reads.
type memStore struct {
	mu    sync.Mutex
	keys  []gatehouse.SigningKey
	reads int
	fail  error
}

func (m *memStore) CreateSigningKey(_ context.Context, k gatehouse.SigningKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	k.Sealed = bytes.Clone(k.Sealed)
	m.keys = append(m.keys, k)
	return nil
}

func (m *memStore) SigningKeys(context.Context) ([]gatehouse.SigningKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	if m.fail != nil {
		return nil, m.fail
	}
	out := make([]gatehouse.SigningKey, len(m.keys))
	for i, k := range m.keys {
		k.Sealed = bytes.Clone(k.Sealed)
		out[i] = k
	}
	return out, nil
}

func (m *memStore) readCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reads
}

const (
	testIssuer   = "https://auth.example.test"
	testAudience = "api.example.test"
	testTTL      = 10 * time.Minute
	testLeeway   = 30 * time.Second
	testAhead    = 2 * time.Minute
)

var allAlgs = []string{AlgEdDSA, AlgES256, AlgHS256}

// t0 is a fixed instant so that tests do not depend on the wall clock.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func testSealKey() []byte { return bytes.Repeat([]byte{0x42}, 32) }

func testConfig(alg string) Config {
	return Config{Algorithm: alg, Issuer: testIssuer, Audience: testAudience, TTL: testTTL, Leeway: testLeeway, PublishAhead: testAhead, SealKey: testSealKey()}
}

func newTestKeys(tb testing.TB, alg string, store *memStore) *Keys {
	tb.Helper()
	if store == nil {
		store = &memStore{}
	}
	k, err := NewKeys(store, testConfig(alg))
	if err != nil {
		tb.Fatal(err)
	}
	if err := k.Load(context.Background(), t0); err != nil {
		tb.Fatal(err)
	}
	return k
}

func testClaims() Claims {
	return Claims{Subject: "user-1", SessionID: "sess-1", ID: "jti-1", Role: gatehouse.RoleUser, IssuedAt: t0}
}

func mustSign(tb testing.TB, k *Keys, c Claims) string {
	tb.Helper()
	tok, err := k.Sign(c)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// signerKID is the kid of the newest key of the configured algorithm: the
// one that signs once it has been published long enough.
func signerKID(tb testing.TB, k *Keys) string {
	tb.Helper()
	s := k.set.Load()
	if s == nil || s.newest() == nil {
		tb.Fatal("no signer")
	}
	return s.newest().id
}

// privateKey unseals a stored key the way an attacker holding the seal key
// could, so tests can mint tokens with arbitrary headers and claims.
func privateKey(tb testing.TB, k *Keys, store *memStore, kid string) (alg string, priv any) {
	tb.Helper()
	keys, _ := store.SigningKeys(context.Background())
	for _, sk := range keys {
		if sk.ID != kid {
			continue
		}
		raw, err := k.box.Open(sealAAD(sk.ID, sk.Algorithm), sk.Sealed)
		if err != nil {
			tb.Fatal(err)
		}
		switch sk.Algorithm {
		case AlgEdDSA:
			return sk.Algorithm, ed25519.NewKeyFromSeed(raw)
		case AlgES256:
			p, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), raw)
			if err != nil {
				tb.Fatal(err)
			}
			return sk.Algorithm, p
		default:
			return sk.Algorithm, raw
		}
	}
	tb.Fatalf("kid %q not in store", kid)
	return "", nil
}

// forge signs claims (any JSON-able value) with priv under alg and the
// given protected headers, bypassing every check Sign makes.
func forge(tb testing.TB, alg string, priv any, headers map[string]any, claims any) string {
	tb.Helper()
	opts := &jose.SignerOptions{}
	for k, v := range headers {
		opts.WithHeader(jose.HeaderKey(k), v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: priv}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// rawJWS assembles a compact JWS from JSON header and payload and a
// signature, with no library in the way (for tokens no library would make).
func rawJWS(header, payload string, sig []byte) string {
	e := base64.RawURLEncoding
	return e.EncodeToString([]byte(header)) + "." + e.EncodeToString([]byte(payload)) + "." + e.EncodeToString(sig)
}

func goodClaimsMap() map[string]any {
	return map[string]any{
		"iss": testIssuer, "aud": testAudience, "sub": "user-1", "sid": "sess-1", "jti": "jti-1",
		"role": "user", "iat": t0.Unix(), "exp": t0.Add(testTTL).Unix(),
	}
}

func wantInvalid(tb testing.TB, k *Keys, tok string, now time.Time) {
	tb.Helper()
	c, err := k.Verify(context.Background(), tok, now)
	if !errors.Is(err, ErrInvalidToken) {
		tb.Fatalf("Verify(%.80q) = %+v, %v; want ErrInvalidToken", tok, c, err)
	}
	if !reflect.DeepEqual(c, Claims{}) {
		tb.Fatalf("rejected token returned claims %+v", c)
	}
}

func segments(tok string) []string { return strings.Split(tok, ".") }

// badSignature changes the last two characters of tok's signature, keeping
// the encoding canonical. Always replacing them with "AA" left one token in
// 256 unchanged (and so valid).
func badSignature(tok string) string {
	head, tail := tok[:len(tok)-2], tok[len(tok)-2:]
	if tail == "AA" {
		return head + "BA"
	}
	return head + "AA"
}
