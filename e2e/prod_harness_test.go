package e2e

// Helpers for the production-configuration tests (prod_*_test.go): the real
// binary on PostgreSQL and Redis, several instances at once, and faults.
//
// Every test gets its own PostgreSQL database (CREATE DATABASE gh_e2e_...,
// dropped WITH (FORCE) afterwards) and its own redis-server process on a free
// port, because the server uses fixed Redis key names and a fixed pub/sub
// channel, and because the fault tests kill that Redis. The shared services
// named by GATEHOUSE_TEST_POSTGRES_URL / GATEHOUSE_TEST_REDIS_URL are never
// stopped or flushed: other packages' tests use them at the same time.
//
// Without those variables the tests skip, unless CI=true, where they fail, as
// they do when the services are unreachable.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
)

// prodEnv holds the URLs of the shared services from the environment.
type prodEnv struct {
	pgURL    string // the shared test database; used only to create and drop ours
	redisURL string // the shared Redis; only checked for reachability
}

// prodRequire returns the environment, skipping (or, with CI=true, failing)
// when it is not configured or the services cannot be reached.
func prodRequire(t *testing.T) prodEnv {
	t.Helper()
	ci := os.Getenv("CI") == "true"
	miss := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if ci {
			t.Fatalf("CI=true but %s", msg)
		}
		t.Skip(msg)
	}
	env := prodEnv{
		pgURL:    os.Getenv("GATEHOUSE_TEST_POSTGRES_URL"),
		redisURL: os.Getenv("GATEHOUSE_TEST_REDIS_URL"),
	}
	if env.pgURL == "" || env.redisURL == "" {
		miss("GATEHOUSE_TEST_POSTGRES_URL and GATEHOUSE_TEST_REDIS_URL are not both set")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		miss("redis-server is not on PATH (each test runs its own): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, env.pgURL)
	if err == nil {
		err = conn.Ping(ctx)
		conn.Close(ctx)
	}
	if err != nil {
		miss("PostgreSQL at GATEHOUSE_TEST_POSTGRES_URL is unreachable: %v", err)
	}
	opts, err := redis.ParseURL(env.redisURL)
	if err != nil {
		miss("GATEHOUSE_TEST_REDIS_URL: %v", err)
	}
	rc := redis.NewClient(opts)
	err = rc.Ping(ctx).Err()
	rc.Close()
	if err != nil {
		miss("Redis at GATEHOUSE_TEST_REDIS_URL is unreachable: %v", err)
	}
	return env
}

// prodNewDatabase creates a fresh, empty database for this test and returns
// its URL. It is dropped (WITH (FORCE)) when the test ends, after the servers
// started later have stopped.
func prodNewDatabase(t *testing.T, env prodEnv) string {
	t.Helper()
	name := "gh_e2e_" + randHex(6)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, env.pgURL)
	if err != nil {
		t.Fatalf("connect to the test database: %v", err)
	}
	defer conn.Close(context.Background())
	for attempt := 0; ; attempt++ {
		_, err = conn.Exec(ctx, "CREATE DATABASE "+name)
		var pgErr *pgconn.PgError
		// 55006: the template database is briefly in use by another
		// CREATE DATABASE; try again.
		if err != nil && errors.As(err, &pgErr) && pgErr.Code == "55006" && attempt < 20 {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		break
	}
	if err != nil {
		t.Fatalf("CREATE DATABASE %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, env.pgURL)
		if err != nil {
			t.Errorf("drop database %s: connect: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("DROP DATABASE %s: %v", name, err)
		}
	})
	u, err := url.Parse(env.pgURL)
	if err != nil {
		t.Fatalf("GATEHOUSE_TEST_POSTGRES_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// prodWithHost returns dbURL with its host:port replaced (to go through a proxy).
func prodWithHost(t *testing.T, dbURL, hostport string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("parse %q: %v", dbURL, err)
	}
	u.Host = hostport
	return u.String()
}

// prodSQL runs one statement on dbURL from the test (not through any proxy).
func prodSQL(t *testing.T, dbURL, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// prodMasterKey is a fresh base64 master secret of 32 bytes.
func prodMasterKey() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// ---------------------------------------------------------------------------
// A redis-server of the test's own
// ---------------------------------------------------------------------------

// prodRedis is one redis-server process that keeps nothing on disk. Kill and
// Start (on the same port) simulate a Redis outage and restart.
type prodRedis struct {
	t    *testing.T
	dir  string
	port int
	logs *syncBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// prodStartRedis starts a redis-server on a free port; it is killed when the
// test ends (after the servers started later have stopped).
func prodStartRedis(t *testing.T) *prodRedis {
	t.Helper()
	r := &prodRedis{t: t, dir: t.TempDir(), logs: &syncBuffer{}}
	t.Cleanup(func() {
		r.Kill()
		if t.Failed() {
			t.Logf("redis-server (port %d) output:\n%s", r.port, r.logs.String())
		}
	})
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		r.port = freePort(t)
		if err = r.start(); err == nil {
			return r
		}
	}
	t.Fatalf("starting redis-server: %v\n%s", err, r.logs.String())
	return nil
}

// URL is the redis:// URL of this server.
func (r *prodRedis) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

// Start starts the server again on the same port, empty.
func (r *prodRedis) Start() {
	r.t.Helper()
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		if err = r.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond) // the port may linger briefly
	}
	r.t.Fatalf("restarting redis-server on port %d: %v\n%s", r.port, err, r.logs.String())
}

func (r *prodRedis) start() error {
	cmd := exec.Command("redis-server",
		"--port", fmt.Sprint(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", r.dir)
	cmd.Stdout = r.logs
	cmd.Stderr = r.logs
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return errors.New("redis-server exited during startup")
		default:
		}
		if prodRedisPing(r.port) == nil {
			r.mu.Lock()
			r.cmd, r.done = cmd, done
			r.mu.Unlock()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-done
	return errors.New("redis-server did not answer PING within 5s")
}

// Kill stops the server at once (SIGKILL): its data is gone.
func (r *prodRedis) Kill() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// prodRedisPing sends PING on a raw connection and expects +PONG.
func prodRedisPing(port int) error {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// ---------------------------------------------------------------------------
// A TCP proxy that can drop every connection and refuse new ones
// ---------------------------------------------------------------------------

type prodProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// prodNewProxy forwards a local port to target until the test ends.
func prodNewProxy(t *testing.T, target string) *prodProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &prodProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(func() {
		ln.Close()
		p.SetDown(true)
		p.wg.Wait()
	})
	return p
}

// Addr is the proxy's host:port.
func (p *prodProxy) Addr() string { return p.ln.Addr().String() }

// SetDown(true) closes every proxied connection and closes each new one as
// soon as it is accepted; SetDown(false) forwards again.
func (p *prodProxy) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
	}
}

func (p *prodProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *prodProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		c.Close()
	}
}

func (p *prodProxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
			if err != nil {
				c.Close()
				return
			}
			if !p.track(c, up) {
				c.Close()
				up.Close()
				return
			}
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
			<-done
			p.untrack(c, up)
			<-done
		}()
	}
}

// ---------------------------------------------------------------------------
// Instances
// ---------------------------------------------------------------------------

// prodCluster is what several instances share: database, Redis, master key.
type prodCluster struct {
	dbURL    string
	redisURL string // "" for none
	key      string
}

// prodNewCluster creates a database and a Redis of the test's own.
func prodNewCluster(t *testing.T) (prodCluster, *prodRedis) {
	t.Helper()
	env := prodRequire(t)
	db := prodNewDatabase(t, env)
	rd := prodStartRedis(t)
	return prodCluster{dbURL: db, redisURL: rd.URL(), key: prodMasterKey()}, rd
}

// args are the serve flags for an instance of the cluster. X-Forwarded-For
// from the test is believed, so each login can come from its own client IP.
// The issuer is set explicitly, as behind a load balancer: its default is
// derived from --addr, which differs per instance, and an instance rejects
// tokens of another issuer.
func (c prodCluster) args(extra ...string) []string {
	a := []string{"--database", c.dbURL, "--master-key", c.key, "--trusted-proxies", "127.0.0.1",
		"--issuer", "https://auth.e2e.test"}
	if c.redisURL != "" {
		a = append(a, "--redis", c.redisURL)
	}
	return append(a, extra...)
}

// start starts one instance (the harness's server, so Restart, Stop and the
// log checks all apply).
func (c prodCluster) start(t *testing.T, extra ...string) *server {
	t.Helper()
	return startServer(t, c.args(extra...)...)
}

// prodIP is a client IP of its own for X-Forwarded-For (198.18.0.0/15).
func prodIP() string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return fmt.Sprintf("198.%d.%d.%d", 18+b[0]%2, b[1], b[2]%254+1)
}

// prodLogin signs email in on s from a fresh client IP (so login rate limits
// configured for a subtest do not bite the others) and asserts 200.
func prodLogin(t *testing.T, s *server, email, password string, body bool) *device {
	t.Helper()
	d := s.newDevice(body)
	d.email, d.password = email, password
	r := d.do(t, "POST", "/auth/login", d.authBody(email, password, nil), hdr("X-Forwarded-For", prodIP()))
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	checkTokenResponse(t, r, body)
	return d
}

// prodUse points the device's later requests at s (another instance). The
// device must not be in use concurrently.
func prodUse(d *device, s *server) *device {
	d.srv = s
	return d
}

// prodUntil polls check every 5ms until it returns true or timeout passes,
// and reports how long that took.
func prodUntil(timeout time.Duration, check func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if check() {
			return time.Since(start), true
		}
		if time.Since(start) > timeout {
			return time.Since(start), false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// prodUntilStatus polls GET path on s (with opts) until it answers want.
func prodUntilStatus(t *testing.T, s *server, timeout time.Duration, want int, path string, opts ...reqOpt) (time.Duration, *resp) {
	t.Helper()
	var last *resp
	d, _ := prodUntil(timeout, func() bool {
		last = s.do(t, "GET", path, nil, opts...)
		return last.Status == want
	})
	return d, last
}

// prodAwaitRevoked polls GET /auth/me on s with access until 401 and
// returns the time it took, failing the test if it exceeds limit.
func prodAwaitRevoked(t *testing.T, what string, s *server, access string, limit time.Duration) time.Duration {
	t.Helper()
	took, last := prodUntilStatus(t, s, limit+2*time.Second, http.StatusUnauthorized, "/auth/me", bearer(access))
	if last.Status != http.StatusUnauthorized {
		t.Errorf("%s: other instance still accepts the access token after %v: %s", what, took.Round(time.Millisecond), last)
		return took
	}
	expect(t, last, http.StatusUnauthorized, "invalid_token")
	if took >= limit {
		t.Errorf("%s: other instance refused the token only after %v, want < %v", what, took.Round(time.Millisecond), limit)
	}
	t.Logf("%s: refused by the other instance after %v", what, took.Round(100*time.Microsecond))
	return took
}

// prodAwaitDead waits (up to the 1 s of the contract) for instance s to
// refuse d's access token, then asserts on s that the whole session is dead.
// Revocations cross instances asynchronously, so asserting at once on
// another instance than the one that revoked would race.
func prodAwaitDead(t *testing.T, what string, d *device, s *server) {
	t.Helper()
	prodAwaitRevoked(t, what, s, d.Access(), time.Second)
	prodUse(d, s).assertDead(t, what)
}
