package e2e

// The example resource server (examples/resource-server, built from this
// repository) verifies Gatehouse's access tokens in process with package
// verifier and follows the revocation feed. These tests start it beside the
// real binary: a token works; after a logout, a password change or an
// admin disabling the account on Gatehouse the service refuses it within a
// second; with Redis down the feed still delivers through the database; and
// a service started after a revocation refuses the token too.

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	verifierIssuer   = "https://auth.e2e.test"
	verifierAudience = "https://api.e2e.test"
)

var (
	exampleOnce sync.Once
	exampleBin  string
	exampleErr  error
	exampleOut  []byte
)

// buildExample builds examples/resource-server once per test run.
func buildExample(t *testing.T) string {
	t.Helper()
	exampleOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gatehouse-example-")
		if err != nil {
			exampleErr = err
			return
		}
		exampleBin = filepath.Join(dir, "resource-server")
		cmd := exec.Command("go", "build", "-o", exampleBin, "../examples/resource-server")
		exampleOut, exampleErr = cmd.CombinedOutput()
	})
	if exampleErr != nil {
		t.Fatalf("building the example resource server: %v\n%s", exampleErr, exampleOut)
	}
	return exampleBin
}

// resourceServer is a running example service.
type resourceServer struct {
	base   string
	stderr *syncBuffer
}

// startResourceServer starts the example service against the Gatehouse at
// gatehouseBase, reading the feed with feedKey.
func startResourceServer(t *testing.T, gatehouseBase, feedKey string) *resourceServer {
	t.Helper()
	cmd := exec.Command(buildExample(t), "--addr", "127.0.0.1:0", "--issuer", verifierIssuer,
		"--audience", verifierAudience, "--gatehouse-url", gatehouseBase)
	cmd.Env = append(os.Environ(), "GATEHOUSE_FEED_KEY="+feedKey)
	rs := &resourceServer{stderr: &syncBuffer{}}
	cmd.Stderr = rs.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the example service: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("the example service did not stop on SIGINT")
		}
		if t.Failed() {
			t.Logf("example service stderr:\n%s", rs.stderr)
		}
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case l, ok := <-line:
		addr, found := strings.CutPrefix(l, "listening on ")
		if !ok || !found {
			t.Fatalf("example service did not start: %q\n%s", l, rs.stderr)
		}
		rs.base = "http://" + addr
	case <-time.After(20 * time.Second):
		t.Fatalf("example service did not start within 20s\n%s", rs.stderr)
	}
	return rs
}

// hello calls GET /hello with the access token and returns the status.
func (rs *resourceServer) hello(t *testing.T, access string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", rs.base+"/hello", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /hello: %v", err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /hello: %d (want 200 or 401)", res.StatusCode)
	}
	return res.StatusCode
}

// awaitRefused waits until the service refuses access, failing past limit.
func (rs *resourceServer) awaitRefused(t *testing.T, what, access string, limit time.Duration) {
	t.Helper()
	took, ok := prodUntil(limit+3*time.Second, func() bool { return rs.hello(t, access) == http.StatusUnauthorized })
	switch {
	case !ok:
		t.Errorf("%s: the service still accepts the token after %v", what, took.Round(time.Millisecond))
	case took >= limit:
		t.Errorf("%s: the service refused the token only after %v, want < %v", what, took.Round(time.Millisecond), limit)
	default:
		t.Logf("%s: refused by the service after %v", what, took.Round(100*time.Microsecond))
	}
}

// feedKeyFor has admin create an API key with scope revocations:read on s.
func feedKeyFor(t *testing.T, s *server, admin *device) string {
	t.Helper()
	r := s.do(t, "POST", "/auth/api-keys", map[string]any{"name": "resource server", "scopes": []string{"revocations:read"}},
		bearer(admin.Access()))
	if !expect(t, r, http.StatusCreated, "") {
		t.FailNow()
	}
	key, _ := r.JSON()["key"].(string)
	if key == "" {
		t.Fatalf("no key in %s", r)
	}
	return key
}

func TestVerifierFollowsRevocations(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--issuer", verifierIssuer, "--audience", verifierAudience)
	_, admin := s.makeAdmin(t)
	key := feedKeyFor(t, s, admin)

	// The feed itself: the scope is required.
	u := s.newUser(t, true)
	expect(t, s.do(t, "GET", "/auth/revocations", nil), http.StatusUnauthorized, "invalid_token")
	r := s.do(t, "GET", "/auth/revocations", nil, bearer(u.Access()))
	expect(t, r, http.StatusForbidden, "insufficient_scope")
	if got := r.Header.Get("WWW-Authenticate"); !strings.Contains(got, `error="insufficient_scope"`) {
		t.Errorf("403 without the scope: WWW-Authenticate %q", got)
	}
	adminKey := s.do(t, "GET", "/auth/revocations", nil, bearer(admin.Access()))
	expect(t, adminKey, http.StatusForbidden, "insufficient_scope") // an admin's token is not a feed credential
	expect(t, s.do(t, "GET", "/auth/revocations?after=-1", nil, bearer(key)), http.StatusUnprocessableEntity, "validation_failed")
	expect(t, s.do(t, "GET", "/auth/revocations?after=abc", nil, bearer(key)), http.StatusUnprocessableEntity, "validation_failed")
	first := s.do(t, "GET", "/auth/revocations", nil, bearer(key))
	expect(t, first, http.StatusOK, "")
	cursor, _ := first.JSON()["cursor"].(string)

	rs := startResourceServer(t, s.base, key)
	if st := rs.hello(t, u.Access()); st != http.StatusOK {
		t.Fatalf("a fresh token: %d, want 200", st)
	}

	t.Run("logout", func(t *testing.T) {
		d := s.newUser(t, true)
		if rs.hello(t, d.Access()) != http.StatusOK {
			t.Fatal("token refused before logout")
		}
		expect(t, d.do(t, "POST", "/auth/logout", nil, bearer(d.Access())), http.StatusNoContent, "")
		rs.awaitRefused(t, "after logout", d.Access(), time.Second)
	})
	t.Run("password change", func(t *testing.T) {
		d := s.newUser(t, true)
		other := d.another(t, true)
		if rs.hello(t, other.Access()) != http.StatusOK {
			t.Fatal("token refused before the password change")
		}
		expect(t, d.do(t, "POST", "/auth/password", map[string]any{"current_password": d.password, "new_password": newPassword()},
			bearer(d.Access())), http.StatusNoContent, "")
		rs.awaitRefused(t, "other session after a password change", other.Access(), time.Second)
		if rs.hello(t, d.Access()) != http.StatusOK {
			t.Error("the session that changed the password lost its token")
		}
	})
	t.Run("admin disable", func(t *testing.T) {
		d := s.newUser(t, true)
		if rs.hello(t, d.Access()) != http.StatusOK {
			t.Fatal("token refused before disabling")
		}
		expect(t, s.do(t, "PATCH", "/admin/users/"+d.user.ID, map[string]any{"disabled": true}, bearer(admin.Access())), http.StatusOK, "")
		rs.awaitRefused(t, "after an admin disabled the account", d.Access(), time.Second)
	})

	// The feed lists what happened since the first read.
	next := s.do(t, "GET", "/auth/revocations?after="+cursor, nil, bearer(key))
	expect(t, next, http.StatusOK, "")
	kinds := map[string]int{}
	for _, it := range next.JSON()["revocations"].([]any) {
		kinds[it.(map[string]any)["kind"].(string)]++
	}
	if kinds["session"] < 2 || kinds["user"] < 1 {
		t.Errorf("feed after %s: kinds %v, want sessions and a user entry", cursor, kinds)
	}

	// A service started after a revocation refuses the token at once.
	loggedOut := s.newUser(t, true)
	expect(t, loggedOut.do(t, "POST", "/auth/logout", nil, bearer(loggedOut.Access())), http.StatusNoContent, "")
	late := startResourceServer(t, s.base, key)
	if st := late.hello(t, loggedOut.Access()); st != http.StatusUnauthorized {
		t.Errorf("a service started after the logout accepts the token: %d", st)
	}
	if st := late.hello(t, u.Access()); st != http.StatusOK {
		t.Errorf("a service started later refuses a live token: %d", st)
	}
}

// TestVerifierRedisDown: two instances on PostgreSQL and Redis; the service
// follows B's feed. Revocations made on A reach it through Redis at once,
// and with Redis killed through the database poll.
func TestVerifierRedisDown(t *testing.T) {
	t.Parallel()
	c, rd := prodNewCluster(t)
	args := []string{"--audience", verifierAudience}
	a := c.start(t, args...)
	b := c.start(t, args...)
	email, pw := "admin-"+newEmail(), newPassword()
	res := runCLI(t, pw+"\n", nil, "user", "create", "--email", email, "--role", "admin", "--database", c.dbURL, "--master-key", c.key)
	if res.code != 0 {
		t.Fatalf("gatehouse user create: exit %d: %s", res.code, res.stderr)
	}
	admin := prodLogin(t, a, email, pw, true)
	key := feedKeyFor(t, a, admin)
	rs := startResourceServer(t, b.base, key)

	d := a.newUser(t, true)
	if rs.hello(t, d.Access()) != http.StatusOK {
		t.Fatal("token refused before logout")
	}
	expect(t, d.do(t, "POST", "/auth/logout", nil, bearer(d.Access())), http.StatusNoContent, "")
	rs.awaitRefused(t, "logout on A, feed of B, Redis up", d.Access(), time.Second)

	rd.Kill()
	if _, r := prodUntilStatus(t, b, 10*time.Second, http.StatusServiceUnavailable, "/readyz"); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("B's /readyz after Redis died: %s", r)
	}
	e := a.newUser(t, true)
	if rs.hello(t, e.Access()) != http.StatusOK {
		t.Fatal("token refused before logout")
	}
	expect(t, e.do(t, "POST", "/auth/logout", nil, bearer(e.Access())), http.StatusNoContent, "")
	// B learns of it from the database poll (1 s), then streams it.
	rs.awaitRefused(t, "logout on A, feed of B, Redis down", e.Access(), 3*time.Second)

	late := startResourceServer(t, b.base, key)
	if st := late.hello(t, e.Access()); st != http.StatusUnauthorized {
		t.Errorf("a service started after the logout (Redis down) accepts the token: %d", st)
	}
}
