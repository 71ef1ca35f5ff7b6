// Package e2e holds Gatehouse's end-to-end tests. They build the real binary
// once, start it on a free port per test against its own SQLite database, and
// talk HTTP to it exactly as a client would. API.md is the contract they prove.
//
// Run: go test ./e2e/ (add -race for the test process; set
// GATEHOUSE_E2E_RACE=1 to build the server binary with -race as well, or
// GATEHOUSE_E2E_BIN=/path/to/gatehouse to test a binary built elsewhere).
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// binPath is the gatehouse binary built once by TestMain.
var binPath string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	// The tests mostly wait on server processes, so run more of them at once
	// than there are CPUs unless -test.parallel was given explicitly.
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if f := flag.Lookup("test.parallel"); f != nil && !explicit && runtime.GOMAXPROCS(0) < 8 {
		_ = f.Value.Set("8")
	}
	dir, err := os.MkdirTemp("", "gatehouse-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if prebuilt := os.Getenv("GATEHOUSE_E2E_BIN"); prebuilt != "" {
		binPath = prebuilt
		return reportOpenAPI(m.Run())
	}
	binPath = filepath.Join(dir, "gatehouse")
	args := []string{"build", "-o", binPath}
	if os.Getenv("GATEHOUSE_E2E_RACE") == "1" {
		args = append(args, "-race")
	}
	args = append(args, "../cmd/gatehouse")
	goBin, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: go tool not found:", err)
		return 1
	}
	build := exec.Command(goBin, args...)
	build.Env = os.Environ()
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building the gatehouse binary failed: %v\n%s", err, out)
		return 1
	}
	return reportOpenAPI(m.Run())
}

// ---------------------------------------------------------------------------
// Server process
// ---------------------------------------------------------------------------

// syncBuffer is a goroutine-safe bytes.Buffer for a child's stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// server is one running (or stopped) gatehouse process with its own database.
type server struct {
	t      *testing.T
	dir    string // directory holding only the database (and its key file)
	dbPath string
	extra  []string
	port   int
	base   string // http://127.0.0.1:PORT

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	exitCode int
	stderr   *syncBuffer
	starts   int
	tr       *http.Transport
	hc       *http.Client
}

// startServer starts gatehouse serve on a free port with its own SQLite
// database in a fresh directory. Later flags in extra override the defaults.
func startServer(t *testing.T, extra ...string) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{
		t:      t,
		dir:    dir,
		dbPath: filepath.Join(dir, "gh.db"),
		extra:  extra,
		stderr: &syncBuffer{},
	}
	t.Cleanup(func() {
		if s.running() {
			if code := s.Stop(); code != 0 {
				t.Errorf("server exited with code %d on SIGTERM (want 0)", code)
			}
		}
		logs := s.stderr.String()
		for _, bad := range []string{"panic:", "DATA RACE", "fatal error:"} {
			if strings.Contains(logs, bad) {
				t.Errorf("server stderr contains %q", bad)
			}
		}
		if t.Failed() {
			const max = 24 << 10
			if len(logs) > max {
				logs = "...(truncated)...\n" + logs[len(logs)-max:]
			}
			t.Logf("server stderr:\n%s", logs)
		}
	})
	s.Start()
	return s
}

func (s *server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// Start launches the process (again) on the same database. It reuses the
// previous port when it can so that clients keep their base URL.
func (s *server) Start() {
	s.t.Helper()
	var lastErr error
	for attempt := 0; attempt < 4; attempt++ {
		port := s.port
		if port == 0 || attempt > 0 {
			port = freePort(s.t)
		}
		err := s.tryStart(port)
		if err == nil {
			return
		}
		lastErr = err
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	s.t.Fatalf("starting gatehouse: %v\nstderr:\n%s", lastErr, s.stderr.String())
}

var errAddrInUse = errors.New("address in use")

func (s *server) tryStart(port int) error {
	s.port = port
	s.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	args := []string{
		"serve",
		"--addr", fmt.Sprintf("127.0.0.1:%d", port),
		"--database", "sqlite:" + s.dbPath,
		"--rate-limit-login", "off",
		"--rate-limit-refresh", "off",
		"--rate-limit-signup", "off",
	}
	args = append(args, s.extra...)
	s.starts++
	fmt.Fprintf(s.stderr, "=== e2e: start #%d: gatehouse %s\n", s.starts, strings.Join(args, " "))
	cmd := exec.Command(binPath, args...)
	// Defaults relative to the working directory (the mail folder of a
	// PostgreSQL server) land in the test's own directory.
	cmd.Dir = s.dir
	cmd.Env = cleanEnv()
	cmd.Stdout = s.stderr
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := s.watch(cmd)

	s.tr = &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true}
	s.hc = &http.Client{
		// Every response is validated against the server's /openapi.json.
		Transport: &validatingTransport{base: s.tr, owner: s.t, host: fmt.Sprintf("127.0.0.1:%d", port)},
		Timeout:   30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	before := len(s.stderr.String())
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			tail := s.stderr.String()[before:]
			if strings.Contains(tail, "address already in use") {
				return errAddrInUse
			}
			return fmt.Errorf("gatehouse exited during startup (code %d)", s.exitCode)
		default:
		}
		resp, err := s.hc.Get(s.base + "/healthz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	s.kill()
	return errors.New("GET /healthz did not answer 200 within 15s")
}

func (s *server) kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Stop sends SIGTERM, waits for the process and returns its exit code.
func (s *server) Stop() int {
	s.t.Helper()
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return 0
	}
	if s.tr != nil {
		s.tr.CloseIdleConnections()
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		s.t.Errorf("gatehouse did not exit within 15s of SIGTERM; killing it")
		_ = cmd.Process.Kill()
		<-exited
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exitCode
}

// Restart stops the server and starts it again on the same database.
func (s *server) Restart() {
	s.t.Helper()
	if code := s.Stop(); code != 0 {
		s.t.Errorf("server exited with code %d on SIGTERM (want 0)", code)
	}
	s.Start()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// cleanEnv is the environment without GATEHOUSE_* variables, so a developer's
// settings cannot change what the tests see.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GATEHOUSE_") {
			env = append(env, kv)
		}
	}
	return env
}

// cliResult is the outcome of one gatehouse CLI invocation.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs the gatehouse binary with args, stdin and extra environment.
func runCLI(t *testing.T, stdin string, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errb
	err := cmd.Run()
	if err != nil && ctx.Err() != nil {
		t.Errorf("gatehouse %s: did not finish within 30s", strings.Join(args, " "))
	}
	return cliResult{stdout: out.String(), stderr: errb.String(), code: exitCode(err)}
}

// ---------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------

// rawBody is sent as the request body byte for byte.
type rawBody []byte

type reqOpt func(*http.Request)

// hdr sets a request header; an empty value removes it.
func hdr(k, v string) reqOpt {
	return func(r *http.Request) {
		if v == "" {
			r.Header.Del(k)
			return
		}
		r.Header.Set(k, v)
	}
}

func bearer(tok string) reqOpt { return hdr("Authorization", "Bearer "+tok) }

// resp is a fully read HTTP response.
type resp struct {
	req        string // description of the request, for failure messages
	Status     int
	Header     http.Header
	Body       []byte
	SetCookies []*http.Cookie
}

func (r *resp) String() string {
	body := string(r.Body)
	if len(body) > 600 {
		body = body[:600] + "...(truncated)"
	}
	return fmt.Sprintf("%s -> %d %s", r.req, r.Status, body)
}

// JSON decodes the body as a JSON object (nil if it is not one).
func (r *resp) JSON() map[string]any {
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		return nil
	}
	return m
}

// Code is the problem "code" member, or "".
func (r *resp) Code() string {
	s, _ := r.JSON()["code"].(string)
	return s
}

// Cookie is the last Set-Cookie for name, or nil.
func (r *resp) Cookie(name string) *http.Cookie {
	var c *http.Cookie
	for _, sc := range r.SetCookies {
		if sc.Name == name {
			c = sc
		}
	}
	return c
}

// rawSetCookie is the raw Set-Cookie header line for name, or "".
func (r *resp) rawSetCookie(name string) string {
	var line string
	for _, v := range r.Header.Values("Set-Cookie") {
		if strings.HasPrefix(v, name+"=") {
			line = v
		}
	}
	return line
}

// knownCodes is API.md's error code table.
var knownCodes = map[string]int{
	"validation_failed":      422,
	"weak_password":          422,
	"email_taken":            409,
	"invalid_credentials":    401,
	"invalid_token":          401,
	"invalid_refresh_token":  401,
	"refresh_token_reused":   401,
	"csrf_failed":            403,
	"forbidden":              403,
	"not_found":              404,
	"method_not_allowed":     405,
	"payload_too_large":      413,
	"unsupported_media_type": 415,
	"bad_request":            400,
	"rate_limited":           429,
	"unavailable":            503,
	"internal":               500,
	"invalid_link":           400,
	"invalid_code":           401,
	"email_not_verified":     403,
	"already_verified":       409,
	"not_configured":         404,
	"mfa_required":           401,
	"already_enabled":        409,
	"invalid_credential":     401,
	"last_login_method":      409,
	"invalid_redirect":       400,
	"account_exists":         409,
	"last_admin":             409,
	"insufficient_scope":     403,
}

// otherStatus is the second status a code may come with: a passkey that
// cannot be registered is 400, one that cannot sign in 401.
var otherStatus = map[string]int{"invalid_credential": 400}

// do sends one request to the server. body is nil (no body), a rawBody or
// anything else (JSON-encoded, Content-Type application/json). Every response
// is checked against the rules that hold for all responses: security headers,
// problem+json errors with a known code, no 500s, no internals leaked.
func (s *server) do(t *testing.T, method, path string, body any, opts ...reqOpt) *resp {
	t.Helper()
	var rd io.Reader
	var desc strings.Builder
	fmt.Fprintf(&desc, "%s %s", method, path)
	hasBody := false
	switch b := body.(type) {
	case nil:
	case rawBody:
		rd = bytes.NewReader(b)
		hasBody = true
		if len(b) <= 200 {
			fmt.Fprintf(&desc, " body=%q", string(b))
		} else {
			fmt.Fprintf(&desc, " body=(%d bytes)", len(b))
		}
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		rd = bytes.NewReader(j)
		hasBody = true
		if len(j) <= 300 {
			fmt.Fprintf(&desc, " body=%s", j)
		} else {
			fmt.Fprintf(&desc, " body=(%d bytes JSON)", len(j))
		}
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if hasBody {
		req.Header.Set("Content-Type", "application/json")
	}
	req = req.WithContext(withTest(req.Context(), t))
	req.Header.Set("User-Agent", "gatehouse-e2e")
	for _, o := range opts {
		o(req)
	}
	for _, k := range []string{"Content-Type", "X-CSRF-Token", "Origin", "Sec-Fetch-Site", "X-Forwarded-For"} {
		if v := req.Header.Get(k); v != "" {
			fmt.Fprintf(&desc, " [%s: %s]", k, abbrev(v))
		}
	}
	if v := req.Header.Get("Authorization"); v != "" {
		fmt.Fprintf(&desc, " [Authorization: %s]", abbrev(v))
	}
	if v := req.Header.Get("Cookie"); v != "" {
		fmt.Fprintf(&desc, " [Cookie: %s]", abbrev(v))
	}
	hr, err := s.hc.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", desc.String(), err)
	}
	defer hr.Body.Close()
	b, err := io.ReadAll(hr.Body)
	if err != nil {
		t.Fatalf("%s: reading body: %v", desc.String(), err)
	}
	r := &resp{req: desc.String(), Status: hr.StatusCode, Header: hr.Header, Body: b}
	for _, line := range hr.Header.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err != nil {
			t.Errorf("%s: unparsable Set-Cookie %q: %v", r.req, line, err)
			continue
		}
		r.SetCookies = append(r.SetCookies, c)
	}
	checkCommon(t, r)
	return r
}

func abbrev(s string) string {
	if len(s) > 60 {
		return s[:40] + "..." + s[len(s)-12:] + fmt.Sprintf("(%d chars)", len(s))
	}
	return s
}

// checkCommon asserts what API.md requires of every response.
// leakSearchable is the part of an error body to search for leaked
// internals: the body without the values of its *_token members (an
// mfa_token), whose random base64 can spell "pgx" or "sql:" by chance.
func leakSearchable(body []byte) []byte {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return body
	}
	for k := range m {
		if strings.HasSuffix(k, "_token") {
			delete(m, k)
		}
	}
	out, err := json.Marshal(m)
	if err != nil {
		return body
	}
	return out
}

func checkCommon(t *testing.T, r *resp) {
	t.Helper()
	if got := r.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options = %q, want nosniff", r.req, got)
	}
	if got := r.Header.Get("Referrer-Policy"); got != "no-referrer" {
		t.Errorf("%s: Referrer-Policy = %q, want no-referrer", r.req, got)
	}
	xfo := r.Header.Get("X-Frame-Options")
	csp := r.Header.Get("Content-Security-Policy")
	if !strings.EqualFold(xfo, "DENY") && !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("%s: neither X-Frame-Options: DENY nor CSP frame-ancestors 'none' (XFO %q, CSP %q)", r.req, xfo, csp)
	}
	if r.Status >= 500 && r.Status != http.StatusServiceUnavailable {
		t.Errorf("%s: server error", r)
	}
	if r.Status < 400 {
		return
	}
	lower := strings.ToLower(string(leakSearchable(r.Body)))
	for _, leak := range []string{"goroutine ", ".go:", "sqlite", "sql:", "pgx", "runtime error", "nil pointer"} {
		if strings.Contains(lower, leak) {
			t.Errorf("%s: error body leaks internals (%q)", r, leak)
		}
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("%s: error Content-Type = %q, want application/problem+json", r, ct)
		return
	}
	m := r.JSON()
	if m == nil {
		t.Errorf("%s: error body is not a JSON object", r)
		return
	}
	for _, k := range []string{"type", "title", "status", "detail", "code"} {
		if _, ok := m[k]; !ok {
			t.Errorf("%s: problem details lack %q", r, k)
		}
	}
	if st, _ := m["status"].(float64); int(st) != r.Status {
		t.Errorf("%s: problem status member %v != HTTP status %d", r, m["status"], r.Status)
	}
	code, _ := m["code"].(string)
	if want, ok := knownCodes[code]; !ok {
		t.Errorf("%s: code %q is not in API.md's table", r, code)
	} else if want != r.Status && otherStatus[code] != r.Status {
		t.Errorf("%s: code %q belongs with status %d, got %d", r, code, want, r.Status)
	}
	if r.Status == http.StatusUnprocessableEntity {
		checkErrorsArray(t, r)
	}
}

func checkErrorsArray(t *testing.T, r *resp) {
	t.Helper()
	errs, ok := r.JSON()["errors"].([]any)
	if !ok || len(errs) == 0 {
		t.Errorf("%s: 422 without a non-empty errors array", r)
		return
	}
	for _, e := range errs {
		em, _ := e.(map[string]any)
		f, ok1 := em["field"].(string)
		_, ok2 := em["message"].(string)
		if !ok1 || !ok2 || f == "" {
			t.Errorf("%s: errors entry %v lacks string field/message", r, e)
		}
	}
}

// errorFields lists the "field" members of a 422's errors array.
func errorFields(r *resp) []string {
	var out []string
	errs, _ := r.JSON()["errors"].([]any)
	for _, e := range errs {
		em, _ := e.(map[string]any)
		if f, ok := em["field"].(string); ok {
			out = append(out, f)
		}
	}
	return out
}

// expect asserts status and (if non-empty) problem code.
func expect(t *testing.T, r *resp, status int, code string) bool {
	t.Helper()
	ok := true
	if r.Status != status {
		t.Errorf("%s\n\twant status %d %s", r, status, code)
		ok = false
	} else if code != "" && r.Code() != code {
		t.Errorf("%s\n\twant code %q, got %q", r, code, r.Code())
		ok = false
	}
	return ok
}

// expectOneOf asserts one of several statuses.
func expectStatusIn(t *testing.T, r *resp, statuses ...int) bool {
	t.Helper()
	if !slices.Contains(statuses, r.Status) {
		t.Errorf("%s\n\twant status in %v", r, statuses)
		return false
	}
	return true
}

// ---------------------------------------------------------------------------
// Devices: a client with its own cookie store and tokens
// ---------------------------------------------------------------------------

type userObj struct {
	ID        string `json:"id"`
	Email     string `json:"email"`
	Name      string `json:"name"`
	Role      string `json:"role"`
	CreatedAt string `json:"created_at"`
}

type tokenResp struct {
	TokenType    string  `json:"token_type"`
	AccessToken  string  `json:"access_token"`
	ExpiresIn    float64 `json:"expires_in"`
	SessionID    string  `json:"session_id"`
	User         userObj `json:"user"`
	RefreshToken string  `json:"refresh_token"`
}

type storedCookie struct {
	value string
	path  string
}

// device is one login on one client: cookie mode (browser) or body mode.
type device struct {
	srv      *server
	body     bool // body mode
	ua       string
	email    string
	password string

	mu       sync.Mutex
	cookies  map[string]storedCookie
	access   string
	refresh  string // current refresh token, from body or cookie
	sid      string
	user     userObj
	history  []string // every refresh token this device has held
	lastCSRF string   // last csrf cookie value seen, kept after it is cleared
}

func (s *server) newDevice(body bool) *device {
	return &device{srv: s, body: body, ua: "e2e-device-" + randHex(4), cookies: map[string]storedCookie{}}
}

// cookieHeader builds the Cookie header for path from the device's store.
func (d *device) cookieHeader(path string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var parts []string
	names := make([]string, 0, len(d.cookies))
	for n := range d.cookies {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		c := d.cookies[n]
		p := c.path
		if p == "" {
			p = "/"
		}
		if strings.HasPrefix(path, p) {
			parts = append(parts, n+"="+c.value)
		}
	}
	return strings.Join(parts, "; ")
}

func (d *device) cookie(name string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cookies[name].value
}

func (d *device) setCookie(name, value, path string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cookies[name] = storedCookie{value: value, path: path}
}

// csrf is the X-CSRF-Token header matching the device's csrf cookie.
func (d *device) csrf() reqOpt { return hdr("X-CSRF-Token", d.cookie(csrfCookie)) }

const (
	refreshCookie = "__Secure-refresh_token"
	csrfCookie    = "__Host-csrf_token"
)

// do sends a request with the device's cookies (and User-Agent) and stores
// the cookies the response sets, like a browser would.
func (d *device) do(t *testing.T, method, path string, body any, opts ...reqOpt) *resp {
	t.Helper()
	p := path
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	all := []reqOpt{hdr("User-Agent", d.ua)}
	if ch := d.cookieHeader(p); ch != "" {
		all = append(all, hdr("Cookie", ch))
	}
	all = append(all, opts...)
	r := d.srv.do(t, method, path, body, all...)
	d.absorb(r)
	return r
}

func (d *device) absorb(r *resp) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range r.SetCookies {
		if c.MaxAge < 0 || (!c.Expires.IsZero() && c.Expires.Before(time.Now())) {
			delete(d.cookies, c.Name)
			continue
		}
		d.cookies[c.Name] = storedCookie{value: c.Value, path: c.Path}
		if c.Name == csrfCookie {
			d.lastCSRF = c.Value
		}
		if c.Name == refreshCookie && !d.body {
			d.refresh = c.Value
			d.history = append(d.history, c.Value)
		}
	}
	if r.Status/100 != 2 {
		return
	}
	var tr tokenResp
	if json.Unmarshal(r.Body, &tr) == nil && tr.AccessToken != "" {
		d.access = tr.AccessToken
		d.sid = tr.SessionID
		d.user = tr.User
		if d.body && tr.RefreshToken != "" {
			d.refresh = tr.RefreshToken
			d.history = append(d.history, tr.RefreshToken)
		}
	}
}

func (d *device) Access() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.access
}

func (d *device) Refresh() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.refresh
}

// authBody is the body of signup and login requests.
func (d *device) authBody(email, password string, extra map[string]any) map[string]any {
	m := map[string]any{"email": email, "password": password}
	if d.body {
		m["token_transport"] = "body"
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// signup registers a new account on a new device and asserts 201.
func (s *server) signup(t *testing.T, email, password string, body bool) *device {
	t.Helper()
	d := s.newDevice(body)
	d.email, d.password = email, password
	r := d.do(t, "POST", "/auth/signup", d.authBody(email, password, map[string]any{"name": "E2E User"}))
	if !expect(t, r, http.StatusCreated, "") {
		t.FailNow()
	}
	checkTokenResponse(t, r, body)
	return d
}

// login signs in on a new device and asserts 200.
func (s *server) login(t *testing.T, email, password string, body bool) *device {
	t.Helper()
	d := s.newDevice(body)
	d.email, d.password = email, password
	r := d.do(t, "POST", "/auth/login", d.authBody(email, password, nil))
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	checkTokenResponse(t, r, body)
	return d
}

// newUser signs up a fresh account and returns its first device.
func (s *server) newUser(t *testing.T, body bool) *device {
	t.Helper()
	return s.signup(t, newEmail(), newPassword(), body)
}

// another logs the same account in on a second device.
func (d *device) another(t *testing.T, body bool) *device {
	t.Helper()
	return d.srv.login(t, d.email, d.password, body)
}

// refreshReq presents the device's current refresh token in its mode.
func (d *device) refreshReq(t *testing.T) *resp {
	t.Helper()
	if d.body {
		return d.do(t, "POST", "/auth/refresh", map[string]any{"refresh_token": d.Refresh()})
	}
	return d.do(t, "POST", "/auth/refresh", nil, d.csrf())
}

// refreshOK refreshes and asserts 200 and rotation.
func (d *device) refreshOK(t *testing.T) *resp {
	t.Helper()
	old := d.Refresh()
	r := d.refreshReq(t)
	if !expect(t, r, http.StatusOK, "") {
		return r
	}
	checkTokenResponse(t, r, d.body)
	if d.Refresh() == old {
		t.Errorf("%s: refresh token did not rotate", r.req)
	}
	return r
}

// presentRefresh presents token the way this device would (cookie with the
// last known CSRF token, or body) without touching the device's state.
func (d *device) presentRefresh(t *testing.T, token string) *resp {
	t.Helper()
	if d.body {
		return d.srv.refreshWith(t, token)
	}
	d.mu.Lock()
	csrf := d.lastCSRF
	d.mu.Unlock()
	return d.srv.do(t, "POST", "/auth/refresh", nil,
		hdr("Cookie", refreshCookie+"="+token+"; "+csrfCookie+"="+csrf),
		hdr("X-CSRF-Token", csrf))
}

// refreshWith presents token in body mode (no cookies).
func (s *server) refreshWith(t *testing.T, token string) *resp {
	t.Helper()
	return s.do(t, "POST", "/auth/refresh", map[string]any{"refresh_token": token})
}

// me calls GET /auth/me with the device's access token.
func (d *device) me(t *testing.T) *resp {
	t.Helper()
	return d.srv.do(t, "GET", "/auth/me", nil, bearer(d.Access()))
}

func (s *server) meWith(t *testing.T, access string) *resp {
	t.Helper()
	return s.do(t, "GET", "/auth/me", nil, bearer(access))
}

// assertAlive proves the access token works and the session still refreshes.
func (d *device) assertAlive(t *testing.T, what string) {
	t.Helper()
	if r := d.me(t); r.Status != http.StatusOK {
		t.Errorf("%s: access token should work: %s", what, r)
	}
	if r := d.refreshReq(t); r.Status != http.StatusOK {
		t.Errorf("%s: session should still refresh: %s", what, r)
	}
}

// assertDead proves the access token and the refresh token are rejected.
func (d *device) assertDead(t *testing.T, what string) {
	t.Helper()
	if r := d.me(t); !expect(t, r, http.StatusUnauthorized, "invalid_token") {
		t.Errorf("%s: access token should be rejected at once", what)
	}
	r := d.presentRefresh(t, d.Refresh())
	if r.Status != http.StatusUnauthorized {
		t.Errorf("%s: refresh token should be rejected: %s", what, r)
	} else if c := r.Code(); c != "invalid_refresh_token" && c != "refresh_token_reused" {
		t.Errorf("%s: dead refresh token: code %q, want invalid_refresh_token or refresh_token_reused", what, c)
	}
}

// checkTokenResponse asserts the token response shape of API.md.
func checkTokenResponse(t *testing.T, r *resp, body bool) {
	t.Helper()
	m := r.JSON()
	if m == nil {
		t.Errorf("%s: body is not a JSON object", r)
		return
	}
	if m["token_type"] != "Bearer" {
		t.Errorf("%s: token_type = %v, want Bearer", r.req, m["token_type"])
	}
	if s, _ := m["access_token"].(string); strings.Count(s, ".") != 2 {
		t.Errorf("%s: access_token %q is not a compact JWS", r.req, abbrev(s))
	}
	if n, ok := m["expires_in"].(float64); !ok || n <= 0 {
		t.Errorf("%s: expires_in = %v, want a positive number", r.req, m["expires_in"])
	}
	if s, _ := m["session_id"].(string); s == "" {
		t.Errorf("%s: session_id missing", r.req)
	}
	u, _ := m["user"].(map[string]any)
	checkUserObject(t, r.req, u, false)
	rt, has := m["refresh_token"]
	if body {
		if s, _ := rt.(string); !strings.Contains(s, ".") {
			t.Errorf("%s: body mode: refresh_token = %v, want <id>.<secret>", r.req, rt)
		}
		if c := r.Cookie(refreshCookie); c != nil {
			t.Errorf("%s: body mode must not set the refresh cookie (got %q)", r.req, r.rawSetCookie(refreshCookie))
		}
	} else {
		if has {
			t.Errorf("%s: cookie mode: refresh_token must never be in the body", r.req)
		}
		c := r.Cookie(refreshCookie)
		if c == nil {
			t.Errorf("%s: cookie mode: no %s cookie set", r.req, refreshCookie)
		} else if strings.Contains(string(r.Body), c.Value) {
			t.Errorf("%s: cookie mode: refresh token value appears in the body", r.req)
		}
	}
	if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("%s: Cache-Control = %q, want no-store", r.req, cc)
	}
	if p := r.Header.Get("Pragma"); p != "no-cache" {
		t.Errorf("%s: Pragma = %q, want no-cache", r.req, p)
	}
}

// checkUserObject asserts the user object shape.
func checkUserObject(t *testing.T, ctx string, u map[string]any, admin bool) {
	t.Helper()
	if u == nil {
		t.Errorf("%s: user object missing", ctx)
		return
	}
	for _, k := range []string{"id", "email", "name", "role", "created_at"} {
		if _, ok := u[k].(string); !ok {
			t.Errorf("%s: user.%s missing or not a string: %v", ctx, k, u)
		}
	}
	if id, _ := u["id"].(string); id == "" {
		t.Errorf("%s: user.id empty", ctx)
	}
	if role, _ := u["role"].(string); role != "user" && role != "admin" {
		t.Errorf("%s: user.role = %q", ctx, role)
	}
	if ca, _ := u["created_at"].(string); !isRFC3339UTC(ca) {
		t.Errorf("%s: user.created_at %q is not an RFC 3339 UTC time", ctx, ca)
	}
	for k := range u {
		lk := strings.ToLower(k)
		if strings.Contains(lk, "password") || strings.Contains(lk, "hash") {
			t.Errorf("%s: user object exposes %q", ctx, k)
		}
	}
	if admin {
		if _, ok := u["disabled"].(bool); !ok {
			t.Errorf("%s: admin user object lacks boolean disabled: %v", ctx, u)
		}
	}
}

func isRFC3339UTC(s string) bool {
	if !strings.HasSuffix(s, "Z") {
		return false
	}
	_, err := time.Parse(time.RFC3339Nano, s)
	return err == nil
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

var emailSeq atomic.Int64

func newEmail() string {
	return fmt.Sprintf("user%d.%s@example.com", emailSeq.Add(1), randHex(3))
}

func newPassword() string { return "Gh-e2e-" + randHex(8) + "!" }

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// splitRefresh splits <id>.<secret>.
func splitRefresh(t *testing.T, tok string) (id, secret string) {
	t.Helper()
	id, secret, ok := strings.Cut(tok, ".")
	if !ok || id == "" || secret == "" {
		t.Fatalf("refresh token %q is not <id>.<secret>", abbrev(tok))
	}
	return id, secret
}

// makeAdmin creates an admin with `gatehouse user create` against the running
// server's database and signs it in (body mode).
func (s *server) makeAdmin(t *testing.T) (id string, d *device) {
	t.Helper()
	email, pw := "admin-"+newEmail(), newPassword()
	res := runCLI(t, pw+"\n", nil, "user", "create", "--email", email, "--role", "admin", "--database", "sqlite:"+s.dbPath)
	if res.code != 0 {
		t.Fatalf("gatehouse user create: exit %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	id = strings.TrimSpace(res.stdout)
	if id == "" || strings.ContainsAny(id, " \n") {
		t.Errorf("gatehouse user create: stdout should be the user id alone, got %q", res.stdout)
	}
	d = s.login(t, email, pw, true)
	if d.user.Role != "admin" {
		t.Errorf("admin created by CLI logs in with role %q", d.user.Role)
	}
	if d.user.ID != id {
		t.Errorf("gatehouse user create printed %q but login says user id %q", id, d.user.ID)
	}
	return id, d
}

// atOnce runs f(0) … f(n-1) in goroutines released together, so that they
// race as concurrent clients do, and returns when all have finished.
func atOnce(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			f(i)
		})
	}
	close(start)
	wg.Wait()
}

// eventually polls f until it returns true or the timeout passes.
func eventually(timeout time.Duration, f func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func atoiOr(s string, def int) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return def
	}
	return n
}

// exitCode is a finished command's exit status: 0 for no error, the
// process's code when it ran and failed, -1 when it did not run or was
// killed by a signal.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// watch makes cmd, just started, the server's process, and records its
// exit code when it ends; the channel it returns is closed then.
func (s *server) watch(cmd *exec.Cmd) <-chan struct{} {
	exited := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	go func() {
		code := exitCode(cmd.Wait())
		s.mu.Lock()
		s.exitCode = code
		s.mu.Unlock()
		close(exited)
	}()
	return exited
}
