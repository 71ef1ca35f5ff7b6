package sqlite_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/store/sqlite"
	"github.com/gatehouse/gatehouse/store/storetest"
)

func openFile(t testing.TB) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "gatehouse.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestStoreFile(t *testing.T) {
	storetest.Run(t, func(t *testing.T) gatehouse.Store { return openFile(t) })
}

func TestStoreMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) gatehouse.Store {
		s, err := sqlite.Open(t.Context(), sqlite.Memory)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func mustOpen(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// seed creates a user with one fresh session and returns the session.
func seed(t testing.TB, s gatehouse.Store, now time.Time) gatehouse.Session {
	t.Helper()
	u := gatehouse.User{ID: newID(), Email: newID() + "@example.com", Role: gatehouse.RoleUser, PasswordHash: "x", CreatedAt: now}
	if err := s.CreateUser(t.Context(), u); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	sess := gatehouse.Session{ID: newID(), UserID: u.ID, Gen: 1, CreatedAt: now, RotatedAt: now, LastUsedAt: now,
		ExpiresAt: now.Add(30 * 24 * time.Hour), Transport: gatehouse.TransportCookie}
	if err := s.CreateSession(t.Context(), sess, 1); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return sess
}

// TestConcurrentOpen opens one new file from several goroutines at once, as
// a server and a CLI started together would: each must migrate or see the
// migration done, never fail.
func TestConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gatehouse.db")
	const n = 8
	stores := make([]*sqlite.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = sqlite.Open(t.Context(), path) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("Open %d: %v", i, errs[i])
			continue
		}
		t.Cleanup(func() { stores[i].Close() })
	}
}

// TestSharedFile runs rotations of one session through several Stores on the
// same file, which is what several processes sharing it look like to SQLite:
// exactly one rotation per generation wins, and no caller sees a lock error.
func TestSharedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gatehouse.db")
	const stores, perStore, rounds = 3, 10, 5
	ss := make([]*sqlite.Store, stores)
	for i := range ss {
		ss[i] = mustOpen(t, path)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	sess := seed(t, ss[0], now)
	for round := range rounds {
		gen := uint64(round + 1)
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			wins int
		)
		start := make(chan struct{})
		for i := range stores * perStore {
			wg.Go(func() {
				<-start
				_, _, err := ss[i%stores].RotateSession(t.Context(), sess.ID, gen, now, now.Add(-time.Hour))
				switch {
				case err == nil:
					mu.Lock()
					wins++
					mu.Unlock()
				case !errors.Is(err, gatehouse.ErrNotFound):
					t.Errorf("RotateSession: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
		if wins != 1 {
			t.Fatalf("round %d: %d rotations of gen %d succeeded across %d stores, want 1", round, wins, gen, stores)
		}
		for i, s := range ss {
			got, err := s.SessionByID(t.Context(), sess.ID)
			if err != nil || got.Gen != gen+1 {
				t.Fatalf("round %d: store %d sees gen %d (%v), want %d", round, i, got.Gen, err, gen+1)
			}
		}
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gatehouse.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	sess := seed(t, s, now)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = mustOpen(t, path)
	got, err := s.SessionByID(t.Context(), sess.ID)
	if err != nil {
		t.Fatalf("SessionByID after reopen: %v", err)
	}
	if got.Gen != 1 || !got.ExpiresAt.Equal(sess.ExpiresAt) {
		t.Errorf("after reopen: gen %d expires %v, want 1 %v", got.Gen, got.ExpiresAt, sess.ExpiresAt)
	}
}

// TestRefusesNewerSchema: a binary must not run on a schema migrated by a
// newer one.
func TestRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gatehouse.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, '9999_future.sql', 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := sqlite.Open(t.Context(), path); err == nil {
		s.Close()
		t.Fatalf("Open of a database at schema version 9999 succeeded")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open: %v, want a schema version error", err)
	}
}

// TestPathWithURICharacters: the path is a file name, not a URI.
func TestPathWithURICharacters(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "we?ird#na%20me.db")
	s := mustOpen(t, path)
	seed(t, s, time.Now().UTC())
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at the given path: %v", err)
	}
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
}

func TestEmptyPath(t *testing.T) {
	if s, err := sqlite.Open(t.Context(), ""); err == nil {
		s.Close()
		t.Fatal("Open(\"\") succeeded")
	}
}

// BenchmarkRotateSession measures one refresh rotation on a real file: the
// conditional UPDATE, the user read and a durable commit.
func BenchmarkRotateSession(b *testing.B) {
	s := mustOpen(b, filepath.Join(b.TempDir(), "bench.db"))
	now := time.Now().UTC().Truncate(time.Microsecond)
	sess := seed(b, s, now)
	gen := uint64(1)
	for b.Loop() {
		now = now.Add(time.Microsecond)
		if _, _, err := s.RotateSession(b.Context(), sess.ID, gen, now, now.Add(-time.Hour)); err != nil {
			b.Fatalf("RotateSession(gen %d): %v", gen, err)
		}
		gen++
	}
}

// BenchmarkRotateSessionParallel rotates many sessions at once: the single
// writer connection serialises them, so this shows the write ceiling.
func BenchmarkRotateSessionParallel(b *testing.B) {
	s := mustOpen(b, filepath.Join(b.TempDir(), "bench.db"))
	start := time.Now().UTC().Truncate(time.Microsecond)
	// One session per goroutine, created here: seed may call b.Fatal, which
	// RunParallel's goroutines must not.
	sessions := make([]gatehouse.Session, runtime.GOMAXPROCS(0))
	for i := range sessions {
		sessions[i] = seed(b, s, start)
	}
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		sess := sessions[next.Add(1)-1]
		now := start
		for gen := uint64(1); pb.Next(); gen++ {
			now = now.Add(time.Microsecond)
			if _, _, err := s.RotateSession(context.Background(), sess.ID, gen, now, now.Add(-time.Hour)); err != nil {
				b.Errorf("RotateSession(gen %d): %v", gen, err)
				return
			}
		}
	})
}

// BenchmarkSessionByID measures the read path (the read pool, in parallel).
func BenchmarkSessionByID(b *testing.B) {
	s := mustOpen(b, filepath.Join(b.TempDir(), "bench.db"))
	sess := seed(b, s, time.Now().UTC().Truncate(time.Microsecond))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.SessionByID(context.Background(), sess.ID); err != nil {
				b.Errorf("SessionByID: %v", err)
				return
			}
		}
	})
}

// TestDeleteUserCascadesMFA: deleting a user (there is no Store method for
// it; an operator does it in SQL) takes the second factors with it, and the
// other users' stay.
func TestDeleteUserCascadesMFA(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gatehouse.db")
	s := mustOpen(t, path)
	now := time.Now().UTC().Truncate(time.Microsecond)
	gone, kept := seed(t, s, now).UserID, seed(t, s, now).UserID
	for _, id := range []string{gone, kept} {
		if err := s.PutPendingTOTP(t.Context(), gatehouse.TOTPFactor{UserID: id, Sealed: []byte("sealed"), CreatedAt: now}); err != nil {
			t.Fatalf("PutPendingTOTP: %v", err)
		}
		if err := s.ConfirmTOTP(t.Context(), id, 1, now, [][]byte{[]byte("code one"), []byte("code two")}); err != nil {
			t.Fatalf("ConfirmTOTP: %v", err)
		}
	}
	// foreign_keys is a per-connection setting, off by default.
	db, err := sql.Open("sqlite", path+"?_pragma=foreign_keys(1)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`DELETE FROM users WHERE id = ?`, gone); err != nil {
		t.Fatalf("delete user: %v", err)
	}
	for table, want := range map[string]int{"mfa_totp": 1, "recovery_codes": 2} {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM `+table+` WHERE user_id = ?`, gone).Scan(&n); err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
		if n != 0 {
			t.Errorf("%s keeps %d rows of the deleted user", table, n)
		}
		if err := db.QueryRow(`SELECT count(*) FROM `+table+` WHERE user_id = ?`, kept).Scan(&n); err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
		if n != want {
			t.Errorf("%s has %d rows of the other user, want %d", table, n, want)
		}
	}
	if _, err := s.TOTP(t.Context(), gone); !errors.Is(err, gatehouse.ErrNotFound) {
		t.Errorf("TOTP(deleted user): %v, want ErrNotFound", err)
	}
}

// TestDeleteUserCascadesPasskeys: deleting a user in SQL takes their
// passkeys with it (their credential ids find nothing) and leaves the other users'
// passkeys.
func TestDeleteUserCascadesPasskeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gatehouse.db")
	s := mustOpen(t, path)
	now := time.Now().UTC().Truncate(time.Microsecond)
	gone, kept := seed(t, s, now).UserID, seed(t, s, now).UserID
	credIDs := map[string][]byte{}
	for _, id := range []string{gone, kept} {
		for i := range 2 {
			p := gatehouse.Passkey{ID: newID(), UserID: id, CredentialID: []byte(newID()), Credential: []byte(`{}`),
				Name: "key", CreatedAt: now.Add(time.Duration(i) * time.Second)}
			if err := s.CreatePasskey(t.Context(), p); err != nil {
				t.Fatalf("CreatePasskey: %v", err)
			}
			credIDs[id] = p.CredentialID
		}
	}
	// foreign_keys is a per-connection setting, off by default.
	db, err := sql.Open("sqlite", path+"?_pragma=foreign_keys(1)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`DELETE FROM users WHERE id = ?`, gone); err != nil {
		t.Fatalf("delete user: %v", err)
	}
	for id, want := range map[string]int{gone: 0, kept: 2} {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM passkeys WHERE user_id = ?`, id).Scan(&n); err != nil {
			t.Fatalf("count passkeys: %v", err)
		}
		if n != want {
			t.Errorf("passkeys holds %d rows of user %s, want %d", n, id, want)
		}
	}
	if _, err := s.PasskeyByCredentialID(t.Context(), credIDs[gone]); !errors.Is(err, gatehouse.ErrNotFound) {
		t.Errorf("PasskeyByCredentialID(deleted user's key): %v, want ErrNotFound", err)
	}
	if _, err := s.PasskeyByCredentialID(t.Context(), credIDs[kept]); err != nil {
		t.Errorf("PasskeyByCredentialID(kept user's key): %v", err)
	}
	if n, err := s.CountPasskeys(t.Context(), gone); err != nil || n != 0 {
		t.Errorf("CountPasskeys(deleted user) = %d, %v; want 0, nil", n, err)
	}
}
