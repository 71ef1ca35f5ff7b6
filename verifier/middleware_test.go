package verifier

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

func TestMiddleware(t *testing.T) {
	g := newFakeGatehouse(t)
	key := g.addKey(jose.EdDSA)
	v := g.verifier(t, nil)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, found := ClaimsFrom(r.Context())
		if !found {
			t.Error("no claims in the context")
			return
		}
		_, _ = w.Write([]byte(c.Subject))
	})
	user := g.claims("u1", "s1")
	admin := g.claims("a1", "s2")
	admin["role"] = "admin"
	scoped := g.claims("u2", "s3")
	scoped["scope"] = "orders:read"
	userTok, adminTok, scopedTok := sign(t, key, user, "at+jwt"), sign(t, key, admin, "at+jwt"), sign(t, key, scoped, "at+jwt")

	cases := []struct {
		name      string
		req       Require
		auth      string
		status    int
		code      string
		challenge string
	}{
		{"no header", Require{}, "", 401, "invalid_token", "Bearer"},
		{"other scheme", Require{}, "Basic dTpw", 401, "invalid_token", "Bearer"},
		{"bad token", Require{}, "Bearer not.a.token", 401, "invalid_token", `Bearer error="invalid_token"`},
		{"any role", Require{}, "Bearer " + userTok, 200, "", ""},
		{"admin route, user", Require{Roles: []string{"admin"}}, "Bearer " + userTok, 403, "forbidden", ""},
		{"admin route, admin", Require{Roles: []string{"admin"}}, "Bearer " + adminTok, 200, "", ""},
		{"scope missing", Require{Scopes: []string{"orders:read"}}, "Bearer " + userTok, 403, "insufficient_scope", `Bearer error="insufficient_scope", scope="orders:read"`},
		{"scope present", Require{Scopes: []string{"orders:read"}}, "Bearer " + scopedTok, 200, "", ""},
	}
	for _, tc := range cases {
		h := v.Middleware(tc.req)(ok)
		r := httptest.NewRequest("GET", "/x", nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.status {
			t.Errorf("%s: status %d, want %d (%s)", tc.name, w.Code, tc.status, w.Body)
			continue
		}
		if tc.status == 200 {
			continue
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: Content-Type %q", tc.name, ct)
		}
		var p struct {
			Type, Title, Detail, Code string
			Status                    int
		}
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Code != tc.code || p.Status != tc.status || p.Title == "" || p.Detail == "" {
			t.Errorf("%s: problem %s (%v), want code %s", tc.name, w.Body, err, tc.code)
		}
		if got := w.Header().Get("WWW-Authenticate"); got != tc.challenge {
			t.Errorf("%s: WWW-Authenticate %q, want %q", tc.name, got, tc.challenge)
		}
	}
}

// BenchmarkMiddleware measures what the middleware adds per request to a
// bare handler: the "bare" sub-benchmark is the handler alone, "verified"
// the same handler behind the middleware with a valid token (signature
// verified once, then cached; times and revocation checked every time),
// and "signature" with the cache emptied before every request (the cost
// of the first use of a token).
func BenchmarkMiddleware(b *testing.B) {
	g := newFakeGatehouse(b)
	key := g.addKey(jose.EdDSA)
	v, err := New(Config{Issuer: issuer, Audience: audience, JWKSURL: g.srv.URL + "/.well-known/jwks.json",
		FeedURL: g.srv.URL + "/auth/revocations", FeedCredential: feedKey})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := contextWithCancel()
	defer func() { cancel(); v.Wait() }()
	if err := v.Start(ctx); err != nil {
		b.Fatal(err)
	}
	for i := range 1000 { // a realistic revocation state
		g.revoke(map[string]any{"kind": "session", "session_id": fmt.Sprintf("old%d", i)})
	}
	tok := sign(b, key, g.claims("u1", "s1"), "at+jwt")
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	run := func(b *testing.B, h http.Handler, each func()) {
		r := httptest.NewRequest("GET", "/x", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if each != nil {
				each()
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusNoContent {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, bare, nil) })
	b.Run("verified", func(b *testing.B) { run(b, v.Middleware(Require{})(bare), nil) })
	b.Run("signature", func(b *testing.B) { run(b, v.Middleware(Require{})(bare), v.cache.clear) })
}
