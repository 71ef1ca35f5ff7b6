package e2e

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestForwardAuthNginx runs /auth/verify behind a real nginx (Debian's
// package; .ci/run installs it) with auth_request in front of a tiny
// upstream that echoes the identity headers nginx passes on. It uses the
// configuration README.md shows.
func TestForwardAuthNginx(t *testing.T) {
	nginx := findNginx(t)
	s := startServer(t)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"user":    r.Header.Get("X-Auth-User-Id"),
			"role":    r.Header.Get("X-Auth-Role"),
			"session": r.Header.Get("X-Auth-Session-Id"),
			"key":     r.Header.Get("X-Auth-Api-Key-Id"),
			"method":  r.Method,
			"authz":   r.Header.Get("Authorization"),
		})
	}))
	t.Cleanup(upstream.Close)
	proxy := startNginx(t, nginx, strings.TrimPrefix(s.base, "http://"), strings.TrimPrefix(upstream.URL, "http://"))

	type answer struct {
		status int
		echo   map[string]string
	}
	get := func(method, cred string, extra ...string) answer {
		t.Helper()
		req, err := http.NewRequest(method, proxy+"/app/resource", nil)
		if err != nil {
			t.Fatal(err)
		}
		if cred != "" {
			req.Header.Set("Authorization", "Bearer "+cred)
		}
		for i := 0; i+1 < len(extra); i += 2 {
			req.Header.Set(extra[i], extra[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("through nginx: %v", err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		a := answer{status: res.StatusCode}
		if res.StatusCode == http.StatusOK {
			if err := json.Unmarshal(body, &a.echo); err != nil {
				t.Fatalf("upstream answer %q: %v", body, err)
			}
		}
		return a
	}
	want := func(what string, a answer, status int) {
		t.Helper()
		if a.status != status {
			t.Errorf("%s: status %d through nginx, want %d", what, a.status, status)
		}
	}

	d := s.newUser(t, true)
	k := createKey(t, d, map[string]any{"name": "behind nginx"})

	a := get("GET", d.Access())
	want("access token", a, http.StatusOK)
	if a.echo["user"] != d.user.ID || a.echo["role"] != "user" || a.echo["session"] != d.sid || a.echo["key"] != "" {
		t.Errorf("access token: upstream saw %v", a.echo)
	}
	a = get("POST", d.Access())
	want("access token, POST", a, http.StatusOK)
	if a.echo["method"] != "POST" || a.echo["user"] != d.user.ID {
		t.Errorf("POST: upstream saw %v", a.echo)
	}
	a = get("GET", k.Key)
	want("API key", a, http.StatusOK)
	if a.echo["user"] != d.user.ID || a.echo["key"] != k.ID || a.echo["session"] != "" {
		t.Errorf("API key: upstream saw %v", a.echo)
	}
	// Identity headers from the client never reach the upstream.
	a = get("GET", d.Access(), "X-Auth-User-Id", "someone-else", "X-Auth-Role", "admin")
	want("spoofed headers", a, http.StatusOK)
	if a.echo["user"] != d.user.ID || a.echo["role"] != "user" {
		t.Errorf("spoofed identity headers reached the upstream: %v", a.echo)
	}

	want("no credentials", get("GET", ""), http.StatusUnauthorized)
	want("garbage", get("GET", "garbage"), http.StatusUnauthorized)
	want("garbage key", get("GET", "gh_"+strings.Repeat("a", 26)+"_"+strings.Repeat("a", 52)), http.StatusUnauthorized)
	want("a spoofed identity alone", get("GET", "", "X-Auth-User-Id", d.user.ID), http.StatusUnauthorized)

	// Expired: a key whose expiry the database says has passed.
	ek := createKey(t, d, map[string]any{"name": "expiring", "expires_in_days": 1})
	db, err := sql.Open("sqlite", "file:"+s.dbPath+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE api_keys SET expires_at = ? WHERE id = ?`, time.Now().Add(-time.Minute).UnixMicro(), ek.ID); err != nil {
		t.Fatal(err)
	}
	want("expired key", get("GET", ek.Key), http.StatusUnauthorized)

	// Revoked: refused by the very next request.
	want("key before revocation", get("GET", k.Key), http.StatusOK)
	expect(t, s.do(t, "DELETE", "/auth/api-keys/"+k.ID, nil, bearer(d.Access())), http.StatusNoContent, "")
	want("revoked key", get("GET", k.Key), http.StatusUnauthorized)

	// Logged out: the token is refused at once.
	other := d.another(t, true)
	want("second device", get("GET", other.Access()), http.StatusOK)
	expect(t, s.do(t, "POST", "/auth/logout", nil, bearer(other.Access())), http.StatusNoContent, "")
	want("logged-out token", get("GET", other.Access()), http.StatusUnauthorized)
	want("the first device still", get("GET", d.Access()), http.StatusOK)
}

// findNginx returns the nginx binary, skipping without one unless CI=true.
func findNginx(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but nginx is not installed (.ci/run installs Debian's nginx)")
	}
	t.Skip("nginx is not installed (apt-get install nginx)")
	return ""
}

// nginxConf is README.md's forward-auth example, with test paths and ports.
const nginxConf = `
%s
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[2]s/tmp/body;
    proxy_temp_path %[2]s/tmp/proxy;
    fastcgi_temp_path %[2]s/tmp/fastcgi;
    uwsgi_temp_path %[2]s/tmp/uwsgi;
    scgi_temp_path %[2]s/tmp/scgi;

    server {
        listen 127.0.0.1:%[3]d;

        location / {
            auth_request /_gatehouse_verify;
            auth_request_set $auth_user    $upstream_http_x_auth_user_id;
            auth_request_set $auth_role    $upstream_http_x_auth_role;
            auth_request_set $auth_session $upstream_http_x_auth_session_id;
            auth_request_set $auth_key     $upstream_http_x_auth_api_key_id;
            proxy_set_header X-Auth-User-Id    $auth_user;
            proxy_set_header X-Auth-Role       $auth_role;
            proxy_set_header X-Auth-Session-Id $auth_session;
            proxy_set_header X-Auth-Api-Key-Id $auth_key;
            proxy_pass http://%[4]s;
        }

        location = /_gatehouse_verify {
            internal;
            proxy_pass http://%[5]s/auth/verify;
            proxy_method GET;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
        }
    }
}
`

// startNginx starts nginx in the foreground in front of upstream, checking
// credentials at gatehouse, and returns its base URL. It is stopped when the
// test ends.
func startNginx(t *testing.T, bin, gatehouse, upstream string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	user := ""
	if os.Geteuid() == 0 {
		// Workers would otherwise switch to nobody and lose access to
		// the test's private directory.
		user = "user root;"
	}
	port := freePort(t)
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, user, dir, port, upstream, gatehouse)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf, "-p", dir, "-g", "daemon off;")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT) // graceful stop
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx output:\n%s\nerror.log:\n%s", out.String(), log)
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited at start: %v\n%s\n%s", waitErr, out.String(), log)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return "http://" + addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not listen on %s within 10s:\n%s", addr, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
