package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/gatehouse/gatehouse"
)

func TestSignVerifyRoundTrip(t *testing.T) {
	for _, alg := range allAlgs {
		t.Run(alg, func(t *testing.T) {
			k := newTestKeys(t, alg, nil)
			in := testClaims()
			in.Role = gatehouse.RoleAdmin
			in.IssuedAt = t0.Add(500 * time.Millisecond) // NumericDate is whole seconds
			tok := mustSign(t, k, in)

			got, err := k.Verify(context.Background(), tok, t0.Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			want := Claims{
				Issuer: testIssuer, Audience: testAudience, Subject: "user-1", SessionID: "sess-1",
				ID: "jti-1", Role: gatehouse.RoleAdmin, IssuedAt: t0, ExpiresAt: t0.Add(testTTL),
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("claims = %+v\nwant     %+v", got, want)
			}

			// The wire format the contract promises.
			seg := segments(tok)
			var hdr map[string]any
			decodeSeg(t, seg[0], &hdr)
			if hdr["alg"] != alg || hdr["typ"] != "at+jwt" || hdr["kid"] != signerKID(t, k) || len(hdr) != 3 {
				t.Fatalf("header = %v", hdr)
			}
			var payload map[string]any
			decodeSeg(t, seg[1], &payload)
			if payload["aud"] != testAudience { // a string, not an array
				t.Fatalf("aud = %#v", payload["aud"])
			}
			for _, c := range []string{"iss", "aud", "sub", "sid", "jti", "role", "iat", "exp"} {
				if _, ok := payload[c]; !ok {
					t.Errorf("claim %q missing", c)
				}
			}
			if payload["iat"] != float64(t0.Unix()) || payload["exp"] != float64(t0.Add(testTTL).Unix()) {
				t.Fatalf("iat/exp = %v/%v", payload["iat"], payload["exp"])
			}
		})
	}
}

func decodeSeg(t *testing.T, seg string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func TestSignDefaultsAndRefusals(t *testing.T) {
	k := newTestKeys(t, AlgEdDSA, nil)
	c := testClaims()
	c.ID = ""
	a, b := mustSign(t, k, c), mustSign(t, k, c)
	ca, err := k.Verify(context.Background(), a, t0)
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := k.Verify(context.Background(), b, t0)
	if ca.ID == "" || ca.ID == cb.ID {
		t.Fatalf("generated jtis %q, %q: want distinct and non-empty", ca.ID, cb.ID)
	}

	bad := map[string]func(*Claims){
		"no iat":         func(c *Claims) { c.IssuedAt = time.Time{} },
		"no sub":         func(c *Claims) { c.Subject = "" },
		"no sid":         func(c *Claims) { c.SessionID = "" },
		"bad role":       func(c *Claims) { c.Role = "root" },
		"exp before iat": func(c *Claims) { c.ExpiresAt = c.IssuedAt.Add(-time.Second) },
	}
	for name, mutate := range bad {
		c := testClaims()
		mutate(&c)
		if _, err := k.Sign(c); err == nil {
			t.Errorf("%s: Sign succeeded", name)
		}
	}

	unloaded, _ := NewKeys(&memStore{}, testConfig(AlgEdDSA))
	if _, err := unloaded.Sign(testClaims()); err == nil {
		t.Error("Sign before Load succeeded")
	}
	wantInvalid(t, unloaded, a, t0)
}

func TestVerifyRejectsTampering(t *testing.T) {
	for _, alg := range allAlgs {
		t.Run(alg, func(t *testing.T) {
			k := newTestKeys(t, alg, nil)
			tok := mustSign(t, k, testClaims())
			now := t0.Add(time.Second)
			if _, err := k.Verify(context.Background(), tok, now); err != nil {
				t.Fatal(err)
			}
			// Every character of the token with each bit of its 6-bit value
			// flipped (this covers the unused trailing bits of a segment,
			// which lenient base64 decoders ignore), or replaced by a dot.
			const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
			for i := 0; i < len(tok); i++ {
				repl := []byte{'.'}
				if v := strings.IndexByte(alphabet, tok[i]); v >= 0 {
					for bit := 0; bit < 6; bit++ {
						repl = append(repl, alphabet[v^(1<<bit)])
					}
				} else {
					repl = append(repl, 'A')
				}
				for _, r := range repl {
					if r == tok[i] {
						continue
					}
					mut := tok[:i] + string(r) + tok[i+1:]
					if _, err := k.Verify(context.Background(), mut, now); !errors.Is(err, ErrInvalidToken) {
						t.Fatalf("token with byte %d set to %q verified: %v", i, r, err)
					}
				}
			}
			// A decoded byte flipped in payload and signature.
			seg := segments(tok)
			for s := 1; s <= 2; s++ {
				b, _ := base64.RawURLEncoding.DecodeString(seg[s])
				b[len(b)/2] ^= 0x01
				parts := append([]string(nil), seg...)
				parts[s] = base64.RawURLEncoding.EncodeToString(b)
				wantInvalid(t, k, strings.Join(parts, "."), now)
			}
		})
	}
}

func TestVerifyRejectsAlgNone(t *testing.T) {
	k := newTestKeys(t, AlgEdDSA, nil)
	kid := signerKID(t, k)
	payload, _ := json.Marshal(goodClaimsMap())
	for _, none := range []string{"none", "None", "NONE", "nOnE", "NoNe", "nonE"} {
		hdr := fmt.Sprintf(`{"alg":%q,"kid":%q,"typ":"at+jwt"}`, none, kid)
		wantInvalid(t, k, rawJWS(hdr, string(payload), nil), t0)
		wantInvalid(t, k, rawJWS(hdr, string(payload), []byte("sig")), t0)
		// A header without kid as well.
		wantInvalid(t, k, rawJWS(fmt.Sprintf(`{"alg":%q,"typ":"at+jwt"}`, none), string(payload), nil), t0)
	}
}

// TestVerifyRejectsKeyConfusion signs HS256 tokens with every public form of
// our asymmetric keys as the HMAC secret (the classic RS256→HS256 attack).
func TestVerifyRejectsKeyConfusion(t *testing.T) {
	for _, alg := range []string{AlgEdDSA, AlgES256} {
		t.Run(alg, func(t *testing.T) {
			store := &memStore{}
			k := newTestKeys(t, alg, store)
			kid := signerKID(t, k)
			_, priv := privateKey(t, k, store, kid)
			var secrets [][]byte
			switch p := priv.(type) {
			case ed25519.PrivateKey:
				secrets = append(secrets, p.Public().(ed25519.PublicKey))
			case *ecdsa.PrivateKey:
				pub, err := p.PublicKey.Bytes()
				if err != nil {
					t.Fatal(err)
				}
				secrets = append(secrets, pub, pub[1:33]) // uncompressed point, X
			}
			jwks, err := k.JWKS(t0)
			if err != nil {
				t.Fatal(err)
			}
			var set struct{ Keys []json.RawMessage }
			if err := json.Unmarshal(jwks, &set); err != nil {
				t.Fatal(err)
			}
			secrets = append(secrets, set.Keys[0], jwks)

			hdr := map[string]any{"kid": kid, "typ": "at+jwt"}
			for _, secret := range secrets {
				mac := hmac.New(sha256.New, secret)
				h, _ := json.Marshal(map[string]any{"alg": "HS256", "kid": kid, "typ": "at+jwt"})
				p, _ := json.Marshal(goodClaimsMap())
				e := base64.RawURLEncoding
				input := e.EncodeToString(h) + "." + e.EncodeToString(p)
				mac.Write([]byte(input))
				wantInvalid(t, k, input+"."+e.EncodeToString(mac.Sum(nil)), t0)
				if len(secret) >= 32 { // go-jose refuses shorter HMAC keys
					wantInvalid(t, k, forge(t, "HS256", secret, hdr, goodClaimsMap()), t0)
				}
			}
		})
	}
}

// TestVerifyAlgMustMatchKey holds keys of several algorithms, so HS256 is an
// accepted algorithm, and checks a token cannot use one key with another's alg.
func TestVerifyAlgMustMatchKey(t *testing.T) {
	store := &memStore{}
	ed := newTestKeys(t, AlgEdDSA, store)
	edKID := signerKID(t, ed)
	hs := newTestKeys(t, AlgHS256, store) // loads the EdDSA key too
	hsKID := signerKID(t, hs)
	_, hsSecret := privateKey(t, hs, store, hsKID)
	edPub := []byte(ed.set.Load().newest().verify.(ed25519.PublicKey))

	// The EdDSA kid with HS256 over its public key, padded to 32 bytes anyway.
	wantInvalid(t, hs, forge(t, "HS256", edPub, map[string]any{"kid": edKID, "typ": "at+jwt"}, goodClaimsMap()), t0)
	// The HS256 kid with an EdDSA signature by an attacker key.
	_, attacker, _ := ed25519.GenerateKey(rand.Reader)
	wantInvalid(t, hs, forge(t, "EdDSA", attacker, map[string]any{"kid": hsKID, "typ": "at+jwt"}, goodClaimsMap()), t0)
	// The real HS256 key but the EdDSA kid.
	wantInvalid(t, hs, forge(t, "HS256", hsSecret, map[string]any{"kid": edKID, "typ": "at+jwt"}, goodClaimsMap()), t0)
	// The kid lookup itself refuses the mismatch, before any signature
	// check (go-jose would also refuse a key of the wrong type, but we do
	// not rely on that).
	set := hs.set.Load()
	for _, tok := range []string{
		forge(t, "HS256", hsSecret, map[string]any{"kid": edKID, "typ": "at+jwt"}, goodClaimsMap()),
		forge(t, "EdDSA", attacker, map[string]any{"kid": hsKID, "typ": "at+jwt"}, goodClaimsMap()),
	} {
		if _, _, err := set.find(tok); err == nil || errors.Is(err, errUnknownKey) {
			t.Fatalf("find accepted a token whose alg differs from its key's: %v", err)
		}
	}
	// Both instances accept each other's genuine tokens.
	if _, err := hs.Verify(context.Background(), mustSign(t, ed, testClaims()), t0); err != nil {
		t.Fatal(err)
	}
	if err := ed.Load(context.Background(), t0); err != nil {
		t.Fatal(err)
	}
	if _, err := ed.Verify(context.Background(), mustSign(t, hs, testClaims()), t0); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyIgnoresHeaderKeys(t *testing.T) {
	k := newTestKeys(t, AlgEdDSA, nil)
	kid := signerKID(t, k)
	_, attacker, _ := ed25519.GenerateKey(rand.Reader)
	attackerJWK := jose.JSONWebKey{Key: attacker.Public(), Algorithm: "EdDSA", Use: "sig"}

	// Embedded jwk, with and without our kid.
	for _, withKID := range []bool{false, true} {
		opts := &jose.SignerOptions{EmbedJWK: true}
		opts.WithType("at+jwt")
		if withKID {
			opts.WithHeader("kid", kid)
		}
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: attacker}, opts)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := json.Marshal(goodClaimsMap())
		jws, _ := s.Sign(p)
		tok, _ := jws.CompactSerialize()
		if !strings.Contains(decodeHeader(t, tok), `"jwk"`) {
			t.Fatal("test token has no jwk header")
		}
		wantInvalid(t, k, tok, t0)
	}
	// jku / x5u pointing at the attacker, our kid, attacker signature.
	for _, h := range []string{"jku", "x5u"} {
		wantInvalid(t, k, forge(t, "EdDSA", attacker, map[string]any{"kid": kid, "typ": "at+jwt", h: "https://evil.test/jwks"}, goodClaimsMap()), t0)
	}
	// An attacker JWK under our kid in the header does not help either.
	wantInvalid(t, k, forge(t, "EdDSA", attacker, map[string]any{"kid": kid, "typ": "at+jwt", "jwk": attackerJWK}, goodClaimsMap()), t0)
}

func decodeHeader(t *testing.T, tok string) string {
	b, err := base64.RawURLEncoding.DecodeString(segments(tok)[0])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestVerifyHeaderAndClaimChecks(t *testing.T) {
	store := &memStore{}
	k := newTestKeys(t, AlgEdDSA, store)
	kid := signerKID(t, k)
	alg, priv := privateKey(t, k, store, kid)
	hdr := func(kv ...any) map[string]any {
		h := map[string]any{"kid": kid, "typ": "at+jwt"}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(h, kv[i].(string))
			} else {
				h[kv[i].(string)] = kv[i+1]
			}
		}
		return h
	}
	claims := func(kv ...any) map[string]any {
		c := goodClaimsMap()
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(c, kv[i].(string))
			} else {
				c[kv[i].(string)] = kv[i+1]
			}
		}
		return c
	}
	exp := t0.Add(testTTL)
	cases := []struct {
		name string
		h    map[string]any
		c    map[string]any
		now  time.Time
		ok   bool
	}{
		{"baseline", hdr(), claims(), t0, true},
		{"typ full media type", hdr("typ", "application/at+jwt"), claims(), t0, true},
		{"typ upper case", hdr("typ", "AT+JWT"), claims(), t0, true},
		{"aud array containing ours", hdr(), claims("aud", []string{"other", testAudience}), t0, true},
		{"exp within leeway", hdr(), claims(), exp.Add(testLeeway - time.Second), true},
		{"iat within leeway", hdr(), claims(), t0.Add(-testLeeway), true},
		{"nbf within leeway", hdr(), claims("nbf", t0.Add(testLeeway).Unix()), t0, true},

		{"typ JWT", hdr("typ", "JWT"), claims(), t0, false},
		{"typ missing", hdr("typ", nil), claims(), t0, false},
		{"typ not a string", hdr("typ", 1), claims(), t0, false},
		{"kid missing", hdr("kid", nil), claims(), t0, false},
		{"kid unknown", hdr("kid", "nope"), claims(), t0, false},
		{"crit", hdr("crit", []string{"exp"}, "exp", 1), claims(), t0, false},
		{"crit b64", hdr("crit", []string{"b64"}, "b64", true), claims(), t0, false},
		// go-jose understands b64 and would accept this; we understand no extension.
		{"crit b64 without b64", hdr("crit", []string{"b64"}), claims(), t0, false},
		{"b64 true", hdr("b64", true), claims(), t0, false},
		{"wrong iss", hdr(), claims("iss", "https://evil.test"), t0, false},
		{"no iss", hdr(), claims("iss", nil), t0, false},
		{"wrong aud", hdr(), claims("aud", "other"), t0, false},
		{"aud array without ours", hdr(), claims("aud", []string{"a", "b"}), t0, false},
		{"no aud", hdr(), claims("aud", nil), t0, false},
		{"expired at exactly exp+leeway", hdr(), claims(), exp.Add(testLeeway), false},
		{"expired beyond leeway", hdr(), claims(), exp.Add(time.Hour), false},
		{"no exp", hdr(), claims("exp", nil), t0, false},
		{"exp a string", hdr(), claims("exp", "soon"), t0, false},
		{"no iat", hdr(), claims("iat", nil), t0, false},
		{"exp huge", hdr(), claims("exp", 1e300), t0, false},
		{"exp max int64", hdr(), claims("exp", int64(1<<63-1)), t0, false},
		{"exp negative", hdr(), claims("exp", -1), t0, false},
		{"iat negative huge", hdr(), claims("iat", -1e300), t0, false},
		{"nbf huge", hdr(), claims("nbf", 1e300), t0, false},
		{"exp fractional", hdr(), claims("exp", float64(exp.Unix())+0.5), t0, true},
		{"iat in the future", hdr(), claims(), t0.Add(-testLeeway - time.Second), false},
		{"nbf in the future", hdr(), claims("nbf", t0.Add(testLeeway+time.Second).Unix()), t0, false},
		{"no sub", hdr(), claims("sub", nil), t0, false},
		{"empty sid", hdr(), claims("sid", ""), t0, false},
		{"no jti", hdr(), claims("jti", nil), t0, false},
		{"bad role", hdr(), claims("role", "root"), t0, false},
		{"no role", hdr(), claims("role", nil), t0, false},
		{"sub not a string", hdr(), claims("sub", 7), t0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := forge(t, alg, priv, tc.h, tc.c)
			c, err := k.Verify(context.Background(), tok, tc.now)
			if tc.ok {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if c.Subject != "user-1" || c.Audience != testAudience {
					t.Fatalf("claims = %+v", c)
				}
				return
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("err = %v; want ErrInvalidToken", err)
			}
		})
	}
}

func TestVerifyRejectsMalformed(t *testing.T) {
	k := newTestKeys(t, AlgEdDSA, nil)
	good := mustSign(t, k, testClaims())
	seg := segments(good)
	kid := signerKID(t, k)
	bigHeader := fmt.Sprintf(`{"alg":"EdDSA","kid":%q,"typ":"at+jwt","pad":%q}`, kid, strings.Repeat("a", 9000))
	cases := map[string]string{
		"empty":              "",
		"garbage":            "not a token",
		"one segment":        seg[0],
		"two segments":       seg[0] + "." + seg[1],
		"four segments":      good + "." + seg[2],
		"five segments":      good + "." + seg[1] + "." + seg[2],
		"empty segments":     "..",
		"bad base64 hdr":     "!!!." + seg[1] + "." + seg[2],
		"bad base64 body":    seg[0] + ".*." + seg[2],
		"bad base64 sig":     seg[0] + "." + seg[1] + ".@@",
		"padded base64":      seg[0] + "=." + seg[1] + "." + seg[2],
		"std base64":         strings.NewReplacer("-", "+", "_", "/").Replace(good) + "+/",
		"leading space":      " " + good,
		"trailing space":     good + " ",
		"JSON serialization": `{"payload":"` + seg[1] + `","protected":"` + seg[0] + `","signature":"` + seg[2] + `"}`,
		"header not JSON":    base64.RawURLEncoding.EncodeToString([]byte("hello")) + "." + seg[1] + "." + seg[2],
		"header array":       base64.RawURLEncoding.EncodeToString([]byte("[]")) + "." + seg[1] + "." + seg[2],
		"payload not JSON":   seg[0] + "." + base64.RawURLEncoding.EncodeToString([]byte("hello")) + "." + seg[2],
		"huge header":        rawJWS(bigHeader, "{}", make([]byte, 64)),
		"huge token":         strings.Repeat("A", 1<<20),
		"just under limit":   rawJWS(bigHeader[:len(bigHeader)-3200]+`"}`, "{}", make([]byte, 64)),
		"kid not a string":   rawJWS(`{"alg":"EdDSA","kid":1,"typ":"at+jwt"}`, "{}", make([]byte, 64)),
		"duplicate alg":      rawJWS(fmt.Sprintf(`{"alg":"none","alg":"EdDSA","kid":%q,"typ":"at+jwt"}`, kid), "{}", make([]byte, 64)),
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) { wantInvalid(t, k, tok, t0) })
	}
	if len(cases["huge header"]) <= maxAccessLen {
		t.Fatal("huge header test token is not over the limit")
	}
}

// TestVerifyUnknownKidReload checks that a key rotated in by another
// instance verifies after one reload, and that made-up kids reach the store
// at most once a second.
func TestVerifyUnknownKidReload(t *testing.T) {
	store := &memStore{}
	a := newTestKeys(t, AlgEdDSA, store)
	b := newTestKeys(t, AlgEdDSA, store)
	if _, err := b.Verify(context.Background(), mustSign(t, a, testClaims()), t0); err != nil {
		t.Fatalf("second instance rejects first's token: %v", err)
	}

	// Made-up kids at one instant: one store read, not one per request.
	_, attacker, _ := ed25519.GenerateKey(rand.Reader)
	reads := store.readCount()
	now := t0.Add(10 * time.Second)
	for i := 0; i < 50; i++ {
		bogus := forge(t, "EdDSA", attacker, map[string]any{"kid": fmt.Sprint("bogus", i), "typ": "at+jwt"}, goodClaimsMap())
		wantInvalid(t, b, bogus, now.Add(time.Duration(i)*10*time.Millisecond))
	}
	if got := store.readCount() - reads; got != 1 {
		t.Fatalf("50 unknown kids within 0.5s caused %d store reads; want 1", got)
	}

	// a rotates; b learns the new key on first sight, once the second has passed.
	if _, err := a.Rotate(context.Background(), t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	c := testClaims()
	c.IssuedAt = t0.Add(time.Minute + testAhead) // when the new key signs
	tok := mustSign(t, a, c)
	if _, err := b.Verify(context.Background(), tok, c.IssuedAt); err != nil {
		t.Fatalf("token of rotated key rejected: %v", err)
	}
	// b's JWKS now shows it too.
	jwks, _ := b.JWKS(c.IssuedAt)
	if !strings.Contains(string(jwks), signerKID(t, a)) {
		t.Fatal("reloaded key not in JWKS")
	}
	if signerKID(t, a) != signerKID(t, b) {
		t.Fatal("instances disagree on the signer after reload")
	}

	// A failing store: rejected, and the store error is visible for a 503.
	store.fail = gatehouse.ErrUnavailable
	bogus := forge(t, "EdDSA", attacker, map[string]any{"kid": "other", "typ": "at+jwt"}, goodClaimsMap())
	_, err := b.Verify(context.Background(), bogus, t0.Add(time.Hour))
	if !errors.Is(err, ErrInvalidToken) || !errors.Is(err, gatehouse.ErrUnavailable) {
		t.Fatalf("err = %v; want ErrInvalidToken wrapping ErrUnavailable", err)
	}
	// A second unknown kid within the reload throttle gets the same answer,
	// not a plain rejection while the store is still down.
	_, err = b.Verify(context.Background(), bogus, t0.Add(time.Hour+100*time.Millisecond))
	if !errors.Is(err, gatehouse.ErrUnavailable) {
		t.Fatalf("throttled reload: err = %v; want it to wrap ErrUnavailable", err)
	}
}

// TestVerifyNewAlgorithmReload: another instance configured with another
// algorithm creates a key; our parser did not accept that alg yet.
func TestVerifyNewAlgorithmReload(t *testing.T) {
	store := &memStore{}
	ed := newTestKeys(t, AlgEdDSA, store)
	es := newTestKeys(t, AlgES256, store)
	if _, err := ed.Verify(context.Background(), mustSign(t, es, testClaims()), t0); err != nil {
		t.Fatalf("ES256 token rejected by EdDSA instance after reload: %v", err)
	}
}

func TestKeysConcurrentUse(t *testing.T) {
	store := &memStore{}
	k := newTestKeys(t, AlgEdDSA, store)
	other := newTestKeys(t, AlgEdDSA, store)
	done := make(chan struct{})
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				tok, err := k.Sign(testClaims())
				if err == nil {
					_, err = k.Verify(context.Background(), tok, t0)
				}
				if err == nil {
					// Tokens of the other instance make this one reload. Its
					// newest key may be unknown for up to a second (the reload
					// rate limit); anything else is an error.
					if tok, err = other.Sign(testClaims()); err == nil {
						_, err = k.Verify(context.Background(), tok, t0.Add(time.Duration(i)*time.Second))
						if errors.Is(err, errUnknownKey) {
							err = nil
						}
					}
				}
				if err == nil {
					_, err = k.JWKS(t0)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		if _, err := k.Rotate(context.Background(), t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := other.Rotate(context.Background(), t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := k.Load(context.Background(), t0); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	for g := 0; g < 8; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestCanonicalSegments(t *testing.T) {
	e := base64.RawURLEncoding
	for n := 0; n < 40; n++ {
		b := make([]byte, n)
		rand.Read(b)
		if s := e.EncodeToString(b); !canonicalSegments(s) {
			t.Fatalf("canonical encoding %q rejected", s)
		}
	}
	for _, s := range []string{"AB", "AAB", "A", "AAAAB"} {
		if canonicalSegments(s) {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestAMRRoundTrips(t *testing.T) {
	k := newTestKeys(t, AlgEdDSA, nil)
	c := testClaims()
	c.AMR = []string{"email"}
	tok := mustSign(t, k, c)
	got, err := k.Verify(context.Background(), tok, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.AMR, []string{"email"}) {
		t.Fatalf("amr = %q, want [email]", got.AMR)
	}
	var payload map[string]any
	decodeSeg(t, segments(tok)[1], &payload)
	if amr, _ := payload["amr"].([]any); len(amr) != 1 || amr[0] != "email" {
		t.Fatalf("payload amr = %v, want [email]", payload["amr"])
	}
}
