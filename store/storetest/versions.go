package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
)

// The user version ties a new session to the user row its login read: a
// change of role, enabled state or password in between makes the insert
// fail, so a login that overlapped such a change cannot outlive it.

func wantStale(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, gatehouse.ErrStale) {
		t.Errorf("%s: err = %v, want ErrStale", what, err)
	}
}

func testCreateSessionVersion(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "version@example.com")
	now := baseTime()
	v1 := mustUser(t, s, u.ID).Version

	admin := gatehouse.RoleAdmin
	if _, err := s.UpdateUser(t.Context(), u.ID, &admin, nil, time.Time{}); err != nil {
		t.Fatalf("UpdateUser: %v", err)
	}
	v2 := mustUser(t, s, u.ID).Version
	if v2 == v1 {
		t.Fatalf("UpdateUser left Version at %d", v1)
	}
	stale := newSession(u.ID, now)
	wantStale(t, "CreateSession(version before UpdateUser)", s.CreateSession(t.Context(), stale, v1))
	if _, err := s.SessionByID(t.Context(), stale.ID); !errors.Is(err, gatehouse.ErrNotFound) {
		t.Errorf("a refused CreateSession left a session behind (err %v)", err)
	}

	if err := s.SetPasswordHash(t.Context(), u.ID, "", "$argon2id$v=19$m=19456,t=2,p=1$eA$eQ"); err != nil {
		t.Fatalf("SetPasswordHash: %v", err)
	}
	v3 := mustUser(t, s, u.ID).Version
	if v3 == v2 {
		t.Fatalf("SetPasswordHash left Version at %d", v2)
	}
	wantStale(t, "CreateSession(version before SetPasswordHash)", s.CreateSession(t.Context(), newSession(u.ID, now), v2))

	fresh := newSession(u.ID, now)
	if err := s.CreateSession(t.Context(), fresh, v3); err != nil {
		t.Fatalf("CreateSession(current version): %v", err)
	}
	checkSession(t, "session created at the current version", mustSession(t, s, fresh.ID), fresh)
}

func testCreateSessionDisabledOrUnknown(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "disabled-session@example.com")
	yes := true
	got, err := s.UpdateUser(t.Context(), u.ID, nil, &yes, time.Time{})
	if err != nil {
		t.Fatalf("UpdateUser(disable): %v", err)
	}
	wantStale(t, "CreateSession(disabled user, current version)", s.CreateSession(t.Context(), newSession(u.ID, baseTime()), got.Version))
	wantStale(t, "CreateSession(unknown user)", s.CreateSession(t.Context(), newSession(newID(), baseTime()), 1))
}

// testCreateSessionRacesPasswordChange is the password-change funnel under
// concurrency: logins insert sessions against the version they read while
// a password change sets the hash (advancing the version) and then revokes
// the user's sessions. Whatever the interleaving, no session inserted
// against the old version may be left unrevoked.
func testCreateSessionRacesPasswordChange(t *testing.T, s gatehouse.Store) {
	const rounds, logins = 15, 8
	now := baseTime()
	for round := range rounds {
		u := mustCreateUser(t, s, "race-"+newID()[:8]+"@example.com")
		v := mustUser(t, s, u.ID).Version
		var wg sync.WaitGroup
		start := make(chan struct{})
		created := make([]string, logins)
		for i := range logins {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				sess := newSession(u.ID, now)
				if err := s.CreateSession(t.Context(), sess, v); err == nil {
					created[i] = sess.ID
				} else if !errors.Is(err, gatehouse.ErrStale) {
					t.Errorf("CreateSession: %v", err)
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := s.SetPasswordHash(t.Context(), u.ID, u.PasswordHash, "$argon2id$v=19$m=19456,t=2,p=1$bmV3$bmV3"); err != nil {
				t.Errorf("SetPasswordHash: %v", err)
				return
			}
			if _, err := s.RevokeUserSessions(t.Context(), u.ID, "", "password_change", now, now.Add(time.Hour)); err != nil {
				t.Errorf("RevokeUserSessions: %v", err)
			}
		}()
		close(start)
		wg.Wait()
		for _, id := range created {
			if id != "" && !mustSession(t, s, id).Revoked() {
				t.Fatalf("round %d: session %s, inserted against the old version, survived the password change", round, id)
			}
		}
	}
}

func testRehashPassword(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "rehash@example.com")
	before := mustUser(t, s, u.ID)
	const upgraded = "$argon2id$v=19$m=65536,t=3,p=1$dXA$dXA"
	if err := s.RehashPassword(t.Context(), u.ID, u.PasswordHash, upgraded); err != nil {
		t.Fatalf("RehashPassword: %v", err)
	}
	after := mustUser(t, s, u.ID)
	if after.PasswordHash != upgraded {
		t.Errorf("after RehashPassword the hash is %q, want %q", after.PasswordHash, upgraded)
	}
	if after.Version != before.Version {
		t.Errorf("RehashPassword moved Version from %d to %d; logins in flight would fail", before.Version, after.Version)
	}
	// The hash that was verified is gone: the swap must not happen.
	wantStale(t, "RehashPassword(old hash no longer stored)", s.RehashPassword(t.Context(), u.ID, u.PasswordHash, "$argon2id$v=19$m=65536,t=3,p=1$b2xk$b2xk"))
	if got := mustUser(t, s, u.ID).PasswordHash; got != upgraded {
		t.Errorf("a refused RehashPassword changed the hash to %q", got)
	}
	wantNotFound(t, "RehashPassword(unknown user)", s.RehashPassword(t.Context(), newID(), "x", "y"))
}

func testSetPasswordHashCompareAndSwap(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "cas@example.com")
	const first, second = "$argon2id$v=19$m=19456,t=2,p=1$MQ$MQ", "$argon2id$v=19$m=19456,t=2,p=1$Mg$Mg"
	if err := s.SetPasswordHash(t.Context(), u.ID, u.PasswordHash, first); err != nil {
		t.Fatalf("SetPasswordHash(matching old hash): %v", err)
	}
	wantStale(t, "SetPasswordHash(old hash no longer stored)", s.SetPasswordHash(t.Context(), u.ID, u.PasswordHash, second))
	if got := mustUser(t, s, u.ID).PasswordHash; got != first {
		t.Errorf("a refused SetPasswordHash changed the hash to %q, want %q", got, first)
	}
	wantNotFound(t, "SetPasswordHash(unknown user, old hash)", s.SetPasswordHash(t.Context(), newID(), "x", second))
}

func testDeleteEndedSessions(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "retention@example.com")
	now := baseTime()
	retention := 30 * 24 * time.Hour
	endedBefore, idleBefore := now.Add(-retention), now.Add(-retention-idleTTL)

	live := mustCreateSession(t, s, newSession(u.ID, now.Add(-time.Hour)))
	recentlyRevoked := mustCreateSession(t, s, newSession(u.ID, now.Add(-time.Hour)))
	if err := s.RevokeSession(t.Context(), recentlyRevoked.ID, "logout", now.Add(-time.Hour), now); err != nil {
		t.Fatalf("RevokeSession: %v", err)
	}
	longRevoked := mustCreateSession(t, s, newSession(u.ID, now.Add(-40*24*time.Hour)))
	if err := s.RevokeSession(t.Context(), longRevoked.ID, "logout", now.Add(-35*24*time.Hour), now); err != nil {
		t.Fatalf("RevokeSession: %v", err)
	}
	longExpired := newSession(u.ID, now.Add(-100*24*time.Hour))
	longExpired.ExpiresAt = now.Add(-31 * 24 * time.Hour)
	mustCreateSession(t, s, longExpired)
	longIdle := newSession(u.ID, now.Add(-60*24*time.Hour))
	longIdle.ExpiresAt = now.Add(24 * time.Hour)
	longIdle.LastUsedAt = now.Add(-50 * 24 * time.Hour)
	mustCreateSession(t, s, longIdle)

	// A batch of one, then the rest: batches are bounded.
	n, err := s.DeleteEndedSessions(t.Context(), endedBefore, idleBefore, 1)
	if err != nil || n != 1 {
		t.Fatalf("DeleteEndedSessions(limit 1) = %d, %v; want 1, nil", n, err)
	}
	n, err = s.DeleteEndedSessions(t.Context(), endedBefore, idleBefore, 100)
	if err != nil || n != 2 {
		t.Fatalf("DeleteEndedSessions(limit 100) = %d, %v; want the remaining 2", n, err)
	}
	for _, id := range []string{longRevoked.ID, longExpired.ID, longIdle.ID} {
		if _, err := s.SessionByID(t.Context(), id); !errors.Is(err, gatehouse.ErrNotFound) {
			t.Errorf("session %s, ended before the retention cutoff, is still there (err %v)", id, err)
		}
	}
	for _, id := range []string{live.ID, recentlyRevoked.ID} {
		if _, err := s.SessionByID(t.Context(), id); err != nil {
			t.Errorf("session %s, live or recently ended, was deleted: %v", id, err)
		}
	}
	if n, err := s.DeleteEndedSessions(t.Context(), endedBefore, idleBefore, 100); err != nil || n != 0 {
		t.Errorf("DeleteEndedSessions with nothing to delete = %d, %v", n, err)
	}
}
