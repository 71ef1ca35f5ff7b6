// Command gatehouse-bench is Gatehouse's load harness (issue 6). It starts
// what it needs on loopback (a gatehouse server on SQLite in a temporary
// directory; another on PostgreSQL in a fresh database, with Redis when
// reachable), drives each scenario with its own keep-alive HTTP load
// generator for a fixed time, measures the references in the same run (a
// bare net/http handler, pgbench, argon2id hashes/s) and prints one table
// with the ratios to the targets.
//
//	go run ./cmd/gatehouse-bench                       # everything, 10 s per scenario
//	go run ./cmd/gatehouse-bench -d 5s -scenarios me,refresh-sqlite
//
// Everything is bounded in time and listens on 127.0.0.1 only.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

var allScenarios = []string{"me", "refresh-sqlite", "storage", "login", "login-rss", "signup-mail", "refresh-postgres", "verify-token", "verify-apikey", "oauth"}

type options struct {
	bin            string
	dur, warmup    time.Duration
	workers        int
	scenarios      []string
	pgAdmin        string
	pgDB           string
	pgServerArgs   string
	redis          string
	pgbench        string
	loginClients   int
	rotations      int
	signupRounds   int
	signupSMTP     bool
	signupControl  bool
	signupClosedD  time.Duration
	signupLoad     float64
	signupArrivals string
	keep           bool
}

func main() {
	var o options
	var scen string
	flag.StringVar(&o.bin, "bin", "", "gatehouse binary to run (default: go build ./cmd/gatehouse into a temp dir)")
	flag.DurationVar(&o.dur, "d", 10*time.Second, "measured duration of each scenario")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warm-up before each scenario")
	flag.IntVar(&o.workers, "workers", 16, "concurrent workers (connections) of the load generator and pgbench clients")
	flag.StringVar(&scen, "scenarios", "all", "comma-separated: "+strings.Join(allScenarios, ",")+" (references run with their scenario)")
	flag.StringVar(&o.pgAdmin, "postgres", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL URL used to create and drop the bench database")
	flag.StringVar(&o.pgDB, "postgres-db", "gatehouse_bench", "name of the database created (and dropped) for refresh-postgres and pgbench")
	flag.StringVar(&o.pgServerArgs, "postgres-server-params", "", "extra query parameters for the server's database URL only, e.g. pool_max_conns=16")
	flag.StringVar(&o.redis, "redis", "redis://127.0.0.1:6379/13", "Redis URL for the PostgreSQL server, used when reachable (empty: none)")
	flag.StringVar(&o.pgbench, "pgbench", "", "pgbench binary (default: PATH, then /usr/lib/postgresql/*/bin)")
	flag.IntVar(&o.loginClients, "login-clients", 500, "clients logging in at once for the login memory check")
	flag.IntVar(&o.rotations, "rotations", 10000, "rotations of one session for the storage check")
	flag.IntVar(&o.signupRounds, "signup-rounds", 4, "slices per side for signup-mail, run in ABBA order in each of its two modes (-d is the measured time per side and mode)")
	flag.Float64Var(&o.signupLoad, "signup-load", 0.5, "signup-mail's open loop offers this fraction of the --no-mail server's closed-loop capacity, measured in the same run (0: closed loop only)")
	flag.StringVar(&o.signupArrivals, "signup-arrivals", "poisson", "arrivals of signup-mail's open loop: poisson (exponential gaps) or even")
	flag.BoolVar(&o.signupSMTP, "signup-smtp", true, "signup-mail also measures a server sending through SMTP to a sink in the harness")
	flag.DurationVar(&o.signupClosedD, "signup-closed-d", 0, "measured time per side of signup-mail's closed loop, which only sets the open loop's rate (0: -d); keep its slices (this / -signup-rounds) at 3s or more, since only sign-ups begun and answered inside a slice count, which at saturation undercounts short slices")
	flag.BoolVar(&o.signupControl, "signup-control", true, "signup-mail also measures a second --no-mail server against the first, the run's noise floor for the ratios")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (server logs, databases)")
	flag.Parse()
	if o.signupArrivals != "poisson" && o.signupArrivals != "even" {
		fmt.Fprintf(os.Stderr, "gatehouse-bench: -signup-arrivals %q: want poisson or even\n", o.signupArrivals)
		os.Exit(2)
	}
	if scen == "all" {
		o.scenarios = allScenarios
	} else {
		for _, s := range strings.Split(scen, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(allScenarios, s) {
				fmt.Fprintf(os.Stderr, "gatehouse-bench: unknown scenario %q (want %s)\n", s, strings.Join(allScenarios, ","))
				os.Exit(2)
			}
			o.scenarios = append(o.scenarios, s)
		}
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, &o); err != nil {
		fmt.Fprintln(os.Stderr, "gatehouse-bench:", err)
		os.Exit(1)
	}
}

// row is one line of the table.
type row struct {
	scenario     string
	res          *result
	reference    string  // what the ratio is taken against
	refValue     float64 // its requests (or hashes, transactions) per second
	target       float64 // minimum ratio; 0: none
	value        float64 // requests/s unless res is nil
	note         string
	failed       string
	passOverride *bool
	// refText and ratioText, when set, replace the reference and ratio
	// columns, for targets that are not a throughput ratio (signup-mail
	// compares latencies, lower is better).
	refText, ratioText string
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, o *options) error {
	dir, err := os.MkdirTemp("", "gatehouse-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		logf("temporary directory %s (kept)", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	bin := o.bin
	if bin == "" {
		bin = filepath.Join(dir, "gatehouse")
		logf("building ./cmd/gatehouse")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/gatehouse")
		cmd.Dir = moduleRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %w\n%s", err, out)
		}
	}
	want := func(s string) bool { return slices.Contains(o.scenarios, s) }
	var rows []row
	client := newClient(o.workers)

	// --- SQLite: me (vs hello world), refresh-sqlite, storage, login ----
	if want("me") || want("refresh-sqlite") || want("storage") || want("login") || want("oauth") {
		rows = append(rows, sqliteScenarios(ctx, o, bin, dir, client, want)...)
	}
	if want("verify-token") || want("verify-apikey") {
		rows = append(rows, verifyScenarios(ctx, o, bin, dir, client, want)...)
	}
	if want("login-rss") {
		rows = append(rows, loginRSS(ctx, o, bin, dir))
	}
	if want("signup-mail") {
		rows = append(rows, signupMail(ctx, o, bin, dir)...)
	}
	if want("refresh-postgres") {
		rows = append(rows, postgresScenarios(ctx, o, bin, dir, client)...)
	}
	// me on PostgreSQL shares the hello-world reference measured with the
	// SQLite scenarios.
	for i := range rows {
		if strings.HasPrefix(rows[i].scenario, "hello-world") && rows[i].failed == "" {
			for j := range rows {
				if strings.HasPrefix(rows[j].scenario, "me (GET /auth/me, PostgreSQL") && rows[j].reference == "" {
					rows[j].reference, rows[j].refValue = "hello-world", rows[i].value
				}
			}
		}
	}
	printTable(os.Stdout, o, rows)
	return nil
}

func moduleRoot() string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "."
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "."
	}
	return filepath.Dir(gomod)
}

// workerSessions logs in n body-mode sessions of one user, a few at a time.
func workerSessions(ctx context.Context, c *http.Client, base, email string, n int) ([]tokenResp, error) {
	out := make([]tokenResp, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.NumCPU())
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i], errs[i] = login(ctx, c, base, email)
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func sqliteScenarios(ctx context.Context, o *options, bin, dir string, client *http.Client, want func(string) bool) []row {
	var rows []row
	fail := func(name, msg string) { rows = append(rows, row{scenario: name, failed: msg}) }
	dbPath := filepath.Join(dir, "sqlite", "gh.db")
	if err := os.MkdirAll(filepath.Dir(dbPath), 0o700); err != nil {
		fail("sqlite", err.Error())
		return rows
	}
	srv, err := startServer(ctx, bin, dir, "sqlite", "--database", "sqlite:"+dbPath)
	if err != nil {
		fail("sqlite", err.Error())
		return rows
	}
	defer srv.stop()
	email := "bench@example.com"
	if _, err := signup(ctx, client, srv.base, email); err != nil {
		fail("sqlite", err.Error())
		return rows
	}
	sessions, err := workerSessions(ctx, client, srv.base, email, o.workers)
	if err != nil {
		fail("sqlite", err.Error())
		return rows
	}

	if want("me") {
		base, stop, err := helloServer()
		if err != nil {
			fail("hello-world (reference)", err.Error())
		} else {
			logf("hello-world reference: %d workers, %s", o.workers, o.dur)
			hc := newClient(o.workers)
			hello := runLoad(ctx, o.workers, o.warmup, o.dur, func(int) op { return getOp(hc, base+"/") })
			stop()
			hc.CloseIdleConnections()
			rows = append(rows, row{scenario: "hello-world (net/http, reference)", res: hello, value: hello.rps()})
			logf("me: GET /auth/me, %d workers, %s", o.workers, o.dur)
			me := runLoad(ctx, o.workers, o.warmup, o.dur, func(w int) op { return meOp(client, srv.base, sessions[w].AccessToken) })
			rows = append(rows, row{scenario: "me (GET /auth/me, SQLite)", res: me, value: me.rps(),
				reference: "hello-world", refValue: hello.rps(), target: 0.50})
		}
	}
	var refreshRPS float64
	if want("refresh-sqlite") {
		logf("refresh-sqlite: %d workers, %s", o.workers, o.dur)
		res := runLoad(ctx, o.workers, o.warmup, o.dur, func(w int) op {
			return refreshOp(client, srv.base, sessions[w].RefreshToken, func(ctx context.Context) (string, error) {
				t, err := login(ctx, client, srv.base, email)
				return t.RefreshToken, err
			})
		})
		rows = append(rows, row{scenario: "refresh-sqlite", res: res, value: res.rps(),
			reference: "3000/s (absolute)", refValue: 3000, target: 1})
		refreshRPS = res.rps()
	}
	if want("oauth") {
		rows = append(rows, oauthScenarios(ctx, o, bin, dbPath, srv, client, sessions, refreshRPS)...)
	}
	if want("storage") {
		logf("storage: %d sequential rotations of one session", o.rotations)
		before, after, rotated, err := storageCheck(ctx, client, srv, dbPath, email, o.rotations)
		if err != nil {
			fail("storage", err.Error())
		} else {
			ok := rotated == o.rotations && before.sessionRows == 1 && after.sessionRows == 1 &&
				before.tableRows == after.tableRows && before.sessionBytes == after.sessionBytes
			rows = append(rows, row{scenario: fmt.Sprintf("storage (%d rotations, SQLite)", o.rotations),
				note:         fmt.Sprintf("%d/%d rotated; before: %s; after: %s", rotated, o.rotations, before, after),
				passOverride: &ok})
		}
	}
	if want("login") {
		logf("argon2id reference: %d goroutines, %s", runtime.NumCPU(), o.dur)
		hashes := argon2Rate(ctx, o.dur)
		rows = append(rows, row{scenario: fmt.Sprintf("argon2id m=19456 t=2 p=1 x%d (reference)", runtime.NumCPU()), value: hashes,
			note: "hashes/s in the harness process"})
		logf("login: %d workers, %s", o.workers, o.dur)
		res := runLoad(ctx, o.workers, o.warmup, o.dur, func(int) op { return loginOp(client, srv.base, email) })
		rows = append(rows, row{scenario: "login (argon2id, SQLite)", res: res, value: res.rps(),
			reference: "argon2id hashes/s", refValue: hashes, target: 0.85})
	}
	return rows
}

// loginRSS starts a fresh SQLite server, fires loginClients logins at
// once (each on its own connection; a 503 from the bounded hash queue is
// retried after a pause, as a client would) and samples the server's
// resident memory while they run.
func loginRSS(ctx context.Context, o *options, bin, dir string) row {
	name := fmt.Sprintf("login memory (%d at once)", o.loginClients)
	dbPath := filepath.Join(dir, "sqlite-rss", "gh.db")
	_ = os.MkdirAll(filepath.Dir(dbPath), 0o700)
	srv, err := startServer(ctx, bin, dir, "sqlite-rss", "--database", "sqlite:"+dbPath)
	if err != nil {
		return row{scenario: name, failed: err.Error()}
	}
	defer srv.stop()
	c := newClient(o.loginClients)
	defer c.CloseIdleConnections()
	email := "rss@example.com"
	if _, err := signup(ctx, c, srv.base, email); err != nil {
		return row{scenario: name, failed: err.Error()}
	}
	idle, _ := procStatus(srv.pid(), "VmRSS")
	logf("login memory: %d concurrent logins (server RSS at rest %d MB)", o.loginClients, idle>>20)

	var peak atomic.Int64
	sampleDone := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() {
		defer close(sampleDone)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := procStatus(srv.pid(), "VmRSS"); err == nil && v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()
	var ok, busy, other atomic.Int64
	hist := &hist{}
	var mu sync.Mutex
	gate := make(chan struct{})
	var wg sync.WaitGroup
	deadline := time.Now().Add(max(2*time.Minute, 10*o.dur))
	body := credentials(email)
	for range o.loginClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			start := time.Now()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				status, _, err := postJSON(ctx, c, srv.base+"/auth/login", body)
				switch {
				case err == nil && status == http.StatusOK:
					ok.Add(1)
					mu.Lock()
					hist.record(time.Since(start))
					mu.Unlock()
					return
				case err == nil && (status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests):
					busy.Add(1)
					time.Sleep(100*time.Millisecond + time.Duration(time.Now().UnixNano()%100)*time.Millisecond)
				default:
					other.Add(1)
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	t0 := time.Now()
	close(gate)
	wg.Wait()
	elapsed := time.Since(t0)
	close(stopSampling)
	<-sampleDone
	hwm, _ := procStatus(srv.pid(), "VmHWM")
	pass := hwm < 256<<20 && ok.Load() == int64(o.loginClients)
	return row{scenario: name, passOverride: &pass,
		note: fmt.Sprintf("peak RSS %d MB (VmHWM %d MB, sampled VmRSS %d MB, at rest %d MB; target < 256 MB); %d/%d logged in within %s, p50 %s p99 %s to success; %d busy answers (503, retried), %d other errors",
			hwm>>20, hwm>>20, peak.Load()>>20, idle>>20, ok.Load(), o.loginClients, elapsed.Round(10*time.Millisecond),
			fmtDur(hist.quantile(0.5)), fmtDur(hist.quantile(0.99)), busy.Load(), other.Load())}
}

func redisReachable(rawURL string) bool {
	if rawURL == "" {
		return false
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return false
	}
	conn, err := net.DialTimeout("tcp", u.Host, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 16)
	n, _ := io.ReadAtLeast(conn, buf, 5)
	return strings.HasPrefix(string(buf[:n]), "+PONG")
}

func postgresScenarios(ctx context.Context, o *options, bin, dir string, client *http.Client) []row {
	var rows []row
	fail := func(name, msg string) []row { return append(rows, row{scenario: name, failed: msg}) }
	admin, err := pgx.Connect(ctx, o.pgAdmin)
	if err != nil {
		return fail("refresh-postgres", "connect: "+err.Error())
	}
	dbIdent := pgx.Identifier{o.pgDB}.Sanitize()
	_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+dbIdent+" WITH (FORCE)")
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+dbIdent); err != nil {
		admin.Close(ctx)
		return fail("refresh-postgres", "create database: "+err.Error())
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.Exec(dctx, "DROP DATABASE IF EXISTS "+dbIdent+" WITH (FORCE)"); err != nil {
			logf("drop database %s: %v", o.pgDB, err)
		}
		admin.Close(dctx)
	}()
	u, _ := url.Parse(o.pgAdmin)
	u.Path = "/" + o.pgDB
	dbURL := u.String()

	if pgbench := findPgbench(o.pgbench); pgbench == "" {
		rows = append(rows, row{scenario: "pgbench (reference)", failed: "pgbench not found (install postgresql-contrib or pass -pgbench)"})
	} else {
		logf("pgbench reference: %d clients, %s", o.workers, o.dur)
		tps, cmdline, err := pgbenchTPS(ctx, pgbench, dbURL, dir, o.workers, o.dur)
		if err != nil {
			rows = append(rows, row{scenario: "pgbench (reference)", failed: err.Error()})
		} else {
			rows = append(rows, row{scenario: "pgbench 1-row UPDATE..RETURNING (reference)", value: tps, note: cmdline})
		}
	}

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	serverURL := dbURL
	if o.pgServerArgs != "" {
		serverURL += "&" + o.pgServerArgs
	}
	args := []string{"--database", serverURL, "--master-key", base64.StdEncoding.EncodeToString(key)}
	withRedis := redisReachable(o.redis)
	if withRedis {
		args = append(args, "--redis", o.redis)
	}
	srv, err := startServer(ctx, bin, dir, "postgres", args...)
	if err != nil {
		return fail("refresh-postgres", err.Error())
	}
	defer srv.stop()
	email := "bench@example.com"
	if _, err := signup(ctx, client, srv.base, email); err != nil {
		return fail("refresh-postgres", err.Error())
	}
	sessions, err := workerSessions(ctx, client, srv.base, email, o.workers)
	if err != nil {
		return fail("refresh-postgres", err.Error())
	}
	// GET /auth/me on the production backend, with revocation checks on.
	// It runs before the refresh load, so PostgreSQL's clean-up after
	// that write burst (autovacuum, checkpoints) does not land in it.
	logf("me-postgres: GET /auth/me, %d workers, %s", o.workers, o.dur)
	me := runLoad(ctx, o.workers, o.warmup, o.dur, func(w int) op { return meOp(client, srv.base, sessions[w].AccessToken) })
	mr := row{scenario: "me (GET /auth/me, PostgreSQL)", res: me, value: me.rps(), target: 0.50}
	if withRedis {
		mr.scenario = "me (GET /auth/me, PostgreSQL+Redis)"
	}
	rows = append(rows, mr)
	logf("refresh-postgres (redis: %v): %d workers, %s", withRedis, o.workers, o.dur)
	res := runLoad(ctx, o.workers, o.warmup, o.dur, func(w int) op {
		return refreshOp(client, srv.base, sessions[w].RefreshToken, func(ctx context.Context) (string, error) {
			t, err := login(ctx, client, srv.base, email)
			return t.RefreshToken, err
		})
	})
	r := row{scenario: "refresh-postgres", res: res, value: res.rps(), target: 0.25}
	if withRedis {
		r.scenario += " (+Redis)"
	}
	for _, p := range rows {
		if strings.HasPrefix(p.scenario, "pgbench") && p.failed == "" {
			r.reference, r.refValue = "pgbench tps", p.value
		}
	}
	return append(rows, r)
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func printTable(w io.Writer, o *options, rows []row) {
	fmt.Fprintf(w, "\n%d workers, %s per scenario (+%s warm-up), GOMAXPROCS %d, %s\n\n", o.workers, o.dur, o.warmup, runtime.GOMAXPROCS(0), time.Now().Format(time.RFC3339))
	fmt.Fprintln(w, "| scenario | requests/s | p50 | p99 | errors | reference | ratio (target) | |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---|---|---|")
	var notes []string
	for _, r := range rows {
		if r.failed != "" {
			fmt.Fprintf(w, "| %s | failed | | | | | | FAIL |\n", r.scenario)
			notes = append(notes, r.scenario+": "+r.failed)
			continue
		}
		rps, p50, p99, errs := "", "", "", ""
		if r.value != 0 {
			rps = fmt.Sprintf("%.0f", r.value)
		}
		if r.res != nil {
			p50, p99 = fmtDur(r.res.hist.quantile(0.50)), fmtDur(r.res.hist.quantile(0.99))
			errs = fmt.Sprintf("%d", r.res.errors)
		}
		ref, ratio, verdict := "", "", ""
		if r.refValue > 0 {
			ref = fmt.Sprintf("%s %.0f", r.reference, r.refValue)
			x := r.value / r.refValue
			if r.target > 0 {
				ratio = fmt.Sprintf("%.2f (≥ %.2f)", x, r.target)
				verdict = "ok"
				if x < r.target {
					verdict = "MISS"
				}
			} else {
				ratio = fmt.Sprintf("%.2f (no target)", x)
			}
		} else if r.target > 0 {
			ratio = fmt.Sprintf("no reference (≥ %.2f)", r.target)
		}
		if r.ratioText != "" {
			ref, ratio = r.refText, r.ratioText
		}
		if r.passOverride != nil {
			verdict = "ok"
			if !*r.passOverride {
				verdict = "MISS"
			}
		}
		if r.note != "" {
			notes = append(notes, r.scenario+": "+r.note)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.scenario, rps, p50, p99, errs, ref, ratio, verdict)
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, "- "+n)
		}
	}
}
