package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/store/storetest"
)

// unreachableURL points at a port nothing listens on.
const unreachableURL = "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2"

// testURL returns the test database URL. Without one the test is skipped
// locally but fails in CI, so a green CI run means Postgres was exercised.
func testURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("GATEHOUSE_TEST_POSTGRES_URL")
	if u == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatal("GATEHOUSE_TEST_POSTGRES_URL is not set; it is required when CI=true")
		}
		tb.Skip("GATEHOUSE_TEST_POSTGRES_URL is not set")
	}
	return u
}

// withSearchPath returns base with search_path set, for both URL and
// key=value connection strings. pgx passes unknown parameters to the server
// as run-time parameters, so every pooled connection starts in that schema.
func withSearchPath(tb testing.TB, base, schema string) string {
	tb.Helper()
	if strings.HasPrefix(base, "postgres://") || strings.HasPrefix(base, "postgresql://") {
		u, err := url.Parse(base)
		if err != nil {
			tb.Fatalf("parse GATEHOUSE_TEST_POSTGRES_URL: %v", err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return base + " search_path=" + schema
}

// freshSchema creates an empty schema, drops it at cleanup, and returns a
// connection string whose search_path is that schema. Tests are isolated
// from each other and from whatever else lives in the database.
func freshSchema(tb testing.TB) string {
	tb.Helper()
	base := testURL(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		// The URL was given explicitly (and CI requires it): an unreachable
		// server is a failure, not a reason to skip.
		tb.Fatalf("connect to GATEHOUSE_TEST_POSTGRES_URL: %v", err)
	}
	defer conn.Close(ctx)

	b := make([]byte, 8)
	_, _ = rand.Read(b)
	schema := "gh_test_" + hex.EncodeToString(b) // hex: a safe bare identifier
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return withSearchPath(tb, base, schema)
}

// openTestStore opens a migrated Store on a fresh schema. Its Close is
// registered after the schema's drop, so it runs first.
func openTestStore(tb testing.TB, opts Options) *Store {
	tb.Helper()
	u := freshSchema(tb)
	ctx := context.Background()
	s, err := Open(ctx, u, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(ctx); err != nil {
		tb.Fatalf("Migrate: %v", err)
	}
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) gatehouse.Store {
		return openTestStore(t, Options{})
	})
}

// appliedMigrations returns schema_migrations as version -> row count, plus
// the applied_at of each, to show that a second run wrote nothing.
func appliedMigrations(t *testing.T, s *Store) (map[int64]int, map[int64]time.Time) {
	t.Helper()
	rows, err := s.pool.Query(t.Context(), `SELECT version, applied_at FROM schema_migrations`)
	if err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	count := map[int64]int{}
	at := map[int64]time.Time{}
	var (
		v int64
		a time.Time
	)
	if _, err := pgx.ForEachRow(rows, []any{&v, &a}, func() error {
		count[v]++
		at[v] = a
		return nil
	}); err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	return count, at
}

func checkOneRowPerMigration(t *testing.T, count map[int64]int) {
	t.Helper()
	ms, err := migrations()
	if err != nil {
		t.Fatalf("migrations: %v", err)
	}
	if len(count) != len(ms) {
		t.Errorf("schema_migrations has %d versions, want %d", len(count), len(ms))
	}
	for _, m := range ms {
		if count[m.version] != 1 {
			t.Errorf("schema_migrations has %d rows for %s, want 1", count[m.version], m.name)
		}
	}
}

func TestMigrations(t *testing.T) {
	ms, err := migrations()
	if err != nil {
		t.Fatalf("migrations: %v", err)
	}
	if len(ms) == 0 || ms[0].version != 1 {
		t.Fatalf("migrations = %v, want a first migration with version 1", ms)
	}
}

func TestMigrateTwiceIsNoop(t *testing.T) {
	s := openTestStore(t, Options{})
	count, before := appliedMigrations(t, s)
	checkOneRowPerMigration(t, count)

	if err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	count, after := appliedMigrations(t, s)
	checkOneRowPerMigration(t, count)
	for v, at := range before {
		if !after[v].Equal(at) {
			t.Errorf("version %d re-applied: applied_at %v, then %v", v, at, after[v])
		}
	}
}

// TestMigrateConcurrent starts five "instances" (separate pools) on one
// fresh schema at once: the advisory lock must make them take turns.
func TestMigrateConcurrent(t *testing.T) {
	const instances = 5
	u := freshSchema(t)
	stores := make([]*Store, instances)
	for i := range stores {
		s, err := Open(t.Context(), u, Options{MaxConns: 2})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		stores[i] = s
	}
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, instances)
	)
	for i, s := range stores {
		wg.Go(func() {
			<-start
			errs[i] = s.Migrate(t.Context())
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("instance %d: Migrate: %v", i, err)
		}
	}
	count, _ := appliedMigrations(t, stores[0])
	checkOneRowPerMigration(t, count)
}

// TestSchemaHoldsNoTokens guards the design rule that refresh tokens are
// recomputed, never stored.
func TestSchemaHoldsNoTokens(t *testing.T) {
	s := openTestStore(t, Options{})
	var n int
	err := s.pool.QueryRow(t.Context(), `SELECT count(*) FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'sessions'
			AND (column_name LIKE '%token%' OR column_name LIKE '%hash%' OR column_name LIKE '%secret%')`).Scan(&n)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	if n != 0 {
		t.Errorf("sessions has %d token-like columns, want none", n)
	}
}

func TestOpenUnreachable(t *testing.T) {
	s, err := Open(t.Context(), unreachableURL, Options{})
	if err == nil {
		s.Close()
		t.Fatal("Open(127.0.0.1:1) succeeded")
	}
	if !errors.Is(err, gatehouse.ErrUnavailable) {
		t.Errorf("Open(127.0.0.1:1) = %v, want it to wrap ErrUnavailable", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "postgres: connect") || !strings.Contains(msg, "127.0.0.1") {
		t.Errorf("Open(127.0.0.1:1) error %q does not say what failed", msg)
	}
}

func TestOpenBadConfig(t *testing.T) {
	for _, tc := range []struct {
		url  string
		opts Options
	}{
		{"postgres://postgres@127.0.0.1:1/test?default_query_exec_mode=simple_protocol", Options{}},
		{"postgres://postgres@127.0.0.1:1/test?pool_max_conns=notanumber", Options{}},
		{"postgres://postgres@127.0.0.1:1/test", Options{MaxConns: -1}},
	} {
		if _, err := Open(t.Context(), tc.url, tc.opts); err == nil {
			t.Errorf("Open(%q, %+v) succeeded, want a configuration error", tc.url, tc.opts)
		} else if errors.Is(err, gatehouse.ErrUnavailable) {
			t.Errorf("Open(%q, %+v) = %v: a configuration error is not ErrUnavailable", tc.url, tc.opts, err)
		}
	}
}

// TestQueryUnreachable covers the request path of a store whose server went
// away after start: every method must answer ErrUnavailable (503), except
// when the caller itself gave up.
func TestQueryUnreachable(t *testing.T) {
	cfg, err := config(unreachableURL, Options{})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	s, err := newStore(t.Context(), cfg) // no ping: the pool connects lazily
	if err != nil {
		t.Fatalf("newStore: %v", err)
	}
	defer s.Close()
	ctx := t.Context()
	now := time.Now()
	calls := map[string]func(ctx context.Context) error{
		"Ping":     s.Ping,
		"UserByID": func(ctx context.Context) error { _, err := s.UserByID(ctx, "x"); return err },
		"RotateSession": func(ctx context.Context) error {
			_, _, err := s.RotateSession(ctx, "x", 1, now, now.Add(-time.Hour))
			return err
		},
		"RevokeSession": func(ctx context.Context) error { return s.RevokeSession(ctx, "x", "r", now, now) },
		"ListSessions":  func(ctx context.Context) error { _, err := s.ListSessions(ctx, "x", now, now); return err },
		"Migrate":       s.Migrate,
	}
	for name, call := range calls {
		if err := call(ctx); !errors.Is(err, gatehouse.ErrUnavailable) {
			t.Errorf("%s on an unreachable server = %v, want ErrUnavailable", name, err)
		}
	}

	expired, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	if err := calls["UserByID"](expired); !errors.Is(err, gatehouse.ErrUnavailable) {
		t.Errorf("UserByID with a passed deadline = %v, want ErrUnavailable", err)
	}
	canceled, cancel2 := context.WithCancel(ctx)
	cancel2()
	if err := calls["UserByID"](canceled); errors.Is(err, gatehouse.ErrUnavailable) || err == nil {
		t.Errorf("UserByID with a canceled context = %v, want an error that is not ErrUnavailable", err)
	}
}

// TestConnectionKilled ends the store's server session behind its back, as a
// database restart or failover does: the next query must report
// ErrUnavailable, and the one after must work again on a new connection.
func TestConnectionKilled(t *testing.T) {
	u := freshSchema(t)
	cfg, err := config(u, Options{MaxConns: 1})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	// No liveness ping on acquire, so the query meets the dead connection
	// instead of the pool quietly replacing it first.
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	s, err := newStore(t.Context(), cfg)
	if err != nil {
		t.Fatalf("newStore: %v", err)
	}
	defer s.Close()
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	var pid int32
	if err := s.pool.QueryRow(t.Context(), `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatalf("backend pid: %v", err)
	}

	admin, err := pgx.Connect(t.Context(), testURL(t))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer admin.Close(context.Background())
	var ok bool
	if err := admin.QueryRow(t.Context(), `SELECT pg_terminate_backend($1, 5000)`, pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend: %v %v", ok, err)
	}

	_, err = s.UserByID(t.Context(), "x")
	if !errors.Is(err, gatehouse.ErrUnavailable) {
		t.Errorf("UserByID on a killed connection = %v, want ErrUnavailable", err)
	}
	_, err = s.UserByID(t.Context(), "x")
	if !errors.Is(err, gatehouse.ErrNotFound) {
		t.Errorf("UserByID after reconnect = %v, want ErrNotFound", err)
	}
}

// TestRotateIsPrepared checks that the hot path runs as a server-side
// prepared statement (pgx's statement cache), not over the simple protocol.
func TestRotateIsPrepared(t *testing.T) {
	s := openTestStore(t, Options{MaxConns: 1}) // one connection: the check sees the rotation's session
	now := time.Now().UTC()
	u := gatehouse.User{ID: "u1", Email: "p@example.com", Role: gatehouse.RoleUser, PasswordHash: "x", CreatedAt: now}
	if err := s.CreateUser(t.Context(), u); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	sess := gatehouse.Session{ID: "s1", UserID: u.ID, Gen: 1, CreatedAt: now, RotatedAt: now, LastUsedAt: now,
		ExpiresAt: now.Add(time.Hour), Transport: gatehouse.TransportCookie}
	if err := s.CreateSession(t.Context(), sess, 1); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	for gen := uint64(1); gen <= 2; gen++ {
		if _, _, err := s.RotateSession(t.Context(), sess.ID, gen, now, now.Add(-time.Hour)); err != nil {
			t.Fatalf("RotateSession: %v", err)
		}
	}
	var n int
	if err := s.pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_prepared_statements
		WHERE statement LIKE 'UPDATE sessions s%' AND NOT from_sql`).Scan(&n); err != nil {
		t.Fatalf("query pg_prepared_statements: %v", err)
	}
	if n != 1 {
		t.Errorf("found %d prepared RotateSession statements on the connection, want 1", n)
	}
}

// BenchmarkRotateSession measures the refresh hot path against a real
// server: every goroutine rotates its own session, so this is throughput of
// the single-statement UPDATE (one round trip and one commit each), not lock
// contention.
func BenchmarkRotateSession(b *testing.B) {
	procs := runtime.GOMAXPROCS(0)
	s := openTestStore(b, Options{MaxConns: int32(4 * procs)})
	ctx := context.Background()
	now := time.Now().UTC()
	u := gatehouse.User{ID: "bench-user", Email: "bench@example.com", Role: gatehouse.RoleUser, PasswordHash: "x", CreatedAt: now}
	if err := s.CreateUser(ctx, u); err != nil {
		b.Fatalf("CreateUser: %v", err)
	}
	var seq atomic.Int64
	// Each rotation mostly waits on the network and a WAL flush, so run
	// more goroutines than CPUs: one per pooled connection.
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		id := fmt.Sprintf("bench-session-%d", seq.Add(1))
		created := time.Now()
		err := s.CreateSession(ctx, gatehouse.Session{
			ID: id, UserID: u.ID, Gen: 1, CreatedAt: created, RotatedAt: created, LastUsedAt: created,
			ExpiresAt: created.Add(30 * 24 * time.Hour), Transport: gatehouse.TransportBody,
		}, 1)
		if err != nil {
			b.Errorf("CreateSession: %v", err)
			return
		}
		for gen := uint64(1); pb.Next(); gen++ {
			t := time.Now()
			if _, _, err := s.RotateSession(ctx, id, gen, t, t.Add(-14*24*time.Hour)); err != nil {
				b.Errorf("RotateSession(gen %d): %v", gen, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rotations/s")
}

// TestDeleteUserCascadesMFA: deleting a user (there is no Store method for
// it; an operator does it in SQL) takes the second factors with it, and the
// other users' stay.
func TestDeleteUserCascadesMFA(t *testing.T) {
	s := openTestStore(t, Options{})
	ctx := t.Context()
	now := time.Now().UTC().Truncate(time.Microsecond)
	var ids []string
	for _, email := range []string{"gone@example.com", "kept@example.com"} {
		u := gatehouse.User{ID: newTestID(), Email: email, Role: gatehouse.RoleUser, PasswordHash: "x", CreatedAt: now}
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatalf("CreateUser: %v", err)
		}
		if err := s.PutPendingTOTP(ctx, gatehouse.TOTPFactor{UserID: u.ID, Sealed: []byte("sealed"), CreatedAt: now}); err != nil {
			t.Fatalf("PutPendingTOTP: %v", err)
		}
		if err := s.ConfirmTOTP(ctx, u.ID, 1, now, [][]byte{[]byte("code one"), []byte("code two")}); err != nil {
			t.Fatalf("ConfirmTOTP: %v", err)
		}
		ids = append(ids, u.ID)
	}
	gone, kept := ids[0], ids[1]
	if _, err := s.pool.Exec(ctx, `DELETE FROM users WHERE id = $1`, gone); err != nil {
		t.Fatalf("delete user: %v", err)
	}
	for table, want := range map[string]int64{"mfa_totp": 1, "recovery_codes": 2} {
		var n int64
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM `+table+` WHERE user_id = $1`, gone).Scan(&n); err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
		if n != 0 {
			t.Errorf("%s keeps %d rows of the deleted user", table, n)
		}
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM `+table+` WHERE user_id = $1`, kept).Scan(&n); err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
		if n != want {
			t.Errorf("%s has %d rows of the other user, want %d", table, n, want)
		}
	}
	if _, err := s.TOTP(ctx, gone); !errors.Is(err, gatehouse.ErrNotFound) {
		t.Errorf("TOTP(deleted user): %v, want ErrNotFound", err)
	}
}

func newTestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TestDeleteUserCascadesPasskeys: deleting a user in SQL takes their
// passkeys with it (their credential ids find nothing) and leaves the other users'
// passkeys.
func TestDeleteUserCascadesPasskeys(t *testing.T) {
	s := openTestStore(t, Options{})
	ctx := t.Context()
	now := time.Now().UTC().Truncate(time.Microsecond)
	var ids []string
	credIDs := map[string][]byte{}
	for _, email := range []string{"gone@example.com", "kept@example.com"} {
		u := gatehouse.User{ID: newTestID(), Email: email, Role: gatehouse.RoleUser, PasswordHash: "x", CreatedAt: now}
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatalf("CreateUser: %v", err)
		}
		for i := range 2 {
			p := gatehouse.Passkey{ID: newTestID(), UserID: u.ID, CredentialID: []byte(newTestID()), Credential: []byte(`{}`),
				Name: "key", CreatedAt: now.Add(time.Duration(i) * time.Second)}
			if err := s.CreatePasskey(ctx, p); err != nil {
				t.Fatalf("CreatePasskey: %v", err)
			}
			credIDs[u.ID] = p.CredentialID
		}
		ids = append(ids, u.ID)
	}
	gone, kept := ids[0], ids[1]
	if _, err := s.pool.Exec(ctx, `DELETE FROM users WHERE id = $1`, gone); err != nil {
		t.Fatalf("delete user: %v", err)
	}
	for id, want := range map[string]int64{gone: 0, kept: 2} {
		var n int64
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM passkeys WHERE user_id = $1`, id).Scan(&n); err != nil {
			t.Fatalf("count passkeys: %v", err)
		}
		if n != want {
			t.Errorf("passkeys holds %d rows of user %s, want %d", n, id, want)
		}
	}
	if _, err := s.PasskeyByCredentialID(ctx, credIDs[gone]); !errors.Is(err, gatehouse.ErrNotFound) {
		t.Errorf("PasskeyByCredentialID(deleted user's key): %v, want ErrNotFound", err)
	}
	if _, err := s.PasskeyByCredentialID(ctx, credIDs[kept]); err != nil {
		t.Errorf("PasskeyByCredentialID(kept user's key): %v", err)
	}
	if n, err := s.CountPasskeys(ctx, gone); err != nil || n != 0 {
		t.Errorf("CountPasskeys(deleted user) = %d, %v; want 0, nil", n, err)
	}
}
