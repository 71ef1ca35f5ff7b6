package verifier

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

const (
	issuer   = "https://auth.test"
	audience = "https://api.test"
	feedKey  = "gh_feedkey"
)

// fakeGatehouse serves a JWKS and a revocation feed as Gatehouse does.
type fakeGatehouse struct {
	t   testing.TB
	srv *httptest.Server

	mu      sync.Mutex
	keys    []jose.JSONWebKey // public
	items   []map[string]any  // feed entries; the cursor of items[i] is i+1
	changed chan struct{}

	jwksFetches  atomic.Int64
	lastEventIDs chan string
	streams      atomic.Int64
	// streamMode: "sse" (default), "500" (stream requests fail), "json"
	// (stream requests get a JSON page: a proxy that does not stream).
	streamMode atomic.Value
	feedDown   atomic.Bool
}

func newFakeGatehouse(t testing.TB) *fakeGatehouse {
	g := &fakeGatehouse{t: t, changed: make(chan struct{}), lastEventIDs: make(chan string, 100)}
	g.streamMode.Store("sse")
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		g.jwksFetches.Add(1)
		g.mu.Lock()
		defer g.mu.Unlock()
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: g.keys})
	})
	mux.HandleFunc("/auth/revocations", g.feed)
	g.srv = httptest.NewServer(mux)
	t.Cleanup(g.srv.Close)
	return g
}

func (g *fakeGatehouse) addKey(alg jose.SignatureAlgorithm) jose.JSONWebKey {
	var priv, pub any
	switch alg {
	case jose.EdDSA:
		p, k, _ := ed25519.GenerateKey(rand.Reader)
		pub, priv = p, k
	case jose.ES256:
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		pub, priv = &k.PublicKey, k
	}
	kid := fmt.Sprintf("k%d", time.Now().UnixNano())
	g.mu.Lock()
	g.keys = append(g.keys, jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: string(alg), Use: "sig"})
	g.mu.Unlock()
	return jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: string(alg)}
}

func (g *fakeGatehouse) revoke(item map[string]any) {
	g.mu.Lock()
	item["at"] = time.Now().UTC().Format(time.RFC3339Nano)
	g.items = append(g.items, item)
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

func (g *fakeGatehouse) after(cursor int) ([]map[string]any, chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if cursor > len(g.items) {
		cursor = len(g.items)
	}
	return g.items[cursor:], g.changed
}

func (g *fakeGatehouse) feed(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+feedKey {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if g.feedDown.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	cursor := 0
	if a := r.URL.Query().Get("after"); a != "" {
		cursor, _ = strconv.Atoi(a)
	}
	if r.Header.Get("Accept") == "text/event-stream" {
		mode := g.streamMode.Load().(string)
		if mode == "500" {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		if mode == "sse" {
			g.streams.Add(1)
			if id := r.Header.Get("Last-Event-ID"); id != "" {
				g.lastEventIDs <- id
				cursor, _ = strconv.Atoi(id)
			}
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			for {
				items, changed := g.after(cursor)
				for _, it := range items {
					cursor++
					b, _ := json.Marshal(it)
					fmt.Fprintf(w, "id: %d\ndata: %s\n\n", cursor, b)
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-changed:
				case <-time.After(50 * time.Millisecond):
					fmt.Fprint(w, ": heartbeat\n\n")
				}
				if g.streamMode.Load().(string) != "sse" {
					return // the "server" drops the stream
				}
			}
		}
	}
	items, _ := g.after(cursor)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"revocations": items, "cursor": strconv.Itoa(cursor + len(items))})
}

type claims map[string]any

func (g *fakeGatehouse) claims(sub, sid string) claims {
	now := time.Now()
	return claims{
		"iss": issuer, "aud": audience, "sub": sub, "sid": sid, "jti": "j-" + sid + strconv.FormatInt(now.UnixNano(), 36),
		"role": "user", "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	}
}

func sign(t testing.TB, key jose.JSONWebKey, c claims, typ string) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Algorithm), Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(c)
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (g *fakeGatehouse) verifier(t *testing.T, mod func(*Config)) *Verifier {
	t.Helper()
	cfg := Config{
		Issuer: issuer, Audience: audience, JWKSURL: g.srv.URL + "/.well-known/jwks.json",
		FeedURL: g.srv.URL + "/auth/revocations", FeedCredential: feedKey,
		PollInterval: 50 * time.Millisecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := v.Start(ctx); err != nil {
		cancel()
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { cancel(); v.Wait() })
	return v
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func invalid(err error) bool { return errors.Is(err, ErrInvalidToken) }

func TestVerifyAcceptsAGoodToken(t *testing.T) {
	g := newFakeGatehouse(t)
	key := g.addKey(jose.EdDSA)
	v := g.verifier(t, nil)
	c := g.claims("u1", "s1")
	c["scope"] = "read write"
	c["amr"] = []string{"pwd"}
	got, err := v.Verify(t.Context(), sign(t, key, c, "at+jwt"))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.Subject != "u1" || got.SessionID != "s1" || got.Role != "user" || !got.HasScope("write") || got.HasScope("admin") || got.AMR[0] != "pwd" {
		t.Fatalf("claims %+v", got)
	}
	// aud as an array is accepted too.
	c["aud"] = []string{"other", audience}
	if _, err := v.Verify(t.Context(), sign(t, key, c, "at+jwt")); err != nil {
		t.Fatalf("aud array: %v", err)
	}
}

func TestVerifyRefusesBadTokens(t *testing.T) {
	g := newFakeGatehouse(t)
	key := g.addKey(jose.EdDSA)
	v := g.verifier(t, nil)
	now := time.Now()
	mod := func(f func(claims)) string {
		c := g.claims("u1", "s1")
		f(c)
		return sign(t, key, c, "at+jwt")
	}
	good := mod(func(claims) {})
	parts := strings.Split(good, ".")
	pubBytes := []byte(g.keys[0].Key.(ed25519.PublicKey))
	hsKey := jose.JSONWebKey{Key: pubBytes, KeyID: key.KeyID, Algorithm: string(jose.HS256)}
	// An attacker's own key, offered in the token's jwk header.
	_, evil, _ := ed25519.GenerateKey(rand.Reader)
	evilSigner, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: evil},
		(&jose.SignerOptions{EmbedJWK: true}).WithType("at+jwt").WithHeader("kid", key.KeyID))
	evilObj, _ := evilSigner.Sign([]byte(`{"iss":"` + issuer + `","aud":"` + audience + `","sub":"u1","jti":"x","iat":` + strconv.FormatInt(now.Unix(), 10) + `,"exp":` + strconv.FormatInt(now.Add(time.Hour).Unix(), 10) + `}`))
	evilTok, _ := evilObj.CompactSerialize()
	noneTok := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt","kid":"`+key.KeyID+`"}`)) + "." + parts[1] + "."

	cases := map[string]string{
		"wrong issuer":          mod(func(c claims) { c["iss"] = "https://evil.test" }),
		"wrong audience":        mod(func(c claims) { c["aud"] = "https://other.test" }),
		"expired":               mod(func(c claims) { c["exp"] = now.Add(-time.Minute).Unix() }),
		"no exp":                mod(func(c claims) { delete(c, "exp") }),
		"no iat":                mod(func(c claims) { delete(c, "iat") }),
		"issued in the future":  mod(func(c claims) { c["iat"] = now.Add(5 * time.Minute).Unix() }),
		"not yet valid":         mod(func(c claims) { c["nbf"] = now.Add(5 * time.Minute).Unix() }),
		"no sub":                mod(func(c claims) { delete(c, "sub") }),
		"no jti":                mod(func(c claims) { delete(c, "jti") }),
		"absurd exp":            mod(func(c claims) { c["exp"] = 1e300 }),
		"no typ":                sign(t, key, g.claims("u1", "s1"), ""),
		"typ JWT":               sign(t, key, g.claims("u1", "s1"), "JWT"),
		"alg none":              noneTok,
		"HS256 with public key": sign(t, hsKey, g.claims("u1", "s1"), "at+jwt"),
		"embedded jwk":          evilTok,
		"tampered payload":      parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin"}`)) + "." + parts[2],
		"garbage":               "a.b.c",
		"empty":                 "",
		"oversized":             strings.Repeat("a", 9000),
	}
	for name, tok := range cases {
		if _, err := v.Verify(t.Context(), tok); !invalid(err) {
			t.Errorf("%s: Verify = %v, want ErrInvalidToken", name, err)
		}
	}
	if _, err := v.Verify(t.Context(), good); err != nil {
		t.Fatalf("the good token: %v", err)
	}
}

func TestAlgorithmsArePinned(t *testing.T) {
	g := newFakeGatehouse(t)
	ed := g.addKey(jose.EdDSA)
	es := g.addKey(jose.ES256)
	edOnly := g.verifier(t, nil)
	if _, err := edOnly.Verify(t.Context(), sign(t, es, g.claims("u", "s"), "at+jwt")); !invalid(err) {
		t.Fatalf("ES256 token accepted by an EdDSA-only verifier: %v", err)
	}
	both := g.verifier(t, func(c *Config) { c.Algorithms = []string{"ES256", "EdDSA"} })
	for _, k := range []jose.JSONWebKey{ed, es} {
		if _, err := both.Verify(t.Context(), sign(t, k, g.claims("u", "s"), "at+jwt")); err != nil {
			t.Fatalf("%s token: %v", k.Algorithm, err)
		}
	}
	for _, alg := range []string{"none", "HS256", "RS256"} {
		if _, err := New(Config{Issuer: issuer, Audience: audience, DisableFeed: true, Algorithms: []string{alg}}); err == nil {
			t.Errorf("New accepted algorithm %s", alg)
		}
	}
}

func TestUnknownKidRefetchIsThrottled(t *testing.T) {
	g := newFakeGatehouse(t)
	g.addKey(jose.EdDSA)
	v := g.verifier(t, func(c *Config) { c.RefetchInterval = 300 * time.Millisecond })
	fetches := g.jwksFetches.Load()

	rotated := g.addKey(jose.EdDSA) // a key rotated in at Gatehouse
	tok := sign(t, rotated, g.claims("u", "s"), "at+jwt")
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatalf("token of a new key: %v", err)
	}
	if n := g.jwksFetches.Load() - fetches; n != 1 {
		t.Fatalf("%d JWKS fetches for one unknown kid, want 1", n)
	}
	// A flood of made-up kids costs at most one fetch per interval.
	_, stray, _ := ed25519.GenerateKey(rand.Reader)
	for i := range 50 {
		k := jose.JSONWebKey{Key: stray, KeyID: "made-up-" + strconv.Itoa(i), Algorithm: "EdDSA"}
		if _, err := v.Verify(t.Context(), sign(t, k, g.claims("u", "s"), "at+jwt")); !invalid(err) {
			t.Fatalf("made-up kid accepted: %v", err)
		}
	}
	if n := g.jwksFetches.Load() - fetches; n > 2 {
		t.Fatalf("%d JWKS fetches after 50 unknown kids, want at most 2", n)
	}
}

func TestFeedRevokesEveryKind(t *testing.T) {
	g := newFakeGatehouse(t)
	key := g.addKey(jose.EdDSA)
	v := g.verifier(t, nil)
	sessTok := sign(t, key, g.claims("u1", "s1"), "at+jwt")
	jc := g.claims("u2", "s2")
	jtiTok := sign(t, key, jc, "at+jwt")
	userClaims := g.claims("u3", "s3")
	userClaims["iat"] = time.Now().Add(-time.Minute).Unix()
	userTok := sign(t, key, userClaims, "at+jwt")
	for _, tok := range []string{sessTok, jtiTok, userTok} {
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatalf("before revocation: %v", err)
		}
	}
	g.revoke(map[string]any{"kind": "session", "session_id": "s1"})
	g.revoke(map[string]any{"kind": "token", "jti": jc["jti"]})
	g.revoke(map[string]any{"kind": "user", "user_id": "u3", "before": time.Now().UTC().Add(-time.Second).Format(time.RFC3339)})
	g.revoke(map[string]any{"kind": "api_key", "id": "key1"})
	g.revoke(map[string]any{"kind": "kind_from_the_future", "x": "y"})
	for name, tok := range map[string]string{"session": sessTok, "jti": jtiTok, "user before": userTok} {
		eventually(t, time.Second, name+" revoked", func() bool {
			_, err := v.Verify(t.Context(), tok)
			return invalid(err)
		})
	}
	eventually(t, time.Second, "api key revoked", func() bool { return v.APIKeyRevoked("key1") })
	if v.APIKeyRevoked("key2") {
		t.Fatal("an unrevoked API key reported revoked")
	}
	// The user's tokens issued after the cutoff still work.
	if _, err := v.Verify(t.Context(), sign(t, key, g.claims("u3", "s4"), "at+jwt")); err != nil {
		t.Fatalf("token issued after the user cutoff: %v", err)
	}
}

func TestStartLoadsEarlierRevocations(t *testing.T) {
	g := newFakeGatehouse(t)
	key := g.addKey(jose.EdDSA)
	g.revoke(map[string]any{"kind": "session", "session_id": "old"})
	v := g.verifier(t, nil) // started after the revocation
	if _, err := v.Verify(t.Context(), sign(t, key, g.claims("u", "old"), "at+jwt")); !invalid(err) {
		t.Fatalf("token of a session revoked before start: %v", err)
	}
}

func TestStreamReconnectsFromCursor(t *testing.T) {
	g := newFakeGatehouse(t)
	key := g.addKey(jose.EdDSA)
	v := g.verifier(t, nil)
	g.revoke(map[string]any{"kind": "session", "session_id": "a"})
	eventually(t, time.Second, "first revocation", func() bool {
		_, err := v.Verify(t.Context(), sign(t, key, g.claims("u", "a"), "at+jwt"))
		return invalid(err)
	})
	// The server drops the stream and, for a while, answers stream
	// requests with a JSON page (a proxy that does not stream): the
	// verifier polls, then streams again from its cursor.
	g.streamMode.Store("drop")
	g.revoke(map[string]any{"kind": "session", "session_id": "b"})
	eventually(t, 2*time.Second, "revocation b through polling", func() bool {
		_, err := v.Verify(t.Context(), sign(t, key, g.claims("u", "b"), "at+jwt"))
		return invalid(err)
	})
	g.streamMode.Store("sse")
	for id := ""; id != "2"; {
		select {
		case id = <-g.lastEventIDs:
		case <-time.After(3 * time.Second):
			t.Fatal("no new stream resumed with Last-Event-ID 2, the cursor")
		}
	}
	g.revoke(map[string]any{"kind": "session", "session_id": "c"})
	for _, sid := range []string{"c"} {
		eventually(t, 2*time.Second, "revocation "+sid, func() bool {
			_, err := v.Verify(t.Context(), sign(t, key, g.claims("u", sid), "at+jwt"))
			return invalid(err)
		})
	}
}

func TestPollingFallback(t *testing.T) {
	for _, mode := range []string{"500", "json"} {
		t.Run(mode, func(t *testing.T) {
			g := newFakeGatehouse(t)
			g.streamMode.Store(mode)
			key := g.addKey(jose.EdDSA)
			v := g.verifier(t, nil)
			g.revoke(map[string]any{"kind": "session", "session_id": "p"})
			eventually(t, 2*time.Second, "revocation through polling", func() bool {
				_, err := v.Verify(t.Context(), sign(t, key, g.claims("u", "p"), "at+jwt"))
				return invalid(err)
			})
			if g.streams.Load() != 0 {
				t.Fatalf("a stream was served in mode %s", mode)
			}
		})
	}
}

func TestStaleFeedFailsClosed(t *testing.T) {
	g := newFakeGatehouse(t)
	g.streamMode.Store("500")
	key := g.addKey(jose.EdDSA)
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	v := g.verifier(t, func(c *Config) { c.Now = clock; c.StaleAfter = 10 * time.Second })
	open := g.verifier(t, func(c *Config) { c.Now = clock; c.StaleAfter = 10 * time.Second; c.FailOpen = true })
	tok := sign(t, key, g.claims("u", "s"), "at+jwt")
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatalf("fresh: %v", err)
	}
	g.feedDown.Store(true)
	time.Sleep(100 * time.Millisecond) // polls in flight finish
	now.Add(int64(11 * time.Second))
	if _, err := v.Verify(t.Context(), tok); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("stale feed: Verify = %v, want ErrUnavailable", err)
	}
	if v.Ready() == nil {
		t.Fatal("Ready hid the stale feed")
	}
	if _, err := open.Verify(t.Context(), tok); err != nil {
		t.Fatalf("FailOpen on a stale feed: %v", err)
	}
	// Back: fresh again, without a restart.
	g.feedDown.Store(false)
	eventually(t, 2*time.Second, "fresh again", func() bool { return v.Ready() == nil })
}

func TestStartFailsWithoutFeedAccess(t *testing.T) {
	g := newFakeGatehouse(t)
	g.addKey(jose.EdDSA)
	v, err := New(Config{Issuer: issuer, Audience: audience, JWKSURL: g.srv.URL + "/.well-known/jwks.json",
		FeedURL: g.srv.URL + "/auth/revocations", FeedCredential: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := v.Start(ctx); err == nil {
		t.Fatal("Start succeeded without access to the feed")
	}
	if _, err := New(Config{Issuer: issuer, Audience: audience}); err == nil {
		t.Fatal("New accepted a config without a feed credential")
	}
}

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
