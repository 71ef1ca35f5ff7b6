package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
)

// testNewFieldsThroughRotation checks that a rotation, which returns the
// session and its user from one statement or batch of its own, carries the
// session's AMR and the user's EmailVerified like every other read.
func testNewFieldsThroughRotation(t *testing.T, s gatehouse.Store) {
	u := newUser("rotate-fields@example.com")
	u.EmailVerified = true
	if err := s.CreateUser(t.Context(), u); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	now := baseTime()
	sess := newSession(u.ID, now.Add(-time.Minute))
	sess.AMR = []string{"email", "mfa", "otp"}
	mustCreateSession(t, s, sess)

	gotS, gotU, err := s.RotateSession(t.Context(), sess.ID, 1, now, now.Add(-idleTTL))
	if err != nil {
		t.Fatalf("RotateSession: %v", err)
	}
	if !slices.Equal(gotS.AMR, sess.AMR) {
		t.Errorf("RotateSession: AMR = %q, want %q", gotS.AMR, sess.AMR)
	}
	if !gotU.EmailVerified {
		t.Errorf("RotateSession: user EmailVerified = false, want true")
	}
	if got := mustSession(t, s, sess.ID).AMR; !slices.Equal(got, sess.AMR) {
		t.Errorf("SessionByID after RotateSession: AMR = %q, want %q", got, sess.AMR)
	}
	live, err := s.ListSessions(t.Context(), u.ID, now, now.Add(-idleTTL))
	if err != nil {
		t.Fatalf("ListSessions: %v", err)
	}
	if len(live) != 1 || !slices.Equal(live[0].AMR, sess.AMR) {
		t.Errorf("ListSessions = %+v, want the one session with AMR %q", live, sess.AMR)
	}
	users, err := s.ListUsers(t.Context(), "", 10)
	if err != nil {
		t.Fatalf("ListUsers: %v", err)
	}
	if len(users) != 1 || !users[0].EmailVerified {
		t.Errorf("ListUsers = %+v, want the one verified user", users)
	}
}

func testSetEmailVerified(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "Verify.Me@Example.com")
	before := mustUser(t, s, u.ID)
	if before.EmailVerified {
		t.Fatalf("a new user's email is verified")
	}

	// The same address in another case is the same address.
	got, err := s.SetEmailVerified(t.Context(), u.ID, "verify.me@EXAMPLE.COM")
	if err != nil {
		t.Fatalf("SetEmailVerified: %v", err)
	}
	want := u
	want.EmailVerified = true
	checkUser(t, "SetEmailVerified result", got, want)
	checkUser(t, "UserByID after SetEmailVerified", mustUser(t, s, u.ID), want)
	if got.Version != before.Version || mustUser(t, s, u.ID).Version != before.Version {
		t.Errorf("SetEmailVerified moved Version from %d to %d", before.Version, got.Version)
	}
	// Again: nothing to change, still fine.
	if _, err := s.SetEmailVerified(t.Context(), u.ID, u.Email); err != nil {
		t.Errorf("SetEmailVerified(already verified): %v", err)
	}

	// A link sent to an address the user no longer has verifies nothing.
	v := mustCreateUser(t, s, "current@example.com")
	_, err = s.SetEmailVerified(t.Context(), v.ID, "previous@example.com")
	wantStale(t, "SetEmailVerified(another address)", err)
	checkUser(t, "UserByID after a stale SetEmailVerified", mustUser(t, s, v.ID), v)
	// Nor does one that names another user's address.
	_, err = s.SetEmailVerified(t.Context(), v.ID, u.Email)
	wantStale(t, "SetEmailVerified(another user's address)", err)

	_, err = s.SetEmailVerified(t.Context(), newID(), u.Email)
	wantNotFound(t, "SetEmailVerified(unknown user)", err)
}

func testChangeEmail(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "old@example.com")
	before := mustUser(t, s, u.ID)

	got, err := s.ChangeEmail(t.Context(), u.ID, "OLD@example.com", "New.Address@Example.com")
	if err != nil {
		t.Fatalf("ChangeEmail: %v", err)
	}
	want := u
	want.Email, want.EmailVerified = "New.Address@Example.com", true
	checkUser(t, "ChangeEmail result", got, want)
	checkUser(t, "UserByID after ChangeEmail", mustUser(t, s, u.ID), want)
	if got.Version != before.Version {
		t.Errorf("ChangeEmail moved Version from %d to %d", before.Version, got.Version)
	}
	byNew, err := s.UserByEmail(t.Context(), "new.address@example.com")
	if err != nil || byNew.ID != u.ID {
		t.Errorf("UserByEmail(new address) = %s, %v; want user %s", byNew.ID, err, u.ID)
	}
	_, err = s.UserByEmail(t.Context(), "old@example.com")
	wantNotFound(t, "UserByEmail(old address)", err)
	// The old address is free for someone else.
	mustCreateUser(t, s, "Old@Example.com")

	// Taken, in any case: nothing changes.
	other := mustCreateUser(t, s, "taken@example.com")
	_, err = s.ChangeEmail(t.Context(), u.ID, want.Email, "TAKEN@example.com")
	if !errors.Is(err, gatehouse.ErrEmailTaken) {
		t.Errorf("ChangeEmail(taken address): err = %v, want ErrEmailTaken", err)
	}
	checkUser(t, "UserByID after a refused ChangeEmail", mustUser(t, s, u.ID), want)
	checkUser(t, "the other user after a refused ChangeEmail", mustUser(t, s, other.ID), other)

	// Stale: the user's address is no longer oldEmail.
	_, err = s.ChangeEmail(t.Context(), u.ID, "old@example.com", "third@example.com")
	wantStale(t, "ChangeEmail(old address no longer current)", err)
	checkUser(t, "UserByID after a stale ChangeEmail", mustUser(t, s, u.ID), want)

	// The user's own address in another case is not taken by someone else.
	got, err = s.ChangeEmail(t.Context(), u.ID, want.Email, "new.address@example.com")
	if err != nil {
		t.Fatalf("ChangeEmail(own address, other case): %v", err)
	}
	if got.Email != "new.address@example.com" {
		t.Errorf("ChangeEmail(own address, other case): Email = %q, want as given", got.Email)
	}

	_, err = s.ChangeEmail(t.Context(), newID(), "old@example.com", "fourth@example.com")
	wantNotFound(t, "ChangeEmail(unknown user)", err)
}
