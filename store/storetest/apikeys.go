package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
)

// API keys and the last-admin guard.

func newAPIKey(userID string, now time.Time) gatehouse.APIKey {
	return gatehouse.APIKey{
		ID:        newID(),
		UserID:    userID,
		Name:      "deploy script",
		MAC:       []byte("0123456789abcdef0123456789abcdef" + newID()),
		Scopes:    []string{"revocations:read", "deploy"},
		CreatedAt: now,
		ExpiresAt: now.Add(30 * 24 * time.Hour),
	}
}

func mustCreateAPIKey(t *testing.T, s gatehouse.Store, k gatehouse.APIKey) gatehouse.APIKey {
	t.Helper()
	if err := s.CreateAPIKey(t.Context(), k, 0); err != nil {
		t.Fatalf("CreateAPIKey: %v", err)
	}
	return k
}

func checkAPIKey(t *testing.T, what string, got, want gatehouse.APIKey) {
	t.Helper()
	var d diffs
	d.str("ID", got.ID, want.ID)
	d.str("UserID", got.UserID, want.UserID)
	d.str("Name", got.Name, want.Name)
	if !bytes.Equal(got.MAC, want.MAC) {
		d = append(d, fmt.Sprintf("MAC: got %x, want %x", got.MAC, want.MAC))
	}
	if !slices.Equal(got.Scopes, want.Scopes) && (len(got.Scopes) != 0 || len(want.Scopes) != 0) {
		d = append(d, fmt.Sprintf("Scopes: got %q, want %q", got.Scopes, want.Scopes))
	}
	d.time("CreatedAt", got.CreatedAt, want.CreatedAt)
	d.time("ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	d.time("LastUsedAt", got.LastUsedAt, want.LastUsedAt)
	d.time("RevokedAt", got.RevokedAt, want.RevokedAt)
	for _, s := range d {
		t.Errorf("%s: api key %s", what, s)
	}
}

func testAPIKeyRoundTrip(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "keys@example.com")
	now := baseTime()
	k := mustCreateAPIKey(t, s, newAPIKey(u.ID, now))
	got, err := s.APIKeyByID(t.Context(), k.ID)
	if err != nil {
		t.Fatalf("APIKeyByID: %v", err)
	}
	checkAPIKey(t, "APIKeyByID", got, k)

	// No scopes, no expiry: both come back empty.
	bare := newAPIKey(u.ID, now)
	bare.Scopes, bare.ExpiresAt = nil, time.Time{}
	mustCreateAPIKey(t, s, bare)
	got, err = s.APIKeyByID(t.Context(), bare.ID)
	if err != nil {
		t.Fatalf("APIKeyByID(bare): %v", err)
	}
	checkAPIKey(t, "APIKeyByID(bare)", got, bare)

	_, err = s.APIKeyByID(t.Context(), newID())
	wantNotFound(t, "APIKeyByID(unknown)", err)
	err = s.CreateAPIKey(t.Context(), newAPIKey(newID(), now), 10)
	wantNotFound(t, "CreateAPIKey(unknown user)", err)
	dup := newAPIKey(u.ID, now)
	dup.ID = k.ID
	if err := s.CreateAPIKey(t.Context(), dup, 0); err == nil {
		t.Error("CreateAPIKey with an existing id succeeded")
	}
	spaced := newAPIKey(u.ID, now)
	spaced.Scopes = []string{"two words"}
	if err := s.CreateAPIKey(t.Context(), spaced, 0); err == nil {
		t.Error("CreateAPIKey with a scope holding a space succeeded (it would come back as two)")
	}
}

func testAPIKeysList(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "lister@example.com")
	other := mustCreateUser(t, s, "other@example.com")
	now := baseTime()
	var want []string
	for i := range 3 {
		k := mustCreateAPIKey(t, s, newAPIKey(u.ID, now.Add(time.Duration(i)*time.Second)))
		want = append(want, k.ID)
	}
	expired := newAPIKey(u.ID, now.Add(5*time.Second))
	expired.ExpiresAt = now.Add(-time.Hour)
	mustCreateAPIKey(t, s, expired)
	want = append(want, expired.ID)
	mustCreateAPIKey(t, s, newAPIKey(other.ID, now))
	revoked := mustCreateAPIKey(t, s, newAPIKey(u.ID, now.Add(10*time.Second)))
	if err := s.RevokeAPIKey(t.Context(), u.ID, revoked.ID, now, now.Add(time.Hour)); err != nil {
		t.Fatalf("RevokeAPIKey: %v", err)
	}

	ks, err := s.APIKeys(t.Context(), u.ID)
	if err != nil {
		t.Fatalf("APIKeys: %v", err)
	}
	var got []string
	for _, k := range ks {
		got = append(got, k.ID)
	}
	if !slices.Equal(got, want) {
		t.Errorf("APIKeys: got %q, want %q (oldest first, expired included, revoked and other users' left out)", got, want)
	}
	if ks, err := s.APIKeys(t.Context(), newID()); err != nil || len(ks) != 0 {
		t.Errorf("APIKeys(unknown user): %d keys, %v; want none", len(ks), err)
	}
}

func testRevokeAPIKey(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "owner@example.com")
	other := mustCreateUser(t, s, "stranger@example.com")
	now := baseTime()
	k := mustCreateAPIKey(t, s, newAPIKey(u.ID, now))

	err := s.RevokeAPIKey(t.Context(), other.ID, k.ID, now, now.Add(time.Hour))
	wantNotFound(t, "RevokeAPIKey(another user's key)", err)
	if got, _ := s.APIKeyByID(t.Context(), k.ID); !got.RevokedAt.IsZero() {
		t.Fatal("another user revoked the key")
	}
	if err := s.RevokeAPIKey(t.Context(), u.ID, k.ID, now, now.Add(time.Hour)); err != nil {
		t.Fatalf("RevokeAPIKey(owner): %v", err)
	}
	got, err := s.APIKeyByID(t.Context(), k.ID)
	if err != nil {
		t.Fatalf("APIKeyByID(revoked): %v", err)
	}
	if diff := timeDiff(got.RevokedAt, now); diff != "" {
		t.Errorf("RevokedAt: %s", diff)
	}
	err = s.RevokeAPIKey(t.Context(), u.ID, k.ID, now, now.Add(time.Hour))
	wantNotFound(t, "RevokeAPIKey(again)", err)
	err = s.RevokeAPIKey(t.Context(), "", newID(), now, now.Add(time.Hour))
	wantNotFound(t, "RevokeAPIKey(unknown)", err)

	// An empty user id is the admin's revocation of any key.
	k2 := mustCreateAPIKey(t, s, newAPIKey(u.ID, now))
	if err := s.RevokeAPIKey(t.Context(), "", k2.ID, now, now.Add(time.Hour)); err != nil {
		t.Fatalf("RevokeAPIKey(admin): %v", err)
	}

	// Each revocation is in the log, for every instance to replay.
	revs := liveLog(t, "log after RevokeAPIKey", s, now)
	logged := map[string]int{}
	for _, r := range revs {
		if r.Kind == gatehouse.RevokeAPIKey {
			logged[r.Subject]++
			if diff := timeDiff(r.ExpiresAt, now.Add(time.Hour)); diff != "" {
				t.Errorf("log entry ExpiresAt: %s", diff)
			}
		}
	}
	if logged[k.ID] != 1 || logged[k2.ID] != 1 || len(logged) != 2 {
		t.Errorf("api_key log entries %v, want one for each of %s and %s", logged, k.ID, k2.ID)
	}
}

func testRevokeAPIKeyConcurrent(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "racer@example.com")
	now := baseTime()
	k := mustCreateAPIKey(t, s, newAPIKey(u.ID, now))
	errs := concurrently(8, func(int) error {
		return s.RevokeAPIKey(t.Context(), u.ID, k.ID, now, now.Add(time.Hour))
	})
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, gatehouse.ErrNotFound):
			t.Errorf("concurrent RevokeAPIKey: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of 8 concurrent revocations succeeded, want exactly 1", ok)
	}
	revs := liveLog(t, "log after concurrent RevokeAPIKey", s, now)
	n := 0
	for _, r := range revs {
		if r.Kind == gatehouse.RevokeAPIKey && r.Subject == k.ID {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d log entries for the key, want 1", n)
	}
}

// testAPIKeyLimit: the per-user limit counts the owner's unrevoked keys
// only, and holds under concurrent creations: of 20 at once with room for
// 5, exactly 5 are stored.
func testAPIKeyLimit(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "limited@example.com")
	other := mustCreateUser(t, s, "unlimited@example.com")
	now := baseTime()
	const limit = 3
	mustCreateAPIKey(t, s, newAPIKey(other.ID, now))
	mustCreateAPIKey(t, s, newAPIKey(other.ID, now))
	revoked := mustCreateAPIKey(t, s, newAPIKey(u.ID, now))
	if err := s.RevokeAPIKey(t.Context(), u.ID, revoked.ID, now, now.Add(time.Hour)); err != nil {
		t.Fatalf("RevokeAPIKey: %v", err)
	}
	for i := range limit {
		if err := s.CreateAPIKey(t.Context(), newAPIKey(u.ID, now), limit); err != nil {
			t.Fatalf("CreateAPIKey %d of %d (a revoked key and another user's do not count): %v", i+1, limit, err)
		}
	}
	over := newAPIKey(u.ID, now)
	if err := s.CreateAPIKey(t.Context(), over, limit); !errors.Is(err, gatehouse.ErrLimitReached) {
		t.Fatalf("CreateAPIKey past the limit: %v, want ErrLimitReached", err)
	}
	if _, err := s.APIKeyByID(t.Context(), over.ID); !errors.Is(err, gatehouse.ErrNotFound) {
		t.Errorf("the key refused for the limit was stored anyway: %v", err)
	}
	if err := s.CreateAPIKey(t.Context(), newAPIKey(u.ID, now), 0); err != nil {
		t.Errorf("CreateAPIKey without a limit: %v", err)
	}

	racer := mustCreateUser(t, s, "key-racer@example.com")
	const room, tries = 5, 20
	errs := concurrently(tries, func(int) error {
		return s.CreateAPIKey(t.Context(), newAPIKey(racer.ID, now), room)
	})
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, gatehouse.ErrLimitReached):
			t.Errorf("concurrent CreateAPIKey: %v", err)
		}
	}
	ks, err := s.APIKeys(t.Context(), racer.ID)
	if err != nil {
		t.Fatalf("APIKeys: %v", err)
	}
	if ok != room || len(ks) != room {
		t.Errorf("%d of %d concurrent creations succeeded and %d keys are stored; want exactly %d", ok, tries, len(ks), room)
	}
}

func testTouchAPIKeys(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "toucher@example.com")
	now := baseTime()
	a := mustCreateAPIKey(t, s, newAPIKey(u.ID, now))
	b := mustCreateAPIKey(t, s, newAPIKey(u.ID, now))
	if err := s.TouchAPIKeys(t.Context(), nil); err != nil {
		t.Fatalf("TouchAPIKeys(nothing): %v", err)
	}
	t1 := now.Add(time.Minute)
	if err := s.TouchAPIKeys(t.Context(), map[string]time.Time{a.ID: t1, b.ID: t1.Add(time.Second), newID(): t1}); err != nil {
		t.Fatalf("TouchAPIKeys: %v", err)
	}
	check := func(what, id string, want time.Time) {
		t.Helper()
		got, err := s.APIKeyByID(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if diff := timeDiff(got.LastUsedAt, want); diff != "" {
			t.Errorf("%s: LastUsedAt %s", what, diff)
		}
	}
	check("a", a.ID, t1)
	check("b", b.ID, t1.Add(time.Second))
	// An older batch (an instance flushing late) never lowers it.
	if err := s.TouchAPIKeys(t.Context(), map[string]time.Time{a.ID: now}); err != nil {
		t.Fatal(err)
	}
	check("a after an older use", a.ID, t1)
}

func mustCreateAdmin(t *testing.T, s gatehouse.Store, email string) gatehouse.User {
	t.Helper()
	u := newUser(email)
	u.Role = gatehouse.RoleAdmin
	if err := s.CreateUser(t.Context(), u); err != nil {
		t.Fatalf("CreateUser(%q): %v", email, err)
	}
	return u
}

func wantLastAdmin(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, gatehouse.ErrLastAdmin) {
		t.Errorf("%s: got %v, want ErrLastAdmin", what, err)
	}
}

func testUpdateUserKeepingAdmin(t *testing.T, s gatehouse.Store) {
	ctx := t.Context()
	userRole, adminRole, yes, no := gatehouse.RoleUser, gatehouse.RoleAdmin, true, false
	a := mustCreateAdmin(t, s, "first.admin@example.com")
	plain := mustCreateUser(t, s, "plain@example.com")

	if other, err := s.OtherEnabledAdmin(ctx, a.ID); err != nil || other {
		t.Errorf("OtherEnabledAdmin(only admin): %v, %v; want false", other, err)
	}
	if other, err := s.OtherEnabledAdmin(ctx, plain.ID); err != nil || !other {
		t.Errorf("OtherEnabledAdmin(a user, one admin exists): %v, %v; want true", other, err)
	}
	_, err := s.UpdateUserKeepingAdmin(ctx, a.ID, &userRole, nil, time.Time{})
	wantLastAdmin(t, "demote the only admin", err)
	_, err = s.UpdateUserKeepingAdmin(ctx, a.ID, nil, &yes, time.Time{})
	wantLastAdmin(t, "disable the only admin", err)
	if got := mustUser(t, s, a.ID); got.Role != gatehouse.RoleAdmin || got.Disabled || got.Version != a.Version {
		t.Fatalf("a refused change changed the admin: %+v", got)
	}
	// Changes that leave the admin an enabled admin pass.
	tva := baseTime().Truncate(time.Second)
	got, err := s.UpdateUserKeepingAdmin(ctx, a.ID, &adminRole, &no, tva)
	if err != nil || got.Role != gatehouse.RoleAdmin || !got.TokensValidAfter.Equal(tva) {
		t.Errorf("no-op change of the only admin: %+v, %v", got, err)
	}
	// Changes of plain users pass, and a disabled admin does not count.
	if _, err := s.UpdateUserKeepingAdmin(ctx, plain.ID, nil, &yes, time.Time{}); err != nil {
		t.Errorf("disable a plain user: %v", err)
	}
	if _, err := s.UpdateUserKeepingAdmin(ctx, plain.ID, &adminRole, nil, time.Time{}); err != nil {
		t.Errorf("promote a disabled user: %v", err)
	}
	_, err = s.UpdateUserKeepingAdmin(ctx, a.ID, &userRole, nil, time.Time{})
	wantLastAdmin(t, "demote the only enabled admin beside a disabled one", err)

	// With a second enabled admin, one of them may go, not both.
	b := mustCreateAdmin(t, s, "second.admin@example.com")
	if _, err := s.UpdateUserKeepingAdmin(ctx, a.ID, &userRole, nil, time.Time{}); err != nil {
		t.Fatalf("demote one of two admins: %v", err)
	}
	_, err = s.UpdateUserKeepingAdmin(ctx, b.ID, nil, &yes, time.Time{})
	wantLastAdmin(t, "disable the remaining admin", err)

	_, err = s.UpdateUserKeepingAdmin(ctx, newID(), &userRole, nil, time.Time{})
	wantNotFound(t, "UpdateUserKeepingAdmin(unknown)", err)
}

// testUpdateUserKeepingAdminConcurrent: two admins demote (or disable) each
// other at the same instant, many times over. Exactly one change may pass
// each time, or the instance would be left without an admin.
func testUpdateUserKeepingAdminConcurrent(t *testing.T, s gatehouse.Store) {
	ctx := t.Context()
	userRole, adminRole, yes, no := gatehouse.RoleUser, gatehouse.RoleAdmin, true, false
	a := mustCreateAdmin(t, s, "a.admin@example.com")
	b := mustCreateAdmin(t, s, "b.admin@example.com")
	ids := []string{a.ID, b.ID}
	for round := range 20 {
		disable := round%2 == 1
		errs := concurrently(2, func(i int) error {
			var err error
			if disable {
				_, err = s.UpdateUserKeepingAdmin(ctx, ids[i], nil, &yes, time.Time{})
			} else {
				_, err = s.UpdateUserKeepingAdmin(ctx, ids[i], &userRole, nil, time.Time{})
			}
			return err
		})
		passed := 0
		for _, err := range errs {
			switch {
			case err == nil:
				passed++
			case !errors.Is(err, gatehouse.ErrLastAdmin):
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if passed != 1 {
			t.Fatalf("round %d (disable %v): %d of 2 concurrent changes passed, want exactly 1", round, disable, passed)
		}
		enabledAdmins := 0
		for _, id := range ids {
			if u := mustUser(t, s, id); u.Role == gatehouse.RoleAdmin && !u.Disabled {
				enabledAdmins++
			}
		}
		if enabledAdmins != 1 {
			t.Fatalf("round %d: %d enabled admins left, want 1", round, enabledAdmins)
		}
		// Restore both for the next round.
		for _, id := range ids {
			if _, err := s.UpdateUser(ctx, id, &adminRole, &no, time.Time{}); err != nil {
				t.Fatal(err)
			}
		}
	}
}
