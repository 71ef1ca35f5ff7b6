package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is a gatehouse process started by the harness on loopback.
type server struct {
	name   string
	cmd    *exec.Cmd
	base   string // http://127.0.0.1:PORT
	logf   string
	exited chan struct{}
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startServer runs `bin serve` with the bench defaults (rate limits off,
// warn-level logs) plus extra, and waits for /healthz.
func startServer(ctx context.Context, bin, dir, name string, extra ...string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := append([]string{"serve", "--addr", addr,
		"--rate-limit-login", "off", "--rate-limit-refresh", "off", "--rate-limit-signup", "off",
		"--log-level", "warn"}, extra...)
	logf := filepath.Join(dir, name+".log")
	f, err := os.Create(logf)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Env = cleanEnv()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &server{name: name, cmd: cmd, base: "http://" + addr, logf: logf, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(s.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-s.exited:
			return nil, fmt.Errorf("%s exited during start-up: %s", name, tail(logf))
		default:
		}
		resp, err := http.Get(s.base + "/healthz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.stop()
			return nil, fmt.Errorf("%s did not become healthy: %s", name, tail(logf))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cleanEnv drops GATEHOUSE_* variables so the harness's flags are the
// whole configuration.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GATEHOUSE_") {
			env = append(env, kv)
		}
	}
	return env
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// stop asks the server to shut down (SIGTERM) and kills it after 10 s.
func (s *server) stop() {
	if s == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// procStatus reads a kB field (VmRSS, VmHWM) of /proc/PID/status, in bytes.
func procStatus(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				break
			}
			kb, err := strconv.ParseInt(fields[0], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// --- API calls ---------------------------------------------------------------

const benchPassword = "bench: correct horse battery staple"

type tokenResp struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	SessionID    string `json:"session_id"`
}

func postJSON(ctx context.Context, c *http.Client, url string, body []byte) (int, []byte, error) {
	return post(ctx, c, url, "application/json", body, nil)
}

// post sends body and reads the whole answer; prepare, when not nil, adds
// to the request (credentials).
func post(ctx context.Context, c *http.Client, url, contentType string, body []byte, prepare func(*http.Request)) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", contentType)
	if prepare != nil {
		prepare(req)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func credentials(email string) []byte {
	b, _ := json.Marshal(map[string]string{"email": email, "password": benchPassword, "token_transport": "body"})
	return b
}

// signup creates a user (body mode) and returns its first session's tokens.
func signup(ctx context.Context, c *http.Client, base, email string) (tokenResp, error) {
	status, body, err := postJSON(ctx, c, base+"/auth/signup", credentials(email))
	if err != nil {
		return tokenResp{}, err
	}
	if status != http.StatusCreated {
		return tokenResp{}, fmt.Errorf("signup: %d %s", status, body)
	}
	var t tokenResp
	return t, json.Unmarshal(body, &t)
}

// login starts a new body-mode session.
func login(ctx context.Context, c *http.Client, base, email string) (tokenResp, error) {
	status, body, err := postJSON(ctx, c, base+"/auth/login", credentials(email))
	if err != nil {
		return tokenResp{}, err
	}
	if status != http.StatusOK {
		return tokenResp{}, fmt.Errorf("login: %d %s", status, body)
	}
	var t tokenResp
	return t, json.Unmarshal(body, &t)
}

var refreshKey = []byte(`"refresh_token":"`)

// extractRefresh finds the refresh token in a token response without a
// full JSON decode, to keep the load generator's own CPU use small (it
// shares the machine with the server). Tokens are base64url and '.', so
// they never contain a quote or an escape.
func extractRefresh(body []byte) (string, bool) {
	i := bytes.Index(body, refreshKey)
	if i < 0 {
		return "", false
	}
	rest := body[i+len(refreshKey):]
	j := bytes.IndexByte(rest, '"')
	if j <= 0 {
		return "", false
	}
	return string(rest[:j]), true
}

// refreshOp loops POST /auth/refresh with the worker's latest token.
func refreshOp(c *http.Client, base string, start string, relogin func(ctx context.Context) (string, error)) op {
	tok := start
	url := base + "/auth/refresh"
	buf := make([]byte, 0, 256)
	return func(ctx context.Context) bool {
		buf = append(buf[:0], `{"refresh_token":"`...)
		buf = append(buf, tok...)
		buf = append(buf, `"}`...)
		status, body, err := postJSON(ctx, c, url, buf)
		if err != nil {
			return false
		}
		if status == http.StatusOK {
			if next, ok := extractRefresh(body); ok {
				tok = next
				return true
			}
			return false
		}
		if status == http.StatusUnauthorized && relogin != nil {
			// The session ended (should not happen): start another one
			// so the worker keeps measuring, and count the error.
			if t, err := relogin(ctx); err == nil {
				tok = t
			}
		}
		// Other errors (503): keep the token; if it did rotate and the
		// answer was lost, the grace window returns the same successor.
		return false
	}
}

// meOp loops GET /auth/me with a Bearer token.
func meOp(c *http.Client, base, access string) op {
	return bearerGetOp(c, base+"/auth/me", access)
}

// loginOp loops POST /auth/login (argon2id verify plus a session insert).
func loginOp(c *http.Client, base, email string) op {
	url := base + "/auth/login"
	body := credentials(email)
	return func(ctx context.Context) bool {
		status, _, err := postJSON(ctx, c, url, body)
		return err == nil && status == http.StatusOK
	}
}

var errSkip = errors.New("skipped")
