package e2e

// Issue 10, item 18: the metrics listener, --help and Redis at start.

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestHardeningOpsMetricsAddr: --metrics-addr serves /metrics on a listener
// of its own, and the public port then answers 404 for /metrics.
func TestHardeningOpsMetricsAddr(t *testing.T) {
	t.Parallel()
	maddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := startServer(t, "--metrics-addr", maddr)
	expect(t, s.do(t, "GET", "/metrics", nil), http.StatusNotFound, "not_found")
	res, err := s.hc.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics on --metrics-addr: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain; version=0.0.4") || !strings.Contains(string(b), "# TYPE") {
		t.Errorf("GET /metrics on --metrics-addr: %d %q %.200s", res.StatusCode, res.Header.Get("Content-Type"), b)
	}
	// The metrics listener serves nothing else.
	res, err = s.hc.Get("http://" + maddr + "/auth/me")
	if err != nil {
		t.Fatalf("GET /auth/me on --metrics-addr: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("GET /auth/me on --metrics-addr: %d, want 404", res.StatusCode)
	}
	// Without the flag the public port keeps serving /metrics (API.md).
	plain := startServer(t)
	expect(t, plain.do(t, "GET", "/metrics", nil), http.StatusOK, "")
	// The environment variable works like the flag.
	res2 := runBounded(t, 10*time.Second, []string{"GATEHOUSE_METRICS_ADDR=not-an-address"}, "serve", "--addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--database", "sqlite::memory:")
	if res2.code == 0 || strings.Count(strings.TrimSuffix(res2.stderr, "\n"), "\n") != 0 || !strings.Contains(res2.stderr, "metrics-addr") {
		t.Errorf("GATEHOUSE_METRICS_ADDR=not-an-address: exit %d, stderr %q; want one line naming --metrics-addr", res2.code, res2.stderr)
	}
}

// TestHardeningOpsHelp: `gatehouse --help`, `-h` and `help` print the usage
// on stdout and exit 0.
func TestHardeningOpsHelp(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"--help", "-h", "help", "-help"} {
		res := runBounded(t, 10*time.Second, nil, arg)
		if res.code != 0 || !strings.Contains(res.stdout, "usage: gatehouse") || !strings.Contains(res.stdout, "serve") || res.stderr != "" {
			t.Errorf("gatehouse %s: exit %d, stdout %q, stderr %q; want the usage on stdout and exit 0", arg, res.code, res.stdout, res.stderr)
		}
	}
	res := runBounded(t, 10*time.Second, nil, "serve", "--help")
	if res.code != 0 || !strings.Contains(res.stdout, "--max-connections") && !strings.Contains(res.stdout, "-max-connections") {
		t.Errorf("gatehouse serve --help: exit %d, stdout %q", res.code, res.stdout)
	}
}

// TestHardeningOpsRedisAtStart: an unreachable Redis at start is a warning
// naming the problem (without the URL's password), and the startup line says
// whether Redis is connected.
func TestHardeningOpsRedisAtStart(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-pw"
	// The startup line is written just before serving starts and reaches
	// the test's buffer through a pipe, so wait for it.
	startupLine := func(s *server) string {
		var logs string
		eventually(5*time.Second, func() bool {
			logs = s.stderr.String()
			return strings.Contains(logs, `"msg":"gatehouse listening"`)
		})
		return logs
	}
	down := startServer(t, "--redis", fmt.Sprintf("redis://gh:%s@127.0.0.1:%d/0", secret, freePort(t)))
	logs := startupLine(down)
	if !strings.Contains(logs, `"level":"WARN","msg":"redis unreachable at start`) {
		t.Errorf("no warning for an unreachable Redis at start:\n%s", logs)
	}
	if !strings.Contains(logs, `"redis":"unreachable"`) {
		t.Errorf("the startup line does not say Redis is unreachable:\n%s", logs)
	}
	for _, line := range strings.Split(logs, "\n") {
		// The harness's own "=== e2e: start" line shows the command line.
		if !strings.HasPrefix(line, "=== e2e:") && strings.Contains(line, secret) {
			t.Errorf("the log contains the Redis password: %s", line)
		}
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skipf("redis-server not on PATH: %v", err)
	}
	rd := prodStartRedis(t)
	up := startServer(t, "--redis", rd.URL())
	if logs := startupLine(up); !strings.Contains(logs, `"redis":"connected"`) || strings.Contains(logs, "redis unreachable") {
		t.Errorf("the startup line does not say Redis is connected:\n%s", logs)
	}
	none := startServer(t)
	if logs := startupLine(none); !strings.Contains(logs, `"redis":"off"`) {
		t.Errorf("the startup line does not say Redis is off:\n%s", logs)
	}
}
