// Command testop is a small OpenID provider for tests that need a real one from outside the
// test process (the browser tests of the account page): zitadel/oidc's certified op package
// over its example in-memory storage, with one confidential web client, users given by flags,
// and a login page with a Cancel button that answers the client with access_denied.
//
//	go run ./e2e/testop -addr 127.0.0.1:0 -client-id gatehouse -client-secret s3cret \
//	    -redirect http://127.0.0.1:8080/auth/idps/testop/callback \
//	    -user alice@example.com:password:alice@example.com
//
// Once it listens it prints one JSON line on stdout, {"issuer":"http://127.0.0.1:PORT"}, and
// serves until SIGINT or SIGTERM; with -watch-stdin also until its standard input is closed
// (a pipe from the test runner), so that it does not outlive a runner that died.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "testop:", err)
		os.Exit(1)
	}
}

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("testop", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	clientID := fs.String("client-id", "gatehouse", "the client's client_id")
	clientSecret := fs.String("client-secret", "", "the client's client_secret (required)")
	userinfoInIDToken := fs.Bool("id-token-claims", true, "put the email and profile claims into the ID token too (as Google does), not only into userinfo")
	watchStdin := fs.Bool("watch-stdin", false, "exit when standard input reaches its end")
	var redirects, users listFlag
	fs.Var(&redirects, "redirect", "a redirect URI registered for the client (repeatable, at least one)")
	fs.Var(&users, "user", "a user, USERNAME:PASSWORD:EMAIL[:unverified] (repeatable); the email is verified unless marked")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *clientSecret == "" || len(redirects) == 0 {
		return errors.New("-client-secret and at least one -redirect are required")
	}
	store, err := parseUsers(users, *clientID)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	issuer := "http://" + ln.Addr().String()
	handler, err := newProvider(issuer, opConfig{
		clientID:          *clientID,
		clientSecret:      *clientSecret,
		redirects:         redirects,
		users:             store,
		userinfoInIDToken: *userinfoInIDToken,
	})
	if err != nil {
		ln.Close()
		return err
	}
	// zitadel/oidc logs through slog's default logger: keep it on stderr, quiet.
	slog.SetDefault(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))

	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	line, _ := json.Marshal(map[string]string{"issuer": issuer})
	if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil {
		srv.Close()
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stdinClosed := make(chan struct{})
	if *watchStdin {
		go func() {
			_, _ = io.Copy(io.Discard, stdin)
			close(stdinClosed)
		}()
	}
	select {
	case <-ctx.Done():
	case <-stdinClosed:
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

// randomKey is the op's key for its opaque tokens: fresh per process, like its signing key.
func randomKey() ([32]byte, error) {
	var k [32]byte
	_, err := rand.Read(k[:])
	return k, err
}
