package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBadConfiguration(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "gh.db")
	cases := []struct {
		name string
		env  []string
		args []string
	}{
		{"bad duration", nil, []string{"serve", "--access-ttl", "banana"}},
		{"unknown flag", nil, []string{"serve", "--bogus"}},
		{"bad signing alg", nil, []string{"serve", "--signing-alg", "RS1"}},
		{"bad rate limit", nil, []string{"serve", "--rate-limit-login", "3/banana"}},
		{"bad rate limit 2", nil, []string{"serve", "--rate-limit-login", "many"}},
		{"short master key", nil, []string{"serve", "--master-key", "c2hvcnQ="}},
		{"master key not base64", nil, []string{"serve", "--master-key", "!!!not base64!!!"}},
		{"missing master key file", nil, []string{"serve", "--master-key-file", filepath.Join(dir, "nope.key")}},
		{"unknown database scheme", nil, []string{"serve", "--database", "mysql://localhost/x"}},
		{"postgres unreachable", nil, []string{"serve", "--database", "postgres://postgres@127.0.0.1:1/test?sslmode=disable", "--master-key", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}},
		{"postgres without master key", nil, []string{"serve", "--database", "postgres://postgres@127.0.0.1:1/test?sslmode=disable"}},
		{"bad trusted proxy", nil, []string{"serve", "--trusted-proxies", "not-an-ip"}},
		{"env bad duration", []string{"GATEHOUSE_ACCESS_TTL=banana"}, []string{"serve"}},
		{"env bad refresh ttl", []string{"GATEHOUSE_REFRESH_IDLE_TTL=forever"}, []string{"serve"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{}, c.args...)
			hasDB := false
			for _, a := range args {
				if a == "--database" {
					hasDB = true
				}
			}
			// Give it a port and a database so only the bad setting can fail.
			extra := []string{"--addr", fmt.Sprintf("127.0.0.1:%d", freePort(t))}
			if !hasDB {
				extra = append(extra, "--database", db)
			}
			args = append(args[:1], append(extra, args[1:]...)...)
			res := runBounded(t, 10*time.Second, c.env, args...)
			if res.code == 0 {
				t.Errorf("gatehouse %s (env %v): exit 0, want non-zero", strings.Join(args, " "), c.env)
			}
			if res.code == -2 {
				t.Errorf("gatehouse %s (env %v): still running after 10s; a bad configuration must exit", strings.Join(args, " "), c.env)
			}
			line := strings.TrimSuffix(res.stderr, "\n")
			if line == "" || strings.Contains(line, "\n") {
				t.Errorf("gatehouse %s (env %v): stderr must be exactly one line, got %d lines:\n%s", strings.Join(args, " "), c.env, strings.Count(res.stderr, "\n"), res.stderr)
			}
		})
	}
}

// runBounded runs the binary and kills it after timeout (code -2).
func runBounded(t *testing.T, timeout time.Duration, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = append(cleanEnv(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := exitCode(err)
	if ctx.Err() != nil {
		code = -2
	}
	return cliResult{stdout: out.String(), stderr: errb.String(), code: code}
}

func TestCLICommands(t *testing.T) {
	t.Parallel()
	res := runCLI(t, "", nil, "version")
	if res.code != 0 || strings.TrimSpace(res.stdout) == "" {
		t.Errorf("gatehouse version: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	res = runBounded(t, 10*time.Second, nil, "frobnicate")
	if res.code == 0 {
		t.Errorf("gatehouse frobnicate: exit 0, want non-zero")
	}

	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "gh.db")
	for i := 0; i < 2; i++ {
		res = runCLI(t, "", nil, "migrate", "--database", db)
		if res.code != 0 {
			t.Errorf("gatehouse migrate (run %d): exit %d, stderr %s", i+1, res.code, res.stderr)
		}
	}
	email := newEmail()
	res = runCLI(t, "Cli-"+randHex(6)+"\n", nil, "user", "create", "--email", email, "--role", "admin", "--database", db)
	if res.code != 0 || strings.TrimSpace(res.stdout) == "" {
		t.Errorf("gatehouse user create: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	// Same email, other case: refused.
	res = runCLI(t, "Cli-"+randHex(6)+"\n", nil, "user", "create", "--email", strings.ToUpper(email), "--role", "admin", "--database", db)
	if res.code == 0 {
		t.Errorf("gatehouse user create with a taken email (other case): exit 0, want non-zero")
	}
	// Weak password and bad role: refused.
	res = runCLI(t, "password123\n", nil, "user", "create", "--email", newEmail(), "--role", "admin", "--database", db)
	if res.code == 0 {
		t.Errorf("gatehouse user create with password123: exit 0, want non-zero")
	}
	res = runCLI(t, "Cli-"+randHex(6)+"\n", nil, "user", "create", "--email", newEmail(), "--role", "emperor", "--database", db)
	if res.code == 0 {
		t.Errorf("gatehouse user create --role emperor: exit 0, want non-zero")
	}
	res = runCLI(t, "", nil, "keys", "rotate", "--database", db)
	if res.code != 0 {
		t.Errorf("gatehouse keys rotate: exit %d, stderr %s", res.code, res.stderr)
	}
}

func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	d := s.newUser(t, true)
	expect(t, d.me(t), http.StatusOK, "")

	// An in-flight request (headers sent, body half sent) when SIGTERM arrives
	// is completed, and then the process exits 0.
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := fmt.Sprintf(`{"email":%q,"password":%q}`, d.email, d.password)
	half := len(body) / 2
	fmt.Fprintf(conn, "POST /auth/login HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", s.port, len(body), body[:half])
	time.Sleep(200 * time.Millisecond)

	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case <-exited:
		t.Fatalf("server exited with a request in flight")
	default:
	}
	fmt.Fprint(conn, body[half:])
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	hr, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Errorf("in-flight request during shutdown: %v", err)
	} else {
		hr.Body.Close()
		if hr.StatusCode != http.StatusOK {
			t.Errorf("in-flight login during shutdown: status %d, want 200", hr.StatusCode)
		}
	}
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("server did not exit within 15s of SIGTERM")
	}
	s.mu.Lock()
	code := s.exitCode
	s.mu.Unlock()
	if code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	// And it is really gone.
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), time.Second); err == nil {
		c.Close()
		t.Errorf("port still accepting connections after exit")
	}
}
