package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/argon2"
)

// helloServer is the reference for GET /auth/me: a bare net/http handler,
// served from this process on loopback, measured with the same load
// generator.
func helloServer() (base string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	hello := []byte("Hello, world!\n")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(hello)
	})}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

func getOp(c *http.Client, url string) op {
	return func(ctx context.Context) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false
		}
		resp, err := c.Do(req)
		if err != nil {
			return false
		}
		var buf [512]byte
		for {
			if _, err := resp.Body.Read(buf[:]); err != nil {
				break
			}
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
}

// argon2Rate is the reference for login: argon2id hashes per second with
// the server's parameters (m=19456 KiB, t=2, p=1, 32-byte key), one
// goroutine per CPU, for dur.
func argon2Rate(ctx context.Context, dur time.Duration) float64 {
	var n atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < runtime.NumCPU(); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			salt := make([]byte, 16)
			for !stop.Load() {
				argon2.IDKey([]byte(benchPassword), salt, 2, 19456, 1, 32)
				n.Add(1)
			}
		}()
	}
	sleepCtx(ctx, dur)
	stop.Store(true)
	wg.Wait()
	// Hashes that straddle the end still finished; count the time they took.
	return float64(n.Load()) / time.Since(start).Seconds()
}

// pgbenchTPS is the reference for refresh-postgres: pgbench running a
// one-row UPDATE ... RETURNING by primary key on a 10k-row table in the
// same database, -M prepared, the same client count.
func pgbenchTPS(ctx context.Context, pgbench, dbURL, dir string, clients int, dur time.Duration) (float64, string, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, "", err
	}
	_, err = conn.Exec(ctx, `DROP TABLE IF EXISTS bench_counter;
		CREATE TABLE bench_counter (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
		INSERT INTO bench_counter (id) SELECT generate_series(1, 10000);`)
	if err == nil {
		_, err = conn.Exec(ctx, `VACUUM ANALYZE bench_counter`)
	}
	conn.Close(ctx)
	if err != nil {
		return 0, "", fmt.Errorf("pgbench table: %w", err)
	}
	script := filepath.Join(dir, "update.sql")
	if err := os.WriteFile(script, []byte("\\set id random(1, 10000)\nUPDATE bench_counter SET n = n + 1 WHERE id = :id RETURNING n;\n"), 0o644); err != nil {
		return 0, "", err
	}
	secs := max(1, int(dur.Round(time.Second).Seconds()))
	args := []string{"-M", "prepared", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, runtime.NumCPU())),
		"-T", strconv.Itoa(secs), "-n", "-f", script, dbURL}
	cmdline := "pgbench " + joinArgs(args[:len(args)-1]) + " <db>"
	out, err := exec.CommandContext(ctx, pgbench, args...).CombinedOutput()
	if err != nil {
		return 0, cmdline, fmt.Errorf("pgbench: %w: %s", err, out)
	}
	m := regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`).FindSubmatch(out)
	if m == nil {
		return 0, cmdline, fmt.Errorf("pgbench: no tps in output: %s", out)
	}
	tps, err := strconv.ParseFloat(string(m[1]), 64)
	return tps, cmdline, err
}

func joinArgs(a []string) string {
	s := ""
	for i, x := range a {
		if i > 0 {
			s += " "
		}
		s += x
	}
	return s
}

// findPgbench looks on PATH, then in the PostgreSQL install directories.
func findPgbench(flagPath string) string {
	if flagPath != "" {
		return flagPath
	}
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	if len(matches) > 0 {
		return matches[len(matches)-1]
	}
	return ""
}
