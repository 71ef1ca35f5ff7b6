package e2e

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

var b64 = base64.RawURLEncoding

// decodeJWT decodes a compact JWS's header and claims without verifying.
func decodeJWT(t *testing.T, tok string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a compact JWS", abbrev(tok))
	}
	hb, err1 := b64.DecodeString(parts[0])
	cb, err2 := b64.DecodeString(parts[1])
	if err1 != nil || err2 != nil {
		t.Fatalf("token %q: bad base64url: %v %v", abbrev(tok), err1, err2)
	}
	if err := json.Unmarshal(hb, &header); err != nil {
		t.Fatalf("token header: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(cb)))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		t.Fatalf("token claims: %v", err)
	}
	return header, claims
}

// encodeJWT builds a compact JWS from header, claims and a signer.
func encodeJWT(header, claims map[string]any, sign func(input []byte) []byte) string {
	hb, _ := json.Marshal(header)
	cb, _ := json.Marshal(claims)
	input := b64.EncodeToString(hb) + "." + b64.EncodeToString(cb)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return input + "." + b64.EncodeToString(sig)
}

func numClaim(t *testing.T, claims map[string]any, k string) int64 {
	t.Helper()
	n, ok := claims[k].(json.Number)
	if !ok {
		t.Errorf("claim %s = %#v, want a number", k, claims[k])
		return 0
	}
	v, err := n.Int64()
	if err != nil {
		t.Errorf("claim %s = %v, want an integer NumericDate", k, n)
	}
	return v
}

// fetchJWKS gets the JWKS (via openid-configuration's jwks_uri path).
func fetchJWKS(t *testing.T, s *server) (jose.JSONWebKeySet, []byte) {
	t.Helper()
	r := s.do(t, "GET", "/.well-known/jwks.json", nil)
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(r.Body, &set); err != nil {
		t.Fatalf("JWKS does not parse: %v\n%s", err, r.Body)
	}
	checkJWKSPublicOnly(t, r.Body)
	return set, r.Body
}

// checkJWKSPublicOnly asserts no key in the JWKS carries private or secret material.
func checkJWKSPublicOnly(t *testing.T, raw []byte) {
	t.Helper()
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	for _, k := range doc.Keys {
		for _, priv := range []string{"d", "p", "q", "dp", "dq", "qi", "k", "oth"} {
			if _, ok := k[priv]; ok {
				t.Errorf("JWKS key %v exposes private/secret member %q", k["kid"], priv)
			}
		}
		if kid, _ := k["kid"].(string); kid == "" {
			t.Errorf("JWKS key without kid: %v", k)
		}
	}
}

// verifyOffline verifies tok against the JWKS the way a resource server would.
func verifyOffline(t *testing.T, tok string, set jose.JSONWebKeySet) bool {
	t.Helper()
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256})
	if err != nil {
		t.Errorf("access token does not parse as JWS: %v", err)
		return false
	}
	if len(jws.Signatures) != 1 {
		t.Errorf("access token has %d signatures", len(jws.Signatures))
		return false
	}
	kid := jws.Signatures[0].Header.KeyID
	keys := set.Key(kid)
	if len(keys) == 0 {
		t.Errorf("kid %q not in the JWKS", kid)
		return false
	}
	if _, err := jws.Verify(keys[0]); err != nil {
		t.Errorf("access token (kid %s) does not verify against the JWKS: %v", kid, err)
		return false
	}
	return true
}

func TestDiscoveryAndOfflineVerification(t *testing.T) {
	t.Parallel()
	const iss, aud = "https://auth.example.test", "api.example.test"
	s := startServer(t, "--issuer", iss, "--audience", aud)

	r := s.do(t, "GET", "/.well-known/openid-configuration", nil)
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("openid-configuration Content-Type %q", ct)
	}
	oc := r.JSON()
	if oc["issuer"] != iss {
		t.Errorf("issuer = %v, want %s", oc["issuer"], iss)
	}
	ju, _ := oc["jwks_uri"].(string)
	u, err := url.Parse(ju)
	if err != nil || !u.IsAbs() || u.Path != "/.well-known/jwks.json" {
		t.Errorf("jwks_uri = %q, want an absolute URL ending in /.well-known/jwks.json", ju)
	}

	set, _ := fetchJWKS(t, s)
	if len(set.Keys) == 0 {
		t.Fatalf("JWKS has no keys")
	}
	d := s.newUser(t, true)
	h, c := decodeJWT(t, d.Access())
	if h["typ"] != "at+jwt" {
		t.Errorf("header typ = %v, want at+jwt", h["typ"])
	}
	if h["alg"] != "EdDSA" {
		t.Errorf("default alg = %v, want EdDSA", h["alg"])
	}
	if kid, _ := h["kid"].(string); kid == "" {
		t.Errorf("header has no kid")
	}
	for _, k := range set.Keys {
		if k.KeyID == h["kid"] && k.Algorithm != "" && k.Algorithm != "EdDSA" {
			t.Errorf("JWKS key alg = %q for an EdDSA token", k.Algorithm)
		}
	}
	verifyOffline(t, d.Access(), set)

	if c["iss"] != iss {
		t.Errorf("iss = %v, want %s", c["iss"], iss)
	}
	switch a := c["aud"].(type) {
	case string:
		if a != aud {
			t.Errorf("aud = %q, want %s", a, aud)
		}
	case []any:
		if len(a) == 0 || !containsAny(a, aud) {
			t.Errorf("aud = %v, want %s", a, aud)
		}
	default:
		t.Errorf("aud = %#v, want %s", c["aud"], aud)
	}
	if c["sub"] != d.user.ID {
		t.Errorf("sub = %v, want user id %s", c["sub"], d.user.ID)
	}
	if c["sid"] != d.sid {
		t.Errorf("sid = %v, want session id %s", c["sid"], d.sid)
	}
	if c["role"] != "user" {
		t.Errorf("role = %v, want user", c["role"])
	}
	jti1, _ := c["jti"].(string)
	if jti1 == "" {
		t.Errorf("jti missing")
	}
	iat, exp := numClaim(t, c, "iat"), numClaim(t, c, "exp")
	now := time.Now().Unix()
	if iat < now-30 || iat > now+5 {
		t.Errorf("iat = %d, now %d", iat, now)
	}
	if exp-iat != 600 {
		t.Errorf("exp - iat = %d, want 600 (default --access-ttl 10m)", exp-iat)
	}
	// A second token has a different jti and also verifies.
	d.refreshOK(t)
	_, c2 := decodeJWT(t, d.Access())
	if c2["jti"] == jti1 {
		t.Errorf("two access tokens share jti %v", jti1)
	}
	verifyOffline(t, d.Access(), set)
}

func containsAny(list []any, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestKeyRotationWhileRunning(t *testing.T) {
	t.Parallel()
	// A new key signs only after this delay (keys_lifecycle_test.go checks
	// the delay itself); short, so new tokens change key within the wait below.
	s := startServer(t, "--key-publish-ahead", "1s")
	d := s.newUser(t, true)
	before, _ := fetchJWKS(t, s)
	oldTok := d.Access()
	oldHeader, _ := decodeJWT(t, oldTok)
	oldKid, _ := oldHeader["kid"].(string)

	res := runCLI(t, "", nil, "keys", "rotate", "--database", "sqlite:"+s.dbPath)
	if res.code != 0 {
		t.Fatalf("gatehouse keys rotate: exit %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}

	var after jose.JSONWebKeySet
	ok := eventually(15*time.Second, func() bool {
		r := s.do(t, "GET", "/.well-known/jwks.json", nil)
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &after) != nil {
			return false
		}
		checkJWKSPublicOnly(t, r.Body)
		return len(after.Keys) > len(before.Keys) && len(after.Key(oldKid)) > 0
	})
	if !ok {
		t.Fatalf("15s after `gatehouse keys rotate`, the running server's JWKS does not list both keys: %d keys before, %d after (old kid %s present: %v)",
			len(before.Keys), len(after.Keys), oldKid, len(after.Key(oldKid)) > 0)
	}
	// The old token still verifies, offline and online.
	verifyOffline(t, oldTok, after)
	expect(t, s.meWith(t, oldTok), http.StatusOK, "")

	// New tokens verify against the JWKS too; the new key should be used for
	// signing soon after the rotation.
	newKid := false
	eventually(15*time.Second, func() bool {
		r := d.refreshOK(t)
		if r.Status != http.StatusOK {
			return true
		}
		h, _ := decodeJWT(t, d.Access())
		newKid = h["kid"] != oldKid
		return newKid
	})
	verifyOffline(t, d.Access(), after)
	expect(t, d.me(t), http.StatusOK, "")
	if !newKid {
		t.Errorf("15s after `gatehouse keys rotate`, new tokens are still signed with the old key %s", oldKid)
	}
}

func TestSigningAlgorithms(t *testing.T) {
	t.Parallel()
	t.Run("ES256", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, "--signing-alg", "ES256")
		d := s.newUser(t, true)
		h, _ := decodeJWT(t, d.Access())
		if h["alg"] != "ES256" || h["typ"] != "at+jwt" {
			t.Errorf("header = %v, want alg ES256 typ at+jwt", h)
		}
		set, _ := fetchJWKS(t, s)
		for _, k := range set.Key(stringOf(h["kid"])) {
			if k.Algorithm != "" && k.Algorithm != "ES256" {
				t.Errorf("JWKS key alg %q for an ES256 token", k.Algorithm)
			}
		}
		verifyOffline(t, d.Access(), set)
		d.assertAlive(t, "ES256 session")
		expect(t, d.me(t), http.StatusOK, "")
	})
	t.Run("HS256", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, "--signing-alg", "HS256")
		d := s.newUser(t, true)
		h, _ := decodeJWT(t, d.Access())
		if h["alg"] != "HS256" || h["typ"] != "at+jwt" {
			t.Errorf("header = %v, want alg HS256 typ at+jwt", h)
		}
		_, raw := fetchJWKS(t, s) // checks there is no "k"
		if strings.Contains(string(raw), `"k"`) {
			t.Errorf("HS256 JWKS contains a symmetric key: %s", raw)
		}
		d.assertAlive(t, "HS256 session")
		expect(t, d.me(t), http.StatusOK, "")
		// A token with a flipped signature byte is refused.
		parts := strings.Split(d.Access(), ".")
		sig, _ := b64.DecodeString(parts[2])
		sig[0] ^= 1
		bad := parts[0] + "." + parts[1] + "." + b64.EncodeToString(sig)
		expect(t, s.meWith(t, bad), http.StatusUnauthorized, "invalid_token")
	})
}

func stringOf(v any) string {
	s, _ := v.(string)
	return s
}

func TestBearerErrors(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	d := s.newUser(t, true)
	good := d.Access()
	h, c := decodeJWT(t, good)
	parts := strings.Split(good, ".")

	// No Authorization header: a bare challenge.
	r := s.do(t, "GET", "/auth/me", nil)
	expect(t, r, http.StatusUnauthorized, "")
	wa := r.Header.Get("WWW-Authenticate")
	if !strings.HasPrefix(wa, "Bearer") || strings.Contains(wa, "error=") {
		t.Errorf("%s: WWW-Authenticate = %q, want Bearer without an error attribute", r.req, wa)
	}

	set, _ := fetchJWKS(t, s)
	var pub []byte
	for _, k := range set.Keys {
		if pk, ok := k.Key.(ed25519.PublicKey); ok {
			pub = pk
		}
	}
	_, attacker, _ := ed25519.GenerateKey(rand.Reader)
	attackerPub := attacker.Public().(ed25519.PublicKey)

	withHeader := func(mod func(map[string]any)) map[string]any {
		m := map[string]any{}
		for k, v := range h {
			m[k] = v
		}
		mod(m)
		return m
	}
	claimsWith := func(mod func(map[string]any)) map[string]any {
		m := map[string]any{}
		for k, v := range c {
			m[k] = v
		}
		mod(m)
		return m
	}
	edSign := func(in []byte) []byte { return ed25519.Sign(attacker, in) }
	hmacWith := func(key []byte) func([]byte) []byte {
		return func(in []byte) []byte {
			m := hmac.New(sha256.New, key)
			m.Write(in)
			return m.Sum(nil)
		}
	}
	flipSig := func() string {
		sig, _ := b64.DecodeString(parts[2])
		sig[len(sig)/2] ^= 0x40
		return parts[0] + "." + parts[1] + "." + b64.EncodeToString(sig)
	}

	bad := map[string]string{
		"garbage":                  "garbage",
		"empty-ish":                "a.b.c",
		"flipped sig":              flipSig(),
		"no signature":             parts[0] + "." + parts[1] + ".",
		"payload swapped":          parts[0] + "." + b64.EncodeToString([]byte(`{"sub":"x","role":"admin"}`)) + "." + parts[2],
		"role elevated (sig kept)": strings.TrimSuffix(encodeJWT(h, claimsWith(func(m map[string]any) { m["role"] = "admin" }), nil), ".") + "." + parts[2],
		"alg none":                 encodeJWT(withHeader(func(m map[string]any) { m["alg"] = "none" }), c, nil),
		"alg None":                 encodeJWT(withHeader(func(m map[string]any) { m["alg"] = "None" }), c, nil),
		"HS256 with pub key":       encodeJWT(withHeader(func(m map[string]any) { m["alg"] = "HS256" }), c, hmacWith(pub)),
		"HS256 with pub b64":       encodeJWT(withHeader(func(m map[string]any) { m["alg"] = "HS256" }), c, hmacWith([]byte(b64.EncodeToString(pub)))),
		"attacker key in jwk": encodeJWT(withHeader(func(m map[string]any) {
			m["jwk"] = map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64.EncodeToString(attackerPub)}
		}), c, edSign),
		"attacker key, jku": encodeJWT(withHeader(func(m map[string]any) {
			m["jku"] = "https://evil.example/jwks.json"
			m["kid"] = "evil"
		}), c, edSign),
		"attacker key, same kid":       encodeJWT(h, c, edSign),
		"typ missing, attacker-signed": encodeJWT(withHeader(func(m map[string]any) { delete(m, "typ") }), c, edSign),
		"oversized":                    strings.Repeat("A", 20000) + "." + parts[1] + "." + parts[2],
		"huge header JSON":             b64.EncodeToString([]byte(`{"alg":"EdDSA","kid":"`+strings.Repeat("k", 6000)+`"}`)) + "." + parts[1] + "." + parts[2],
		"header not JSON":              b64.EncodeToString([]byte("not json")) + "." + parts[1] + "." + parts[2],
		"bad base64":                   "!!!." + parts[1] + "." + parts[2],
		"four parts":                   good + ".AAAA",
		"JWE-shaped":                   "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d",
	}
	for name, tok := range bad {
		r := s.do(t, "GET", "/auth/me", nil, bearer(tok))
		if !expect(t, r, http.StatusUnauthorized, "invalid_token") {
			t.Errorf("case %q", name)
		}
		if wa := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(wa, "Bearer") || !strings.Contains(wa, `error="invalid_token"`) {
			t.Errorf("case %q: WWW-Authenticate = %q, want Bearer error=\"invalid_token\"", name, wa)
		}
	}
	// Other schemes are not Bearer tokens.
	for _, authz := range []string{"Basic dXNlcjpwYXNz", "Bearer", "Bearer  ", good} {
		r := s.do(t, "GET", "/auth/me", nil, hdr("Authorization", authz))
		expect(t, r, http.StatusUnauthorized, "")
	}

	// Tokens in the URL are never accepted.
	r = s.do(t, "GET", "/auth/me?access_token="+url.QueryEscape(good), nil)
	expect(t, r, http.StatusUnauthorized, "")
	r = s.do(t, "GET", "/auth/sessions?access_token="+url.QueryEscape(good), nil)
	expect(t, r, http.StatusUnauthorized, "")
	r = s.do(t, "POST", "/auth/refresh?refresh_token="+url.QueryEscape(d.Refresh()), nil)
	if r.Status == http.StatusOK {
		t.Errorf("%s: refresh token accepted from the URL", r)
	}
	expectStatusIn(t, r, http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden)

	// The genuine token still works after all that.
	expect(t, s.meWith(t, good), http.StatusOK, "")
}

// TestAccessTokenExpiry proves exp is enforced with at most 60s leeway.
func TestAccessTokenExpiry(t *testing.T) {
	if testing.Short() {
		t.Skip("waits about a minute")
	}
	t.Parallel()
	s := startServer(t, "--access-ttl", "1s")
	d := s.newUser(t, true)
	_, c := decodeJWT(t, d.Access())
	exp := numClaim(t, c, "exp")
	if exp-numClaim(t, c, "iat") != 1 {
		t.Errorf("exp - iat = %d, want 1 with --access-ttl 1s", exp-numClaim(t, c, "iat"))
	}
	expired := eventually(time.Until(time.Unix(exp+62, 0)), func() bool {
		r := s.do(t, "GET", "/auth/me", nil, bearer(d.Access()))
		if r.Status == http.StatusUnauthorized {
			expect(t, r, http.StatusUnauthorized, "invalid_token")
			return true
		}
		time.Sleep(time.Second)
		return false
	})
	if !expired {
		t.Errorf("an access token with exp %d is still accepted more than 60s later", exp)
	}
}
