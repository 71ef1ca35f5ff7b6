package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
)

// The OAuth provider's hot endpoints, next to /auth/refresh in the same
// run: the token endpoint's refresh_token grant (client authentication,
// a session read to check the client, then the same rotation) and
// introspection of an app's access token.

const benchRedirect = "https://app.bench.test/cb"

type benchClient struct {
	ID     string `json:"client_id"`
	Secret string `json:"client_secret"`
}

// createBenchClient registers a first-party confidential client with the
// binary's `client create`, against the server's database.
func createBenchClient(ctx context.Context, bin, dbPath string) (benchClient, error) {
	cmd := exec.CommandContext(ctx, bin, "client", "create", "--database", "sqlite:"+dbPath,
		"--name", "bench", "--redirect-uri", benchRedirect, "--first-party")
	cmd.Env = cleanEnv()
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		return benchClient{}, fmt.Errorf("client create: %w %s", err, stderr)
	}
	var c benchClient
	if err := json.Unmarshal(out, &c); err != nil || c.ID == "" || c.Secret == "" {
		return benchClient{}, fmt.Errorf("client create printed %q", out)
	}
	return c, nil
}

type oauthTokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

// authorizeApp runs the code flow for the user behind access (a
// Gatehouse access token) without a browser: authorize, continue as the
// account page would, redeem the code.
func authorizeApp(ctx context.Context, c *http.Client, base string, cl benchClient, access string) (oauthTokens, error) {
	vb := make([]byte, 32)
	rand.Read(vb)
	verifier := base64.RawURLEncoding.EncodeToString(vb)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {cl.ID}, "redirect_uri": {benchRedirect},
		"scope": {"openid offline_access"}, "state": {"s"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"}}
	noRedirect := *c
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/oauth2/authorize?"+q.Encode(), nil)
	resp, err := noRedirect.Do(req)
	if err != nil {
		return oauthTokens{}, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("oauth_request") == "" {
		return oauthTokens{}, fmt.Errorf("authorize: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	body, _ := json.Marshal(map[string]string{"oauth_request": loc.Query().Get("oauth_request")})
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, base+"/oauth2/authorize/continue", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err = c.Do(req)
	if err != nil {
		return oauthTokens{}, err
	}
	var cont struct{ Redirect string }
	err = json.NewDecoder(resp.Body).Decode(&cont)
	resp.Body.Close()
	red, perr := url.Parse(cont.Redirect)
	if err != nil || perr != nil || red.Query().Get("code") == "" {
		return oauthTokens{}, fmt.Errorf("continue: %d %q", resp.StatusCode, cont.Redirect)
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {red.Query().Get("code")},
		"redirect_uri": {benchRedirect}, "code_verifier": {verifier}}
	status, out, err := postForm(ctx, c, base+"/oauth2/token", cl, form.Encode())
	if err != nil || status != http.StatusOK {
		return oauthTokens{}, fmt.Errorf("token: %d %s %v", status, out, err)
	}
	var t oauthTokens
	return t, json.Unmarshal(out, &t)
}

// postForm posts a form with the client's credentials (client_secret_basic).
func postForm(ctx context.Context, c *http.Client, url string, cl benchClient, form string) (int, []byte, error) {
	return post(ctx, c, url, "application/x-www-form-urlencoded", []byte(form),
		func(r *http.Request) { r.SetBasicAuth(cl.ID, cl.Secret) })
}

// oauthRefreshOp loops the refresh_token grant with the worker's latest token.
func oauthRefreshOp(c *http.Client, base string, cl benchClient, start string) op {
	tok := start
	u := base + "/oauth2/token"
	return func(ctx context.Context) bool {
		status, body, err := postForm(ctx, c, u, cl, "grant_type=refresh_token&refresh_token="+url.QueryEscape(tok))
		if err != nil || status != http.StatusOK {
			return false
		}
		next, ok := extractRefresh(body)
		if ok {
			tok = next
		}
		return ok
	}
}

var activeKey = []byte(`"active":true`)

// introspectOp loops introspection of one app access token.
func introspectOp(c *http.Client, base string, cl benchClient, access string) op {
	u := base + "/oauth2/introspect"
	form := "token=" + url.QueryEscape(access)
	return func(ctx context.Context) bool {
		status, body, err := postForm(ctx, c, u, cl, form)
		return err == nil && status == http.StatusOK && bytes.Contains(body, activeKey)
	}
}

// oauthScenarios measures the token endpoint's refresh and introspection
// on the SQLite server, against refreshRPS (/auth/refresh, same run).
func oauthScenarios(ctx context.Context, o *options, bin, dbPath string, srv *server, client *http.Client, sessions []tokenResp, refreshRPS float64) []row {
	fail := func(msg string) []row { return []row{{scenario: "oauth", failed: msg}} }
	cl, err := createBenchClient(ctx, bin, dbPath)
	if err != nil {
		return fail(err.Error())
	}
	apps := make([]oauthTokens, o.workers)
	for i := range apps {
		if apps[i], err = authorizeApp(ctx, client, srv.base, cl, sessions[i].AccessToken); err != nil {
			return fail(err.Error())
		}
	}
	var rows []row
	logf("oauth-refresh: POST /oauth2/token (refresh_token), %d workers, %s", o.workers, o.dur)
	res := runLoad(ctx, o.workers, o.warmup, o.dur, func(w int) op { return oauthRefreshOp(client, srv.base, cl, apps[w].RefreshToken) })
	r := row{scenario: "oauth-refresh (POST /oauth2/token, SQLite)", res: res, value: res.rps()}
	if refreshRPS > 0 {
		r.reference, r.refValue = "refresh-sqlite", refreshRPS
	}
	rows = append(rows, r)
	logf("oauth-introspect: POST /oauth2/introspect, %d workers, %s", o.workers, o.dur)
	// Fresh access tokens: the refresh load above rotated past the first ones.
	for i := range apps {
		if apps[i], err = authorizeApp(ctx, client, srv.base, cl, sessions[i].AccessToken); err != nil {
			return append(rows, row{scenario: "oauth-introspect", failed: err.Error()})
		}
	}
	res = runLoad(ctx, o.workers, o.warmup, o.dur, func(w int) op { return introspectOp(client, srv.base, cl, apps[w].AccessToken) })
	r = row{scenario: "oauth-introspect (POST /oauth2/introspect, SQLite)", res: res, value: res.rps()}
	if refreshRPS > 0 {
		r.reference, r.refValue = "refresh-sqlite", refreshRPS
	}
	return append(rows, r)
}
