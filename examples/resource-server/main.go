// Command resource-server is an example service that accepts Gatehouse
// access tokens, verified in process by package verifier: no call to
// Gatehouse per request, and revocations (logout, password change, an
// account disabled) followed through Gatehouse's revocation feed.
//
//	GATEHOUSE_FEED_KEY=gh_... resource-server --issuer https://auth.example.com \
//	    --audience https://api.example.com --addr 127.0.0.1:9090
//
// GET /hello needs any valid token; GET /admin needs the admin role.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gatehouse/gatehouse/verifier"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "resource-server:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:9090", "listen address")
	issuer := flag.String("issuer", os.Getenv("GATEHOUSE_ISSUER"), "Gatehouse's issuer (its --issuer)")
	audience := flag.String("audience", os.Getenv("GATEHOUSE_AUDIENCE"), "the audience tokens must carry (Gatehouse's --audience)")
	gatehouseURL := flag.String("gatehouse-url", "", "where Gatehouse is reached, when not at the issuer URL")
	algs := flag.String("algorithms", "EdDSA", "accepted signing algorithms, comma-separated (EdDSA, ES256)")
	flag.Parse()
	feedKey := os.Getenv("GATEHOUSE_FEED_KEY") // not a flag: flags show in ps
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	cfg := verifier.Config{
		Issuer: *issuer, Audience: *audience, FeedCredential: feedKey,
		Algorithms: strings.Split(*algs, ","), Logger: logger,
	}
	if *gatehouseURL != "" {
		base := strings.TrimRight(*gatehouseURL, "/")
		cfg.JWKSURL = base + "/.well-known/jwks.json"
		cfg.FeedURL = base + "/auth/revocations"
	}
	v, err := verifier.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := v.Start(ctx); err != nil {
		return err
	}
	defer v.Wait()

	mux := http.NewServeMux()
	mux.Handle("GET /hello", v.Middleware(verifier.Require{})(http.HandlerFunc(hello)))
	mux.Handle("GET /admin", v.Middleware(verifier.Require{Roles: []string{"admin"}})(http.HandlerFunc(hello)))
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := v.Ready(); err != nil {
			http.Error(w, "revocation state not current", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	// The one line on stdout: where we listen (tests start us on port 0).
	fmt.Printf("listening on %s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func hello(w http.ResponseWriter, r *http.Request) {
	c, _ := verifier.ClaimsFrom(r.Context())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"user_id": c.Subject, "role": c.Role, "session_id": c.SessionID})
}
