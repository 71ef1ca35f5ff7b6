package httpapi_test

// Hot-path benchmarks of the whole HTTP handler, in process, on a real
// SQLite store, wired the way cmd/gatehouse/serve.go wires the server
// (rate limits off, as in the load harness cmd/gatehouse-bench):
//
//	go test -run '^$' -bench . -benchmem ./httpapi
//	go test -run '^$' -bench 'Me$' -cpuprofile /tmp/me.pprof ./httpapi

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/httpapi"
	"github.com/gatehouse/gatehouse/masterkey"
	"github.com/gatehouse/gatehouse/metrics"
	"github.com/gatehouse/gatehouse/password"
	"github.com/gatehouse/gatehouse/ratelimit"
	"github.com/gatehouse/gatehouse/revoke"
	"github.com/gatehouse/gatehouse/store/sqlite"
	"github.com/gatehouse/gatehouse/token"
)

const benchLeeway = 30 * time.Second

// benchHandler builds the production handler on an SQLite file in a
// temporary directory.
func benchHandler(b *testing.B) http.Handler {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "gh.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	master := make([]byte, 32)
	_, _ = rand.Read(master)
	const issuer, audience = "http://127.0.0.1:8080", "gatehouse"
	accessTTL := 10 * time.Minute
	keys, err := token.NewKeys(st, token.Config{
		Algorithm: token.AlgEdDSA, Issuer: issuer, Audience: audience, TTL: accessTTL,
		Leeway: benchLeeway, SealKey: masterkey.Derive(master, masterkey.PurposeSeal),
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := keys.Load(ctx, time.Now().UTC()); err != nil {
		b.Fatal(err)
	}
	refresh, err := token.NewRefreshCodec(masterkey.Derive(master, masterkey.PurposeRefresh))
	if err != nil {
		b.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	revoker := revoke.New(st, nil, revoke.Config{
		PollInterval: time.Second, StaleAfter: 5 * time.Second,
	}, logger)
	if err := revoker.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(revoker.Wait)
	b.Cleanup(cancel) // runs before Wait (cleanups are LIFO)
	hasher := password.NewHasher(password.DefaultParams(), runtime.NumCPU(), 64)
	m := metrics.New(hasher.Stats)
	svc := auth.New(auth.Config{
		Issuer: issuer, Audience: audience, AccessTTL: accessTTL,
		IdleTTL: 336 * time.Hour, MaxAge: 720 * time.Hour, ReuseGrace: 10 * time.Second, Leeway: benchLeeway,
	}, auth.Deps{
		Store: st, Signer: keys, RefreshCodec: refresh, Hasher: hasher, Revoker: revoker,
		Limiter: ratelimit.NewMemory(time.Now), Observer: m, Logger: logger,
	})
	api := httpapi.New(httpapi.Config{
		Issuer: issuer, CSRFKey: masterkey.Derive(master, masterkey.PurposeCSRF),
	}, httpapi.Deps{
		Auth: svc, JWKS: keys.JWKS, Metrics: m, Logger: logger,
		Ready: func(context.Context) error { return nil },
	})
	return api.Handler()
}

type benchTokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

// benchSignup creates a user in body mode and returns its first tokens.
func benchSignup(b *testing.B, h http.Handler, email string) benchTokens {
	b.Helper()
	body := `{"email":"` + email + `","password":"bench: correct horse battery staple","token_transport":"body"}`
	req := httptest.NewRequest(http.MethodPost, "/auth/signup", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		b.Fatalf("signup: %d %s", rec.Code, rec.Body)
	}
	var t benchTokens
	if err := json.Unmarshal(rec.Body.Bytes(), &t); err != nil {
		b.Fatal(err)
	}
	return t
}

// BenchmarkMe is GET /auth/me with a Bearer token: signature check,
// revocation check, one user read, JSON out.
func BenchmarkMe(b *testing.B) {
	h := benchHandler(b)
	t := benchSignup(b, h, "me@example.com")
	auth := "Bearer " + t.AccessToken
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodGet, "/auth/me", nil)
			req.Header.Set("Authorization", auth)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Errorf("me: %d %s", rec.Code, rec.Body)
				return
			}
		}
	})
}

// BenchmarkRefresh is POST /auth/refresh in body mode, each goroutine
// rotating its own session: one rotation transaction, one signature,
// JSON in and out.
func BenchmarkRefresh(b *testing.B) {
	h := benchHandler(b)
	first := benchSignup(b, h, "refresh@example.com")
	// More sessions than goroutines; each goroutine takes the next one.
	tokens := make(chan string, 8*runtime.GOMAXPROCS(0))
	tokens <- first.RefreshToken
	for len(tokens) < cap(tokens) {
		body := `{"email":"refresh@example.com","password":"bench: correct horse battery staple","token_transport":"body"}`
		req := httptest.NewRequest(http.MethodPost, "/auth/login", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var t benchTokens
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &t) != nil {
			b.Fatalf("login: %d %s", rec.Code, rec.Body)
		}
		tokens <- t.RefreshToken
	}
	// 16 goroutines on 2 CPUs, like the harness's 16 workers: rotations
	// wait on the database, not on a CPU.
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		tok := <-tokens
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/auth/refresh", strings.NewReader(`{"refresh_token":"`+tok+`"}`))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			var t benchTokens
			if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &t) != nil {
				b.Errorf("refresh: %d %s", rec.Code, rec.Body)
				return
			}
			tok = t.RefreshToken
		}
	})
}
