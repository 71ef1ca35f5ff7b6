package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
)

// Forward-auth: GET /auth/verify with an access token (verify-token) and
// with an API key (verify-apikey), against "bare", a plain net/http handler
// in this process that answers 200 with no body, as /auth/verify does. The
// reference is measured before and after the two scenarios and averaged,
// so that a neighbour's load on a shared machine weighs on both sides.

// bareServer is the forward-auth reference: 200, no body.
func bareServer() (base string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// bearerGetOp loops GET url with a Bearer credential, expecting 200.
func bearerGetOp(c *http.Client, url, cred string) op {
	auth := "Bearer " + cred
	return func(ctx context.Context) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false
		}
		req.Header.Set("Authorization", auth)
		resp, err := c.Do(req)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
}

// createAPIKey creates a key for the session's user.
func createAPIKey(ctx context.Context, c *http.Client, base, access string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/auth/api-keys", bytes.NewReader([]byte(`{"name":"bench"}`)))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("create api key: %d %s", resp.StatusCode, body)
	}
	var out struct {
		Key string `json:"key"`
	}
	return out.Key, json.Unmarshal(body, &out)
}

func verifyScenarios(ctx context.Context, o *options, bin, dir string, client *http.Client, want func(string) bool) []row {
	var rows []row
	fail := func(name, msg string) []row { return append(rows, row{scenario: name, failed: msg}) }
	dbPath := filepath.Join(dir, "verify", "gh.db")
	if err := os.MkdirAll(filepath.Dir(dbPath), 0o700); err != nil {
		return fail("verify", err.Error())
	}
	srv, err := startServer(ctx, bin, dir, "verify", "--database", "sqlite:"+dbPath)
	if err != nil {
		return fail("verify", err.Error())
	}
	defer srv.stop()
	email := "verify@example.com"
	if _, err := signup(ctx, client, srv.base, email); err != nil {
		return fail("verify", err.Error())
	}
	sessions, err := workerSessions(ctx, client, srv.base, email, o.workers)
	if err != nil {
		return fail("verify", err.Error())
	}
	keys := make([]string, o.workers)
	for i := range keys {
		if keys[i], err = createAPIKey(ctx, client, srv.base, sessions[i].AccessToken); err != nil {
			return fail("verify", err.Error())
		}
	}
	base, stop, err := bareServer()
	if err != nil {
		return fail("bare (reference)", err.Error())
	}
	defer stop()
	bare := func() *result {
		logf("bare reference: %d workers, %s", o.workers, o.dur)
		hc := newClient(o.workers)
		defer hc.CloseIdleConnections()
		return runLoad(ctx, o.workers, o.warmup, o.dur, func(int) op { return getOp(hc, base+"/") })
	}
	before := bare()
	var measured []row
	if want("verify-token") {
		logf("verify-token: GET /auth/verify with access tokens, %d workers, %s", o.workers, o.dur)
		res := runLoad(ctx, o.workers, o.warmup, o.dur, func(w int) op { return bearerGetOp(client, srv.base+"/auth/verify", sessions[w].AccessToken) })
		measured = append(measured, row{scenario: "verify-token (GET /auth/verify, access token)", res: res, value: res.rps(), target: 0.50})
	}
	if want("verify-apikey") {
		logf("verify-apikey: GET /auth/verify with API keys, %d workers, %s", o.workers, o.dur)
		res := runLoad(ctx, o.workers, o.warmup, o.dur, func(w int) op { return bearerGetOp(client, srv.base+"/auth/verify", keys[w]) })
		measured = append(measured, row{scenario: "verify-apikey (GET /auth/verify, API key)", res: res, value: res.rps(), target: 0.40})
	}
	after := bare()
	ref := (before.rps() + after.rps()) / 2
	rows = append(rows, row{scenario: "bare (net/http 200, reference)", value: ref,
		note: fmt.Sprintf("mean of %.0f/s before and %.0f/s after the verify scenarios", before.rps(), after.rps())})
	for _, r := range measured {
		r.reference, r.refValue = "bare", ref
		rows = append(rows, r)
	}
	return rows
}
