package e2e

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// atkJWKSKey fetches the server's JWKS and returns the first key of kty.
func atkJWKSKey(t *testing.T, s *server, kty string) (jwk map[string]any, raw []byte) {
	t.Helper()
	r := s.do(t, "GET", "/.well-known/jwks.json", nil)
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(r.Body, &set); err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	for _, k := range set.Keys {
		if k["kty"] == kty {
			b, _ := json.Marshal(k)
			return k, b
		}
	}
	t.Fatalf("JWKS has no %s key: %s", kty, r.Body)
	return nil, nil
}

func atkB64Field(t *testing.T, jwk map[string]any, name string) []byte {
	t.Helper()
	s, _ := jwk[name].(string)
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		t.Fatalf("JWK member %s = %q", name, s)
	}
	return b
}

// TestAttackJWTForgeries throws every known JWT attack at the protected
// endpoints. Each must be 401 invalid_token with WWW-Authenticate: Bearer
// error="invalid_token" — never 200, never 500. Tokens signed with the
// server's own key (unsealed with the master secret) prove that each claim
// and header check fires on its own, not only the signature check.
func TestAttackJWTForgeries(t *testing.T) {
	t.Parallel()
	s := atkStartServer(t)
	victim := s.newUser(t, true)
	admin := s.newUser(t, true) // another account, for sub swapping
	good := victim.Access()
	segs := strings.Split(good, ".")
	if len(segs) != 3 {
		t.Fatalf("access token %q is not a compact JWS", abbrev(good))
	}
	hdr0 := atkDecodeSeg(t, segs[0])
	claims0 := atkDecodeSeg(t, segs[1])
	kid, _ := hdr0["kid"].(string)
	if kid == "" || hdr0["alg"] != "EdDSA" {
		t.Fatalf("unexpected header %v", hdr0)
	}
	jwk, jwkJSON := atkJWKSKey(t, s, "OKP")
	pub := atkB64Field(t, jwk, "x")

	// An attacker-controlled endpoint that counts fetches: a server that
	// followed jku/x5u would call it.
	var fetched atomic.Int64
	_, attPriv, _ := ed25519.GenerateKey(rand.Reader)
	attPub := attPriv.Public().(ed25519.PublicKey)
	attJWK := map[string]any{"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": atkB64.EncodeToString(attPub), "alg": "EdDSA", "use": "sig"}
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{attJWK}})
	}))
	defer evil.Close()

	now := time.Now().Unix()
	withClaims := func(mod func(c map[string]any)) []byte {
		c := map[string]any{}
		for k, v := range claims0 {
			c[k] = v
		}
		c["iat"], c["exp"] = now-5, now+300
		if mod != nil {
			mod(c)
		}
		return atkJSON(t, c)
	}
	withHeader := func(mod func(h map[string]any)) []byte {
		h := map[string]any{"alg": "EdDSA", "typ": "at+jwt", "kid": kid}
		if mod != nil {
			mod(h)
		}
		return atkJSON(t, h)
	}

	// Control: a token forged with the server's own key and ordinary
	// header and claims is accepted, so every rejection below is due to
	// the one thing the case changes.
	srvKid, srvSign := atkServerKey(t, s, "EdDSA")
	if srvKid != kid {
		t.Fatalf("unsealed kid %q != token kid %q", srvKid, kid)
	}
	if r := s.meWith(t, atkJWT(withHeader(nil), withClaims(nil), srvSign)); !expect(t, r, http.StatusOK, "") {
		t.Fatalf("control token signed with the server's key was refused; the insider cases below would prove nothing")
	}

	type tc struct{ name, tok string }
	var cases []tc
	add := func(name, tok string) { cases = append(cases, tc{name, tok}) }

	// alg none, every spelling, with and without a signature.
	for _, alg := range []string{"none", "None", "NONE", "nOnE", "noNe", " none", "none ", ""} {
		h := withHeader(func(h map[string]any) { h["alg"] = alg })
		add("alg="+alg+" empty sig", atkJWT(h, withClaims(nil), nil))
		add("alg="+alg+" original sig", atkB64.EncodeToString(h)+"."+segs[1]+"."+segs[2])
		add("alg="+alg+" no kid", atkJWT(atkJSON(t, map[string]any{"alg": alg, "typ": "at+jwt"}), withClaims(nil), nil))
	}
	add("no alg", atkJWT(withHeader(func(h map[string]any) { delete(h, "alg") }), withClaims(nil), srvSign))
	add("alg null", atkJWT(withHeader(func(h map[string]any) { h["alg"] = nil }), withClaims(nil), nil))
	add("alg array", atkJWT(withHeader(func(h map[string]any) { h["alg"] = []string{"none"} }), withClaims(nil), nil))

	// Algorithm confusion: HMAC keyed with the public key in every form
	// a confused verifier might use.
	pemPub := func() []byte {
		der, _ := x509.MarshalPKIXPublicKey(ed25519.PublicKey(pub))
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}()
	for name, key := range map[string][]byte{
		"raw public key": pub, "JWK JSON": jwkJSON, "x string": []byte(jwk["x"].(string)), "PEM": pemPub,
		"empty key": {}, "kid as key": []byte(kid),
	} {
		for _, alg := range []string{"HS256", "HS384", "HS512"} {
			h := withHeader(func(h map[string]any) { h["alg"] = alg })
			add(alg+" keyed with "+name, atkJWT(h, withClaims(nil), atkHS256(key)))
		}
	}

	// Tampered claims and headers under the original signature.
	for name, mod := range map[string]func(c map[string]any){
		"role admin":    func(c map[string]any) { c["role"] = "admin" },
		"other sub":     func(c map[string]any) { c["sub"] = admin.user.ID },
		"later exp":     func(c map[string]any) { c["exp"] = now + 86400*365 },
		"other sid":     func(c map[string]any) { c["sid"] = admin.sid },
		"extra claim":   func(c map[string]any) { c["admin"] = true },
		"unchanged set": nil,
	} {
		c := map[string]any{}
		for k, v := range claims0 {
			c[k] = v
		}
		if mod != nil {
			mod(c)
		}
		p := atkJSON(t, c)
		if name == "unchanged set" {
			// Same claims re-serialised with a space: different bytes.
			p = append([]byte{' '}, p...)
		}
		add("tampered "+name, segs[0]+"."+atkB64.EncodeToString(p)+"."+segs[2])
	}
	add("tampered header typ", atkB64.EncodeToString(withHeader(func(h map[string]any) { h["typ"] = "JWT" }))+"."+segs[1]+"."+segs[2])
	sig, _ := atkB64.DecodeString(segs[2])
	sig[0] ^= 1
	add("flipped signature bit", segs[0]+"."+segs[1]+"."+atkB64.EncodeToString(sig))
	add("signature of another token", segs[0]+"."+segs[1]+"."+strings.Split(admin.Access(), ".")[2])
	add("truncated signature", segs[0]+"."+segs[1]+"."+segs[2][:len(segs[2])-4])

	// Attacker keys: embedded JWK, jku, x5u, x5c, with our kid or theirs.
	attSign := atkEd25519(attPriv)
	for name, mod := range map[string]func(h map[string]any){
		"jwk header, our kid":   func(h map[string]any) { h["jwk"] = attJWK },
		"jwk header, their kid": func(h map[string]any) { h["jwk"] = attJWK; h["kid"] = "attacker" },
		"jku, our kid":          func(h map[string]any) { h["jku"] = evil.URL + "/jwks.json" },
		"jku, their kid":        func(h map[string]any) { h["jku"] = evil.URL + "/jwks.json"; h["kid"] = "attacker" },
		"x5u":                   func(h map[string]any) { h["x5u"] = evil.URL + "/cert.pem" },
		"x5c":                   func(h map[string]any) { h["x5c"] = []string{base64.StdEncoding.EncodeToString([]byte("not a cert"))} },
		"no kid":                func(h map[string]any) { delete(h, "kid") },
	} {
		add("attacker key: "+name, atkJWT(withHeader(mod), withClaims(nil), attSign))
	}
	// kid tricks: path traversal, SQL, empty, wrong types, huge; signed
	// with the attacker's key and with HMAC keys a file or row might hold.
	for _, k := range []any{
		"../../../../../../dev/null", "/dev/null", "../../../etc/passwd", "..%2f..%2fdev%2fnull",
		"' OR '1'='1", "x' UNION SELECT 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' --", "\"; DROP TABLE signing_keys; --",
		"", " ", kid + " ", strings.ToUpper(kid), kid + "\x00", "${jndi:ldap://x}", strings.Repeat("k", 4000),
		1, true, nil, []string{kid}, map[string]any{"kid": kid},
	} {
		h := withHeader(func(h map[string]any) { h["kid"] = k })
		label := fmt.Sprintf("kid %.40q", fmt.Sprint(k))
		add(label+" attacker EdDSA", atkJWT(h, withClaims(nil), attSign))
		hh := withHeader(func(h map[string]any) { h["kid"] = k; h["alg"] = "HS256" })
		add(label+" HS256 empty key", atkJWT(hh, withClaims(nil), atkHS256(nil)))
		add(label+" HS256 'AAA...' key", atkJWT(hh, withClaims(nil), atkHS256([]byte(strings.Repeat("A", 43)))))
	}

	// Insider cases: signed with the server's real key, one thing wrong.
	insider := func(name string, h, c []byte) { add("server key, "+name, atkJWT(h, c, srvSign)) }
	insider("crit [exp]", withHeader(func(h map[string]any) { h["crit"] = []string{"exp"}; h["exp"] = now + 300 }), withClaims(nil))
	insider("crit [b64] b64 false", withHeader(func(h map[string]any) { h["crit"] = []string{"b64"}; h["b64"] = false }), withClaims(nil))
	insider("crit empty", withHeader(func(h map[string]any) { h["crit"] = []string{} }), withClaims(nil))
	insider("crit unknown ext", withHeader(func(h map[string]any) { h["crit"] = []string{"gatehouse-ext"}; h["gatehouse-ext"] = 1 }), withClaims(nil))
	for _, typ := range []any{nil, "", "JWT", "jwt", "at+jws", "id_token", "application/jwt", "at+jwt ", 1} {
		insider(fmt.Sprintf("typ %v", typ), withHeader(func(h map[string]any) {
			if typ == nil {
				delete(h, "typ")
			} else {
				h["typ"] = typ
			}
		}), withClaims(nil))
	}
	for name, mod := range map[string]func(c map[string]any){
		"wrong iss":            func(c map[string]any) { c["iss"] = "https://evil.example" },
		"iss with slash":       func(c map[string]any) { c["iss"] = fmt.Sprint(c["iss"]) + "/" },
		"missing iss":          func(c map[string]any) { delete(c, "iss") },
		"wrong aud":            func(c map[string]any) { c["aud"] = "another-service" },
		"aud array without us": func(c map[string]any) { c["aud"] = []string{"a", "b"} },
		"missing aud":          func(c map[string]any) { delete(c, "aud") },
		"expired 2m ago":       func(c map[string]any) { c["iat"], c["exp"] = now-900, now-120 },
		"expired long ago":     func(c map[string]any) { c["iat"], c["exp"] = 1000, 2000 },
		"missing exp":          func(c map[string]any) { delete(c, "exp") },
		"exp as string":        func(c map[string]any) { c["exp"] = fmt.Sprint(now + 300) },
		"exp huge":             func(c map[string]any) { c["exp"] = 1e300 },
		"exp negative":         func(c map[string]any) { c["exp"] = -1 },
		"nbf in 1h":            func(c map[string]any) { c["nbf"] = now + 3600 },
		"iat in 1h":            func(c map[string]any) { c["iat"], c["exp"] = now+3600, now+3900 },
		"missing sub":          func(c map[string]any) { delete(c, "sub") },
		"missing sid":          func(c map[string]any) { delete(c, "sid") },
		"role superadmin":      func(c map[string]any) { c["role"] = "superadmin" },
		"role Admin":           func(c map[string]any) { c["role"] = "Admin" },
	} {
		insider(name, withHeader(nil), withClaims(mod))
	}
	insider("payload not JSON", withHeader(nil), []byte("not json"))
	insider("payload array", withHeader(nil), []byte(`[1,2]`))
	insider("payload deeply nested", withHeader(nil), []byte(strings.Repeat(`{"a":`, 3000)+"1"+strings.Repeat("}", 3000)))
	insider("payload duplicate sub", withHeader(nil), []byte(`{"sub":"x","sub":"y"}`))

	// Malformed compact serialisations.
	for name, tok := range map[string]string{
		"empty segments":   "..",
		"one dot":          ".",
		"one segment":      segs[0],
		"two segments":     segs[0] + "." + segs[1],
		"four segments":    good + "." + segs[2],
		"five segments":    good + ".a.b",
		"JWE-like":         segs[0] + ".." + "AAAA" + "." + segs[1] + "." + "AAAA",
		"padded base64":    segs[0] + "==." + segs[1] + "." + segs[2],
		"bad base64 chars": segs[0] + ".!!!!." + segs[2],
		"header not JSON":  atkB64.EncodeToString([]byte("{")) + "." + segs[1] + "." + segs[2],
		"header array":     atkB64.EncodeToString([]byte("[]")) + "." + segs[1] + "." + segs[2],
		"header dup alg":   atkB64.EncodeToString([]byte(`{"alg":"EdDSA","alg":"none","kid":"`+kid+`","typ":"at+jwt"}`)) + "." + segs[1] + "." + segs[2],
		"payload 1 char":   segs[0] + ".A." + segs[2],
		"non-canonical":    segs[0] + "." + segs[1] + "." + segs[2][:len(segs[2])-1] + "B",
		"garbage":          "garbage",
		"unicode":          "ey💥.ey💥.💥",
		"JSON serialised":  `{"payload":"` + segs[1] + `","protected":"` + segs[0] + `","signature":"` + segs[2] + `"}`,
	} {
		add("malformed "+name, tok)
	}
	// The standard base64 alphabet: only a token holding '-' or '_' has a
	// different spelling in it (a few percent of tokens have neither).
	if std := strings.NewReplacer("-", "+", "_", "/").Replace(good); std != good {
		add("malformed std alphabet", std)
	}

	// Huge: a JOSE header near and over the size bound, and a huge token.
	add("huge header 6KB", atkJWT(withHeader(func(h map[string]any) { h["pad"] = strings.Repeat("x", 6<<10) }), withClaims(nil), srvSign))
	add("huge header 40KB", atkJWT(withHeader(func(h map[string]any) { h["pad"] = strings.Repeat("x", 40<<10) }), withClaims(nil), srvSign))
	add("huge nested header", atkJWT([]byte(strings.Repeat(`{"a":`, 4000)+"1"+strings.Repeat("}", 4000)), withClaims(nil), srvSign))
	add("huge token 60KB", strings.Repeat("A", 30<<10)+"."+strings.Repeat("B", 30<<10)+".C")

	for _, c := range cases {
		atkExpectInvalidToken(t, s, c.name, c.tok)
	}

	// Authorization header shapes that are not one Bearer token.
	for name, v := range map[string]string{
		"basic scheme":    "Basic " + base64.StdEncoding.EncodeToString([]byte("a:b")),
		"bearer no token": "Bearer",
		"bearer spaces":   "Bearer    ",
		"two tokens":      "Bearer " + good + " " + good,
		"token scheme":    "Token " + good,
		"bearer comma":    "Bearer " + good + ", Bearer " + good,
		"bare token":      good,
	} {
		atkExpectInvalidAuthz(t, s, name, v)
	}
	// Two Authorization headers.
	req, _ := http.NewRequest("GET", s.base+"/auth/me", nil)
	req.Header.Add("Authorization", "Bearer "+good)
	req.Header.Add("Authorization", "Bearer "+admin.Access())
	if res, err := s.hc.Do(req); err != nil {
		t.Errorf("two Authorization headers: %v", err)
	} else {
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized || !strings.Contains(res.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("two Authorization headers: %d %q, want 401 invalid_token", res.StatusCode, res.Header.Get("WWW-Authenticate"))
		}
	}
	// Tokens in the URL are never accepted, even valid ones.
	r := s.do(t, "GET", "/auth/me?access_token="+good, nil)
	expect(t, r, http.StatusUnauthorized, "invalid_token")
	r = s.do(t, "GET", "/auth/me?access_token="+good, nil, bearer(good))
	expect(t, r, http.StatusUnauthorized, "invalid_token")

	// A header past the server's header limit is refused by net/http
	// (431), never a 500 and never reaching a handler.
	st, _, _, err := atkRaw(s, "GET", "/auth/me", nil, map[string]string{"Authorization": "Bearer " + strings.Repeat("A", 200<<10)})
	if err == nil && st != http.StatusRequestHeaderFieldsTooLarge && st != http.StatusUnauthorized {
		t.Errorf("200 KB Authorization header: status %d, want 431 or 401", st)
	}

	if n := fetched.Load(); n != 0 {
		t.Errorf("the server fetched an attacker URL from a token header %d times", n)
	}
	// After all that the genuine token still works and nothing was revoked.
	if r := victim.me(t); !expect(t, r, http.StatusOK, "") {
		t.Errorf("the victim's genuine token stopped working")
	}
}

// TestAttackJWTAlgConfusionES256 is algorithm confusion against a server
// signing with ES256: HS256 keyed with the P-256 public key in its usual
// encodings must be refused.
func TestAttackJWTAlgConfusionES256(t *testing.T) {
	t.Parallel()
	s := atkStartServer(t, "--signing-alg", "ES256")
	d := s.newUser(t, true)
	segs := strings.Split(d.Access(), ".")
	h0 := atkDecodeSeg(t, segs[0])
	if h0["alg"] != "ES256" {
		t.Fatalf("header %v, want ES256", h0)
	}
	jwk, jwkJSON := atkJWKSKey(t, s, "EC")
	x, y := atkB64Field(t, jwk, "x"), atkB64Field(t, jwk, "y")
	pub := &ecdsa.PublicKey{Curve: elliptic.P256()}
	pub.X, pub.Y = new(big.Int).SetBytes(x), new(big.Int).SetBytes(y)
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	uncompressed := append(append([]byte{4}, x...), y...)
	now := time.Now().Unix()
	claims := atkDecodeSeg(t, segs[1])
	claims["iat"], claims["exp"] = now-5, now+300
	payload := atkJSON(t, claims)
	for name, key := range map[string][]byte{"PEM": pemKey, "DER": der, "uncompressed point": uncompressed, "JWK JSON": jwkJSON, "x||y": append(x, y...)} {
		h := atkJSON(t, map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": h0["kid"]})
		atkExpectInvalidToken(t, s, "HS256 keyed with ES256 "+name, atkJWT(h, payload, atkHS256(key)))
	}
	// ES256 signature bytes in DER form rather than JOSE's r||s.
	kid, sign := atkServerKey(t, s, "ES256")
	h := atkJSON(t, map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": kid})
	if r := s.meWith(t, atkJWT(h, payload, sign)); !expect(t, r, http.StatusOK, "") {
		t.Fatalf("control ES256 token refused")
	}
	// ES256 with a zero signature (the "psychic signatures" bug, CVE-2022-21449).
	atkExpectInvalidToken(t, s, "ES256 r=s=0", atkJWT(h, payload, func([]byte) []byte { return make([]byte, 64) }))
	// ES256 token presented as EdDSA and vice versa.
	atkExpectInvalidToken(t, s, "ES256 signature labelled EdDSA", atkJWT(atkJSON(t, map[string]any{"alg": "EdDSA", "typ": "at+jwt", "kid": kid}), payload, sign))
}
