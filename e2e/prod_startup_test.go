package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// prodTableCount is the number of tables in the public schema of dbURL.
func prodTableCount(t *testing.T, dbURL string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").Scan(&n); err != nil {
		t.Fatalf("count tables: %v", err)
	}
	return n
}

// prodOneLine asserts that a failed start printed exactly one line.
func prodOneLine(t *testing.T, what string, res cliResult) string {
	t.Helper()
	if res.code == 0 || res.code == -2 {
		t.Errorf("%s: exit code %d, want a prompt non-zero exit", what, res.code)
	}
	line := strings.TrimSuffix(res.stderr, "\n")
	if line == "" || strings.Contains(line, "\n") {
		t.Errorf("%s: stderr must be exactly one line, got:\n%s", what, res.stderr)
	}
	if res.stdout != "" {
		t.Errorf("%s: stdout should be empty, got %q", what, res.stdout)
	}
	return line
}

// TestProdStartupNeedsMasterKey: on a real, reachable PostgreSQL database,
// serve without a master key exits at once with one clear line and touches
// nothing.
func TestProdStartupNeedsMasterKey(t *testing.T) {
	t.Parallel()
	env := prodRequire(t)
	db := prodNewDatabase(t, env)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	res := runBounded(t, 10*time.Second, nil, "serve", "--addr", addr, "--database", db)
	line := prodOneLine(t, "serve on PostgreSQL without --master-key", res)
	if !strings.Contains(line, "master-key") {
		t.Errorf("the line should name --master-key: %q", line)
	}
	if n := prodTableCount(t, db); n != 0 {
		t.Errorf("a start refused for a missing master key created %d tables", n)
	}

	// A password in the database URL never reaches the message of an
	// unreachable database.
	bad := "postgres://postgres:s3cr3t-pw@127.0.0.1:1/x?sslmode=disable"
	res = runBounded(t, 10*time.Second, nil, "serve", "--addr", addr, "--database", bad, "--master-key", prodMasterKey())
	line = prodOneLine(t, "serve on an unreachable PostgreSQL", res)
	if strings.Contains(line, "s3cr3t-pw") {
		t.Errorf("the error line leaks the database password: %q", line)
	}

}

// prodTrack stops s when the test ends (like startServer does) and checks
// its log for panics and races.
func prodTrack(t *testing.T, s *server) {
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
			t.Logf("server stderr:\n%s", logs)
		}
	})
}

// TestProdConcurrentFirstStart: three instances started at the same moment
// on a fresh database all come up (the migrations take an advisory lock),
// and the schema is migrated once.
func TestProdConcurrentFirstStart(t *testing.T) {
	t.Parallel()
	c, _ := prodNewCluster(t)
	const n = 3
	servers := make([]*server, n)
	errs := make([]error, n)
	for i := range servers {
		s := &server{t: t, dir: t.TempDir(), stderr: &syncBuffer{}, extra: c.args()}
		s.dbPath = filepath.Join(s.dir, "unused.db")
		servers[i] = s
		prodTrack(t, s)
	}
	ports := make([]int, n)
	for i := range ports {
		ports[i] = freePort(t)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, s := range servers {
		wg.Go(func() {
			<-start
			errs[i] = s.tryStart(ports[i])
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("instance %d of %d started at once on a fresh database: %v\n%s", i, n, err, servers[i].stderr.String())
		}
	}
	// They are one service.
	d := servers[0].newUser(t, true)
	l := prodLogin(t, servers[1], d.email, d.password, true)
	expect(t, servers[2].meWith(t, l.Access()), http.StatusOK, "")
	expect(t, servers[2].refreshWith(t, d.Refresh()), http.StatusOK, "")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var rows, versions int
	if err := conn.QueryRow(ctx, "SELECT count(*), count(DISTINCT version) FROM schema_migrations").Scan(&rows, &versions); err != nil {
		t.Fatalf("schema_migrations: %v", err)
	}
	if rows == 0 || rows != versions {
		t.Errorf("schema_migrations has %d rows for %d versions", rows, versions)
	}
}

// TestProdMigrateCommand: `gatehouse migrate` prepares a database (and is
// idempotent); `serve --no-migrate` then runs on it, and refuses, with one
// line, a database that was never migrated.
func TestProdMigrateCommand(t *testing.T) {
	t.Parallel()
	c, _ := prodNewCluster(t)

	res := runBounded(t, 10*time.Second, nil, "serve", "--addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--database", c.dbURL, "--master-key", c.key, "--no-migrate")
	prodOneLine(t, "serve --no-migrate on an empty database", res)

	for i := range 2 {
		res := runBounded(t, 20*time.Second, nil, "migrate", "--database", c.dbURL)
		if res.code != 0 {
			t.Fatalf("gatehouse migrate (run %d): exit %d\nstdout: %s\nstderr: %s", i+1, res.code, res.stdout, res.stderr)
		}
	}
	if n := prodTableCount(t, c.dbURL); n == 0 {
		t.Fatalf("gatehouse migrate created no tables")
	}
	s := c.start(t, "--no-migrate")
	d := s.newUser(t, true)
	d.assertAlive(t, "session on a database prepared by gatehouse migrate")
}
