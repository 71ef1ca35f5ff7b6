package storetest

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
)

const (
	idleTTL = 14 * 24 * time.Hour
	logTTL  = 15 * time.Minute
)

func testSessionRoundTrip(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "sessions@example.com")
	now := baseTime()
	a := gatehouse.Session{
		ID:         newID(),
		UserID:     u.ID,
		Gen:        1,
		CreatedAt:  now.Add(-3 * time.Hour),
		RotatedAt:  now.Add(-2 * time.Hour),
		LastUsedAt: now.Add(-time.Hour),
		ExpiresAt:  now.Add(29 * 24 * time.Hour),
		UserAgent:  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 — “quoted” ünïcode",
		IP:         "2001:db8::1",
		Transport:  gatehouse.TransportBody,
		AMR:        []string{"hwk", "mfa", "pwd"},
	}
	mustCreateSession(t, s, a)
	checkSession(t, "SessionByID", mustSession(t, s, a.ID), a)

	// A later generation, times in another zone and with nanoseconds, and
	// empty optional strings.
	zone := time.FixedZone("UTC-7", -7*3600)
	b := gatehouse.Session{
		ID:         newID(),
		UserID:     u.ID,
		Gen:        7,
		CreatedAt:  time.Date(2025, 6, 1, 1, 2, 3, 999999999, zone),
		RotatedAt:  time.Date(2025, 6, 2, 1, 2, 3, 1001, zone),
		LastUsedAt: time.Date(2025, 6, 3, 1, 2, 3, 500, zone),
		ExpiresAt:  time.Date(2099, 12, 31, 23, 59, 59, 999999000, zone),
		Transport:  gatehouse.TransportCookie,
	}
	mustCreateSession(t, s, b)
	got := mustSession(t, s, b.ID)
	checkSession(t, "SessionByID", got, b)
	if len(got.AMR) != 0 {
		t.Errorf("SessionByID: AMR of a session created without one = %q, want none", got.AMR)
	}
	checkSession(t, "SessionByID(first, after second)", mustSession(t, s, a.ID), a)

	// An empty, non-nil AMR is no methods too.
	c := newSession(u.ID, now)
	c.AMR = []string{}
	mustCreateSession(t, s, c)
	if got := mustSession(t, s, c.ID).AMR; len(got) != 0 {
		t.Errorf("SessionByID: AMR of a session created with an empty one = %q, want none", got)
	}
}

func testSessionNotFound(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "nf@example.com")
	mustCreateSession(t, s, newSession(u.ID, baseTime()))
	_, err := s.SessionByID(t.Context(), newID())
	wantNotFound(t, "SessionByID(unknown)", err)
	_, err = s.SessionByID(t.Context(), "")
	wantNotFound(t, "SessionByID(empty)", err)
	_, err = s.SessionByID(t.Context(), u.ID)
	wantNotFound(t, "SessionByID(a user id)", err)
}

func testRotateSession(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "rotate@example.com")
	created := baseTime().Add(-time.Hour)
	sess := mustCreateSession(t, s, newSession(u.ID, created))
	other := mustCreateSession(t, s, newSession(u.ID, created))

	now := created.Add(30 * time.Minute)
	want := sess
	for gen := uint64(1); gen <= 3; gen++ {
		gotS, gotU, err := s.RotateSession(t.Context(), sess.ID, gen, now, now.Add(-idleTTL))
		if err != nil {
			t.Fatalf("RotateSession(gen %d): %v", gen, err)
		}
		want.Gen, want.RotatedAt, want.LastUsedAt = gen+1, now, now
		checkSession(t, fmt.Sprintf("RotateSession(gen %d) result", gen), gotS, want)
		checkSession(t, fmt.Sprintf("SessionByID after RotateSession(gen %d)", gen), mustSession(t, s, sess.ID), want)
		checkUser(t, fmt.Sprintf("RotateSession(gen %d) user", gen), gotU, u)
		now = now.Add(time.Minute + 123*time.Microsecond)
	}
	checkSession(t, "other session of the user", mustSession(t, s, other.ID), other)
}

func testRotateSessionWrongGen(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "wronggen@example.com")
	now := baseTime()
	sess := mustCreateSession(t, s, newSession(u.ID, now.Add(-time.Hour)))
	idle := now.Add(-idleTTL)

	for _, gen := range []uint64{0, 2, 3, math.MaxInt64, math.MaxInt64 + 2, math.MaxUint64} {
		_, _, err := s.RotateSession(t.Context(), sess.ID, gen, now, idle)
		wantNotFound(t, fmt.Sprintf("RotateSession(gen %d of a gen-1 session)", gen), err)
	}
	checkSession(t, "after wrong generations", mustSession(t, s, sess.ID), sess)

	if _, _, err := s.RotateSession(t.Context(), sess.ID, 1, now, idle); err != nil {
		t.Fatalf("RotateSession(gen 1): %v", err)
	}
	want := sess
	want.Gen, want.RotatedAt, want.LastUsedAt = 2, now, now
	// The generation just rotated away is now stale: reuse, not rotation.
	later := now.Add(time.Second)
	_, _, err := s.RotateSession(t.Context(), sess.ID, 1, later, later.Add(-idleTTL))
	wantNotFound(t, "RotateSession(gen 1 again)", err)
	checkSession(t, "after stale generation", mustSession(t, s, sess.ID), want)

	_, _, err = s.RotateSession(t.Context(), newID(), 1, now, idle)
	wantNotFound(t, "RotateSession(unknown id)", err)
}

func testRotateSessionRevoked(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "revoked@example.com")
	now := baseTime()
	sess := mustCreateSession(t, s, newSession(u.ID, now.Add(-time.Hour)))
	revokedAt := now.Add(-time.Minute)
	if err := s.RevokeSession(t.Context(), sess.ID, "test", revokedAt, now.Add(logTTL)); err != nil {
		t.Fatalf("RevokeSession: %v", err)
	}
	_, _, err := s.RotateSession(t.Context(), sess.ID, 1, now, now.Add(-idleTTL))
	wantNotFound(t, "RotateSession(revoked)", err)
	want := sess
	want.RevokedAt, want.RevokeReason = revokedAt, "test"
	checkSession(t, "revoked session after RotateSession", mustSession(t, s, sess.ID), want)
}

func testRotateSessionExpired(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "expired@example.com")
	now := baseTime()
	idle := now.Add(-idleTTL)
	mk := func(expires time.Time) gatehouse.Session {
		sess := newSession(u.ID, now.Add(-time.Hour))
		sess.ExpiresAt = expires
		return mustCreateSession(t, s, sess)
	}
	// ExpiresAt must be strictly after now.
	for _, tc := range []struct {
		name    string
		expires time.Time
	}{
		{"ExpiresAt == now", now},
		{"ExpiresAt 1µs before now", now.Add(-time.Microsecond)},
		{"ExpiresAt a day before now", now.Add(-24 * time.Hour)},
	} {
		sess := mk(tc.expires)
		_, _, err := s.RotateSession(t.Context(), sess.ID, 1, now, idle)
		wantNotFound(t, "RotateSession("+tc.name+")", err)
		checkSession(t, tc.name, mustSession(t, s, sess.ID), sess)
	}
	sess := mk(now.Add(time.Microsecond))
	if _, _, err := s.RotateSession(t.Context(), sess.ID, 1, now, idle); err != nil {
		t.Errorf("RotateSession(ExpiresAt 1µs after now): %v", err)
	}
}

func testRotateSessionIdle(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "idle@example.com")
	now := baseTime()
	idle := now.Add(-idleTTL)
	mk := func(lastUsed time.Time) gatehouse.Session {
		sess := newSession(u.ID, now.Add(-20*24*time.Hour))
		sess.LastUsedAt = lastUsed
		return mustCreateSession(t, s, sess)
	}
	// LastUsedAt must be strictly after the cutoff.
	for _, tc := range []struct {
		name     string
		lastUsed time.Time
	}{
		{"LastUsedAt == cutoff", idle},
		{"LastUsedAt 1µs before cutoff", idle.Add(-time.Microsecond)},
		{"LastUsedAt days before cutoff", idle.Add(-5 * 24 * time.Hour)},
	} {
		sess := mk(tc.lastUsed)
		_, _, err := s.RotateSession(t.Context(), sess.ID, 1, now, idle)
		wantNotFound(t, "RotateSession("+tc.name+")", err)
		checkSession(t, tc.name, mustSession(t, s, sess.ID), sess)
	}
	sess := mk(idle.Add(time.Microsecond))
	if _, _, err := s.RotateSession(t.Context(), sess.ID, 1, now, idle); err != nil {
		t.Errorf("RotateSession(LastUsedAt 1µs after cutoff): %v", err)
	}
}

func testRotateSessionUserDisabled(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "disabled@example.com")
	bystander := mustCreateUser(t, s, "bystander@example.com")
	now := baseTime()
	idle := now.Add(-idleTTL)
	sess := mustCreateSession(t, s, newSession(u.ID, now.Add(-time.Hour)))
	bs := mustCreateSession(t, s, newSession(bystander.ID, now.Add(-time.Hour)))

	yes, no := true, false
	if _, err := s.UpdateUser(t.Context(), u.ID, nil, &yes, time.Time{}); err != nil {
		t.Fatalf("UpdateUser(disable): %v", err)
	}
	_, _, err := s.RotateSession(t.Context(), sess.ID, 1, now, idle)
	wantNotFound(t, "RotateSession(user disabled)", err)
	checkSession(t, "session of disabled user", mustSession(t, s, sess.ID), sess)

	// Another user's sessions are not affected.
	if _, _, err := s.RotateSession(t.Context(), bs.ID, 1, now, idle); err != nil {
		t.Errorf("RotateSession(other user's session): %v", err)
	}

	if _, err := s.UpdateUser(t.Context(), u.ID, nil, &no, time.Time{}); err != nil {
		t.Fatalf("UpdateUser(enable): %v", err)
	}
	_, gotU, err := s.RotateSession(t.Context(), sess.ID, 1, now, idle)
	if err != nil {
		t.Fatalf("RotateSession(user enabled again): %v", err)
	}
	if gotU.Disabled {
		t.Errorf("RotateSession returned a disabled user")
	}
}

func testRotateSessionReturnsCurrentUser(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "current@example.com")
	now := baseTime()
	sess := mustCreateSession(t, s, newSession(u.ID, now.Add(-time.Hour)))
	admin := gatehouse.RoleAdmin
	tva := now.Add(-10 * time.Second).Truncate(time.Second)
	if _, err := s.UpdateUser(t.Context(), u.ID, &admin, nil, tva); err != nil {
		t.Fatalf("UpdateUser: %v", err)
	}
	if err := s.SetPasswordHash(t.Context(), u.ID, "", "$argon2id$v=19$m=19456,t=2,p=1$eA$eQ"); err != nil {
		t.Fatalf("SetPasswordHash: %v", err)
	}
	_, gotU, err := s.RotateSession(t.Context(), sess.ID, 1, now, now.Add(-idleTTL))
	if err != nil {
		t.Fatalf("RotateSession: %v", err)
	}
	checkUser(t, "RotateSession user", gotU, mustUser(t, s, u.ID))
	if gotU.Role != gatehouse.RoleAdmin {
		t.Errorf("RotateSession user role = %q, want the updated %q", gotU.Role, admin)
	}
}

// testRotateSessionConcurrent is the property refresh rotation rests on: of N
// simultaneous rotations of one generation exactly one wins, the others see
// ErrNotFound (never a backend error such as "database is locked"), and the
// generation advances by exactly one.
func testRotateSessionConcurrent(t *testing.T, s gatehouse.Store) {
	const (
		workers = 32
		rounds  = 5
	)
	u := mustCreateUser(t, s, "race@example.com")
	base := baseTime()
	sess := mustCreateSession(t, s, newSession(u.ID, base.Add(-time.Hour)))

	for round := range rounds {
		gen := uint64(round + 1)
		now := base.Add(time.Duration(round) * time.Second)
		type result struct {
			sess gatehouse.Session
			user gatehouse.User
		}
		results := make([]result, workers)
		errs := concurrently(workers, func(i int) error {
			var err error
			results[i].sess, results[i].user, err = s.RotateSession(t.Context(), sess.ID, gen, now.Add(time.Duration(i)*time.Microsecond), now.Add(-idleTTL))
			return err
		})
		winners := 0
		for i, err := range errs {
			switch {
			case err == nil:
				winners++
				if results[i].sess.Gen != gen+1 {
					t.Errorf("round %d: winner got Gen %d, want %d", round, results[i].sess.Gen, gen+1)
				}
				if results[i].user.ID != u.ID {
					t.Errorf("round %d: winner got user %q, want %q", round, results[i].user.ID, u.ID)
				}
			case !errors.Is(err, gatehouse.ErrNotFound):
				t.Errorf("round %d: RotateSession: got %v, want nil or ErrNotFound", round, err)
			}
		}
		if winners != 1 {
			t.Fatalf("round %d: %d of %d concurrent RotateSession(gen %d) succeeded, want exactly 1", round, winners, workers, gen)
		}
		if got := mustSession(t, s, sess.ID); got.Gen != gen+1 {
			t.Fatalf("round %d: Gen = %d after concurrent rotation of gen %d, want %d", round, got.Gen, gen, gen+1)
		}
	}
}

// testRotateSessionConstantStorage rotates one session many times and checks
// that it is still one session: not a chain of rows, not a growing list.
func testRotateSessionConstantStorage(t *testing.T, s gatehouse.Store) {
	const rotations = 1000
	u := mustCreateUser(t, s, "many@example.com")
	start := baseTime().Add(-time.Hour)
	sess := mustCreateSession(t, s, newSession(u.ID, start))

	now := start
	for gen := uint64(1); gen <= rotations; gen++ {
		now = now.Add(time.Millisecond)
		got, _, err := s.RotateSession(t.Context(), sess.ID, gen, now, now.Add(-idleTTL))
		if err != nil {
			t.Fatalf("RotateSession(gen %d): %v", gen, err)
		}
		if got.Gen != gen+1 || got.ID != sess.ID {
			t.Fatalf("RotateSession(gen %d) = %s gen %d, want %s gen %d", gen, got.ID, got.Gen, sess.ID, gen+1)
		}
	}
	want := sess
	want.Gen, want.RotatedAt, want.LastUsedAt = rotations+1, now, now
	checkSession(t, "after many rotations", mustSession(t, s, sess.ID), want)

	list, err := s.ListSessions(t.Context(), u.ID, now, now.Add(-idleTTL))
	if err != nil {
		t.Fatalf("ListSessions: %v", err)
	}
	if len(list) != 1 {
		t.Fatalf("ListSessions after %d rotations = %d sessions %v, want exactly 1", rotations, len(list), sessionIDs(list))
	}
	checkSession(t, "ListSessions after many rotations", list[0], want)

	// Every earlier generation is still recognised as stale.
	for _, gen := range []uint64{1, 2, rotations / 2, rotations} {
		_, _, err := s.RotateSession(t.Context(), sess.ID, gen, now, now.Add(-idleTTL))
		wantNotFound(t, fmt.Sprintf("RotateSession(stale gen %d)", gen), err)
	}

	ids, err := s.RevokeUserSessions(t.Context(), u.ID, "", "logout", now, now.Add(logTTL))
	if err != nil {
		t.Fatalf("RevokeUserSessions: %v", err)
	}
	if !slices.Equal(ids, []string{sess.ID}) {
		t.Errorf("RevokeUserSessions after %d rotations = %v, want just [%s]", rotations, ids, sess.ID)
	}
}

// testConcurrentWritersAndReaders runs rotations of many sessions alongside
// reads: a backend must not fail any of them with a transient error.
func testConcurrentWritersAndReaders(t *testing.T, s gatehouse.Store) {
	const (
		sessions  = 12
		rotations = 15
	)
	base := baseTime()
	users := make([]gatehouse.User, sessions)
	ss := make([]gatehouse.Session, sessions)
	for i := range ss {
		users[i] = mustCreateUser(t, s, fmt.Sprintf("writer%d@example.com", i))
		ss[i] = mustCreateSession(t, s, newSession(users[i].ID, base.Add(-time.Hour)))
	}
	errs := concurrently(2*sessions, func(i int) error {
		k := i % sessions
		for r := range rotations {
			now := base.Add(time.Duration(r) * time.Millisecond)
			if i < sessions {
				if _, _, err := s.RotateSession(t.Context(), ss[k].ID, uint64(r+1), now, now.Add(-idleTTL)); err != nil {
					return fmt.Errorf("RotateSession(%d, gen %d): %w", k, r+1, err)
				}
				continue
			}
			if _, err := s.SessionByID(t.Context(), ss[k].ID); err != nil {
				return fmt.Errorf("SessionByID: %w", err)
			}
			if _, err := s.ListSessions(t.Context(), users[k].ID, now, now.Add(-idleTTL)); err != nil {
				return fmt.Errorf("ListSessions: %w", err)
			}
			if _, err := s.UserByEmail(t.Context(), users[k].Email); err != nil {
				return fmt.Errorf("UserByEmail: %w", err)
			}
		}
		return nil
	})
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for i := range ss {
		if got := mustSession(t, s, ss[i].ID); got.Gen != rotations+1 {
			t.Errorf("session %d: Gen = %d, want %d", i, got.Gen, rotations+1)
		}
	}
}

func testTouchSession(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "touch@example.com")
	now := baseTime()
	sess := mustCreateSession(t, s, newSession(u.ID, now.Add(-time.Hour)))
	other := mustCreateSession(t, s, newSession(u.ID, now.Add(-time.Hour)))

	if err := s.TouchSession(t.Context(), sess.ID, now); err != nil {
		t.Fatalf("TouchSession: %v", err)
	}
	want := sess
	want.LastUsedAt = now // and nothing else: not Gen, not RotatedAt
	checkSession(t, "after TouchSession", mustSession(t, s, sess.ID), want)
	checkSession(t, "other session after TouchSession", mustSession(t, s, other.ID), other)

	err := s.TouchSession(t.Context(), newID(), now)
	wantNotFound(t, "TouchSession(unknown)", err)

	// A revoked or expired session is not live: touching it changes nothing.
	if err := s.RevokeSession(t.Context(), other.ID, "test", now, now.Add(logTTL)); err != nil {
		t.Fatalf("RevokeSession: %v", err)
	}
	later := now.Add(time.Minute)
	err = s.TouchSession(t.Context(), other.ID, later)
	wantNotFound(t, "TouchSession(revoked)", err)
	wantOther := other
	wantOther.RevokedAt, wantOther.RevokeReason = now, "test"
	checkSession(t, "revoked session after TouchSession", mustSession(t, s, other.ID), wantOther)

	exp := newSession(u.ID, now.Add(-time.Hour))
	exp.ExpiresAt = later
	mustCreateSession(t, s, exp)
	err = s.TouchSession(t.Context(), exp.ID, later)
	wantNotFound(t, "TouchSession(ExpiresAt == now)", err)
	checkSession(t, "expired session after TouchSession", mustSession(t, s, exp.ID), exp)
}

func testListSessions(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "list@example.com")
	v := mustCreateUser(t, s, "other-list@example.com")
	now := baseTime()
	idle := now.Add(-idleTTL)

	got, err := s.ListSessions(t.Context(), u.ID, now, idle)
	if err != nil {
		t.Fatalf("ListSessions(no sessions): %v", err)
	}
	if len(got) != 0 {
		t.Fatalf("ListSessions(no sessions) = %v, want none", sessionIDs(got))
	}

	// Live sessions, created (and last used) in a known order; inserted out
	// of order so that insertion order cannot pass for "newest first".
	mk := func(created time.Time, edit func(*gatehouse.Session)) gatehouse.Session {
		sess := newSession(u.ID, created)
		if edit != nil {
			edit(&sess)
		}
		return mustCreateSession(t, s, sess)
	}
	mid := mk(now.Add(-2*time.Hour), func(x *gatehouse.Session) { x.Transport = gatehouse.TransportBody })
	newest := mk(now.Add(-time.Hour), func(x *gatehouse.Session) { x.UserAgent, x.IP = "newest", "198.51.100.7" })
	oldest := mk(now.Add(-3*time.Hour), nil)

	// Sessions that are not live, one condition each.
	revoked := mk(now.Add(-30*time.Minute), nil)
	if err := s.RevokeSession(t.Context(), revoked.ID, "logout", now.Add(-time.Minute), now.Add(logTTL)); err != nil {
		t.Fatalf("RevokeSession: %v", err)
	}
	mk(now.Add(-40*time.Minute), func(x *gatehouse.Session) { x.ExpiresAt = now })
	mk(now.Add(-41*time.Minute), func(x *gatehouse.Session) { x.ExpiresAt = now.Add(-time.Hour) })
	mk(now.Add(-20*24*time.Hour), func(x *gatehouse.Session) { x.LastUsedAt = idle })
	mk(now.Add(-21*24*time.Hour), func(x *gatehouse.Session) { x.LastUsedAt = idle.Add(-time.Hour) })
	// Another user's live session.
	otherSess := newSession(v.ID, now.Add(-10*time.Minute))
	mustCreateSession(t, s, otherSess)

	got, err = s.ListSessions(t.Context(), u.ID, now, idle)
	if err != nil {
		t.Fatalf("ListSessions: %v", err)
	}
	want := []gatehouse.Session{newest, mid, oldest}
	if !slices.Equal(sessionIDs(got), sessionIDs(want)) {
		t.Fatalf("ListSessions = %v, want %v (live only, newest first)", sessionIDs(got), sessionIDs(want))
	}
	for i := range got {
		checkSession(t, "ListSessions", got[i], want[i])
	}

	got, err = s.ListSessions(t.Context(), v.ID, now, idle)
	if err != nil {
		t.Fatalf("ListSessions(other user): %v", err)
	}
	if !slices.Equal(sessionIDs(got), []string{otherSess.ID}) {
		t.Errorf("ListSessions(other user) = %v, want [%s]", sessionIDs(got), otherSess.ID)
	}

	got, err = s.ListSessions(t.Context(), newID(), now, idle)
	if err != nil {
		t.Fatalf("ListSessions(unknown user): %v", err)
	}
	if len(got) != 0 {
		t.Errorf("ListSessions(unknown user) = %v, want none", sessionIDs(got))
	}
}

func testRevokeSession(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "revoke@example.com")
	now := baseTime()
	sess := mustCreateSession(t, s, newSession(u.ID, now.Add(-time.Hour)))
	other := mustCreateSession(t, s, newSession(u.ID, now.Add(-time.Hour)))
	expiry := now.Add(logTTL)

	if err := s.RevokeSession(t.Context(), sess.ID, "logout", now, expiry); err != nil {
		t.Fatalf("RevokeSession: %v", err)
	}
	want := sess
	want.RevokedAt, want.RevokeReason = now, "logout"
	checkSession(t, "after RevokeSession", mustSession(t, s, sess.ID), want)
	checkSession(t, "other session after RevokeSession", mustSession(t, s, other.ID), other)
	wantLog := []gatehouse.Revocation{{Kind: gatehouse.RevokeSession, Subject: sess.ID, At: now, ExpiresAt: expiry}}
	checkRevocations(t, "log after RevokeSession", s, now, now, wantLog)

	// Already revoked: ErrNotFound, and neither the session nor the log changes.
	later := now.Add(time.Second)
	err := s.RevokeSession(t.Context(), sess.ID, "reuse", later, later.Add(logTTL))
	wantNotFound(t, "RevokeSession(already revoked)", err)
	checkSession(t, "after second RevokeSession", mustSession(t, s, sess.ID), want)
	checkRevocations(t, "log after second RevokeSession", s, time.Time{}, now, wantLog)

	err = s.RevokeSession(t.Context(), newID(), "logout", later, later.Add(logTTL))
	wantNotFound(t, "RevokeSession(unknown)", err)
	checkRevocations(t, "log after RevokeSession(unknown)", s, time.Time{}, now, wantLog)

	// Not revoked yet but expired: the contract names only "missing" and
	// "already revoked" as ErrNotFound, so this revokes.
	exp := newSession(u.ID, now.Add(-40*24*time.Hour))
	mustCreateSession(t, s, exp)
	if err := s.RevokeSession(t.Context(), exp.ID, "admin", later, later.Add(logTTL)); err != nil {
		t.Errorf("RevokeSession(expired, not revoked): %v", err)
	}
	if got := mustSession(t, s, exp.ID); timeDiff(got.RevokedAt, later) != "" || got.RevokeReason != "admin" {
		t.Errorf("expired session after RevokeSession: RevokedAt %v reason %q, want %v %q", got.RevokedAt, got.RevokeReason, later, "admin")
	}
}

func testRevokeSessionConcurrent(t *testing.T, s gatehouse.Store) {
	const workers = 24
	u := mustCreateUser(t, s, "revoke-race@example.com")
	now := baseTime()
	sess := mustCreateSession(t, s, newSession(u.ID, now.Add(-time.Hour)))
	errs := concurrently(workers, func(i int) error {
		return s.RevokeSession(t.Context(), sess.ID, fmt.Sprintf("reason-%d", i), now, now.Add(logTTL))
	})
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Errorf("RevokeSession succeeded twice (workers %d and %d)", winner, i)
			}
			winner = i
		case !errors.Is(err, gatehouse.ErrNotFound):
			t.Errorf("RevokeSession: got %v, want nil or ErrNotFound", err)
		}
	}
	if winner < 0 {
		t.Fatalf("no concurrent RevokeSession succeeded")
	}
	if got := mustSession(t, s, sess.ID); got.RevokeReason != fmt.Sprintf("reason-%d", winner) {
		t.Errorf("RevokeReason = %q, want the winner's %q", got.RevokeReason, fmt.Sprintf("reason-%d", winner))
	}
	checkRevocations(t, "log after concurrent RevokeSession", s, time.Time{}, now,
		[]gatehouse.Revocation{{Kind: gatehouse.RevokeSession, Subject: sess.ID, At: now, ExpiresAt: now.Add(logTTL)}})
}

func testRevokeUserSessions(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "everywhere@example.com")
	v := mustCreateUser(t, s, "untouched@example.com")
	now := baseTime()
	earlier := now.Add(-10 * time.Minute)

	keep := mustCreateSession(t, s, newSession(u.ID, now.Add(-time.Hour)))
	a := mustCreateSession(t, s, newSession(u.ID, now.Add(-2*time.Hour)))
	b := mustCreateSession(t, s, newSession(u.ID, now.Add(-3*time.Hour)))
	expired := newSession(u.ID, now.Add(-40*24*time.Hour)) // not revoked yet: included
	mustCreateSession(t, s, expired)
	already := mustCreateSession(t, s, newSession(u.ID, now.Add(-4*time.Hour)))
	if err := s.RevokeSession(t.Context(), already.ID, "earlier", earlier, earlier.Add(logTTL)); err != nil {
		t.Fatalf("RevokeSession: %v", err)
	}
	otherUser := mustCreateSession(t, s, newSession(v.ID, now.Add(-time.Hour)))

	expiry := now.Add(logTTL)
	ids, err := s.RevokeUserSessions(t.Context(), u.ID, keep.ID, "password_changed", now, expiry)
	if err != nil {
		t.Fatalf("RevokeUserSessions: %v", err)
	}
	wantIDs := []string{a.ID, b.ID, expired.ID}
	slices.Sort(ids)
	slices.Sort(wantIDs)
	if !slices.Equal(ids, wantIDs) {
		t.Errorf("RevokeUserSessions ids = %v, want %v", ids, wantIDs)
	}
	for _, sess := range []gatehouse.Session{a, b, expired} {
		want := sess
		want.RevokedAt, want.RevokeReason = now, "password_changed"
		checkSession(t, "revoked by RevokeUserSessions", mustSession(t, s, sess.ID), want)
	}
	checkSession(t, "kept session", mustSession(t, s, keep.ID), keep)
	wantAlready := already
	wantAlready.RevokedAt, wantAlready.RevokeReason = earlier, "earlier"
	checkSession(t, "session revoked earlier", mustSession(t, s, already.ID), wantAlready)
	checkSession(t, "other user's session", mustSession(t, s, otherUser.ID), otherUser)

	var wantLog []gatehouse.Revocation
	for _, id := range wantIDs {
		wantLog = append(wantLog, gatehouse.Revocation{Kind: gatehouse.RevokeSession, Subject: id, At: now, ExpiresAt: expiry})
	}
	checkRevocations(t, "log after RevokeUserSessions", s, now, now, wantLog)

	// Without keep: the remaining session goes too.
	later := now.Add(time.Second)
	ids, err = s.RevokeUserSessions(t.Context(), u.ID, "", "logout_all", later, later.Add(logTTL))
	if err != nil {
		t.Fatalf("RevokeUserSessions(no keep): %v", err)
	}
	if !slices.Equal(ids, []string{keep.ID}) {
		t.Errorf("RevokeUserSessions(no keep) = %v, want [%s]", ids, keep.ID)
	}
	checkRevocations(t, "log after RevokeUserSessions(no keep)", s, later, later,
		[]gatehouse.Revocation{{Kind: gatehouse.RevokeSession, Subject: keep.ID, At: later, ExpiresAt: later.Add(logTTL)}})

	// Nothing left to revoke, or no such user: no ids, no error, no log.
	ids, err = s.RevokeUserSessions(t.Context(), u.ID, "", "again", later.Add(time.Second), later.Add(logTTL))
	if err != nil || len(ids) != 0 {
		t.Errorf("RevokeUserSessions(nothing left) = %v, %v; want no ids, nil", ids, err)
	}
	ids, err = s.RevokeUserSessions(t.Context(), newID(), "", "nobody", later.Add(time.Second), later.Add(logTTL))
	if err != nil || len(ids) != 0 {
		t.Errorf("RevokeUserSessions(unknown user) = %v, %v; want no ids, nil", ids, err)
	}
	checkRevocations(t, "log after no-op RevokeUserSessions", s, later.Add(time.Second), later, nil)
	checkSession(t, "other user's session at the end", mustSession(t, s, otherUser.ID), otherUser)
}
