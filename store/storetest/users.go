package storetest

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
)

func testUserRoundTrip(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	u := gatehouse.User{
		ID:               newID(),
		Email:            "Round.Trip+Tag@Example.COM",
		Name:             "Zoë Ünicode O'Brien",
		Role:             gatehouse.RoleAdmin,
		PasswordHash:     "$argon2id$v=19$m=19456,t=2,p=1$YWJj$ZGVm",
		Disabled:         true,
		CreatedAt:        now.Add(-time.Hour),
		TokensValidAfter: now.Truncate(time.Second),
		EmailVerified:    true,
	}
	if err := s.CreateUser(t.Context(), u); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	checkUser(t, "UserByID", mustUser(t, s, u.ID), u)

	got, err := s.UserByEmail(t.Context(), u.Email)
	if err != nil {
		t.Fatalf("UserByEmail: %v", err)
	}
	checkUser(t, "UserByEmail", got, u)

	// Empty name, zero TokensValidAfter and an unverified email are
	// ordinary values, not NULL surprises.
	v := newUser("plain@example.com")
	v.Name = ""
	if err := s.CreateUser(t.Context(), v); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	checkUser(t, "UserByID(empty name)", mustUser(t, s, v.ID), v)
}

// testUserTimesUTCMicro gives times in another zone and with nanoseconds: the
// store must answer the same instants, in UTC, to the microsecond.
func testUserTimesUTCMicro(t *testing.T, s gatehouse.Store) {
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	created := time.Date(2024, 2, 29, 23, 59, 58, 123456789, zone)
	u := newUser("zone@example.com")
	u.CreatedAt = created
	u.TokensValidAfter = time.Date(2030, 1, 2, 3, 4, 5, 0, zone)
	if err := s.CreateUser(t.Context(), u); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	checkUser(t, "UserByID", mustUser(t, s, u.ID), u)
}

func testUserNotFound(t *testing.T, s gatehouse.Store) {
	mustCreateUser(t, s, "someone@example.com")
	_, err := s.UserByID(t.Context(), newID())
	wantNotFound(t, "UserByID(unknown)", err)
	_, err = s.UserByID(t.Context(), "")
	wantNotFound(t, "UserByID(empty)", err)
	_, err = s.UserByEmail(t.Context(), "nobody@example.com")
	wantNotFound(t, "UserByEmail(unknown)", err)
	_, err = s.UserByEmail(t.Context(), "")
	wantNotFound(t, "UserByEmail(empty)", err)
	// A prefix or suffix of a stored email is a different email.
	_, err = s.UserByEmail(t.Context(), "someone@example.co")
	wantNotFound(t, "UserByEmail(prefix)", err)
	_, err = s.UserByEmail(t.Context(), " someone@example.com")
	wantNotFound(t, "UserByEmail(leading space)", err)
}

func testUserDuplicateID(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "first@example.com")
	dup := newUser("second@example.com")
	dup.ID = u.ID
	if err := s.CreateUser(t.Context(), dup); err == nil {
		t.Fatalf("CreateUser with an existing ID succeeded, want an error")
	}
	checkUser(t, "UserByID after duplicate", mustUser(t, s, u.ID), u)
	_, err := s.UserByEmail(t.Context(), "second@example.com")
	wantNotFound(t, "UserByEmail of the rejected user", err)
}

func testEmailCaseInsensitive(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "Alice.Smith@Example.COM")

	for _, e := range []string{"Alice.Smith@Example.COM", "alice.smith@example.com", "ALICE.SMITH@EXAMPLE.COM", "aLiCe.SmItH@eXaMpLe.CoM"} {
		got, err := s.UserByEmail(t.Context(), e)
		if err != nil {
			t.Errorf("UserByEmail(%q): %v", e, err)
			continue
		}
		if got.ID != u.ID {
			t.Errorf("UserByEmail(%q) = user %s, want %s", e, got.ID, u.ID)
		}
		// Stored as given, whatever case the lookup used.
		if got.Email != "Alice.Smith@Example.COM" {
			t.Errorf("UserByEmail(%q).Email = %q, want it as given at creation", e, got.Email)
		}
	}

	for _, e := range []string{"alice.smith@example.com", "ALICE.SMITH@EXAMPLE.COM", "Alice.Smith@Example.COM"} {
		err := s.CreateUser(t.Context(), newUser(e))
		if !errors.Is(err, gatehouse.ErrEmailTaken) {
			t.Errorf("CreateUser(%q) after %q: got %v, want ErrEmailTaken", e, u.Email, err)
		}
	}

	// A different address is fine.
	mustCreateUser(t, s, "alice.smith2@example.com")
	users, err := s.ListUsers(t.Context(), "", 100)
	if err != nil {
		t.Fatalf("ListUsers: %v", err)
	}
	if len(users) != 2 {
		t.Errorf("ListUsers returned %d users, want 2 (rejected duplicates must not be stored)", len(users))
	}
}

// testEmailUnicodeCase: case-insensitive means Unicode simple case folding
// (strings.ToLower), not ASCII only; SQLite's lower() alone would miss this.
func testEmailUnicodeCase(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "Élodie.Müller@Exämple.org")
	got, err := s.UserByEmail(t.Context(), "élodie.müller@exämple.org")
	if err != nil {
		t.Fatalf("UserByEmail(lower-case Unicode): %v", err)
	}
	if got.ID != u.ID || got.Email != u.Email {
		t.Errorf("UserByEmail = %s %q, want %s %q", got.ID, got.Email, u.ID, u.Email)
	}
	if _, err := s.UserByEmail(t.Context(), "ÉLODIE.MÜLLER@EXÄMPLE.ORG"); err != nil {
		t.Errorf("UserByEmail(upper-case Unicode): %v", err)
	}
	err = s.CreateUser(t.Context(), newUser("ÉLODIE.MÜLLER@exämple.ORG"))
	if !errors.Is(err, gatehouse.ErrEmailTaken) {
		t.Errorf("CreateUser(upper-case Unicode variant): got %v, want ErrEmailTaken", err)
	}
	// Different letters stay different.
	mustCreateUser(t, s, "elodie.muller@example.org")
}

// testEmailNoPatternMatching guards against LIKE/ILIKE lookups, where _ and %
// are wildcards.
func testEmailNoPatternMatching(t *testing.T, s gatehouse.Store) {
	mustCreateUser(t, s, "a_b@example.com")
	mustCreateUser(t, s, "100%@example.com")
	for _, e := range []string{"axb@example.com", "a%@example.com", "%@example.com", "_@example.com", "1000@example.com"} {
		_, err := s.UserByEmail(t.Context(), e)
		wantNotFound(t, "UserByEmail("+e+")", err)
	}
	mustCreateUser(t, s, "axb@example.com")
	mustCreateUser(t, s, "1000@example.com")
}

func testEmailTakenConcurrent(t *testing.T, s gatehouse.Store) {
	const n = 24
	users := make([]gatehouse.User, n)
	for i := range users {
		// Every goroutine uses a different spelling of the same address.
		e := []rune("race.condition@example.com")
		for j := range e {
			if (i>>(j%5))&1 == 1 {
				e[j] = []rune(strings.ToUpper(string(e[j])))[0]
			}
		}
		users[i] = newUser(string(e))
	}
	errs := concurrently(n, func(i int) error { return s.CreateUser(t.Context(), users[i]) })
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Errorf("CreateUser succeeded for both %q and %q", users[winner].Email, users[i].Email)
			}
			winner = i
		case !errors.Is(err, gatehouse.ErrEmailTaken):
			t.Errorf("CreateUser(%q): got %v, want nil or ErrEmailTaken", users[i].Email, err)
		}
	}
	if winner < 0 {
		t.Fatalf("no concurrent CreateUser succeeded")
	}
	got, err := s.UserByEmail(t.Context(), "RACE.CONDITION@EXAMPLE.COM")
	if err != nil {
		t.Fatalf("UserByEmail: %v", err)
	}
	checkUser(t, "UserByEmail", got, users[winner])
}

func testListUsers(t *testing.T, s gatehouse.Store) {
	got, err := s.ListUsers(t.Context(), "", 10)
	if err != nil {
		t.Fatalf("ListUsers(empty store): %v", err)
	}
	if len(got) != 0 {
		t.Fatalf("ListUsers(empty store) = %d users, want 0", len(got))
	}

	const n = 7
	want := make([]gatehouse.User, n)
	for i := range want {
		u := newUser(newID() + "@example.com")
		u.Name = "user " + u.ID
		u.CreatedAt = baseTime().Add(time.Duration(-i) * time.Minute)
		if i%2 == 0 {
			u.Role = gatehouse.RoleAdmin
		}
		if err := s.CreateUser(t.Context(), u); err != nil {
			t.Fatalf("CreateUser: %v", err)
		}
		want[i] = u
	}
	slices.SortFunc(want, func(a, b gatehouse.User) int { return strings.Compare(a.ID, b.ID) })

	all, err := s.ListUsers(t.Context(), "", 100)
	if err != nil {
		t.Fatalf("ListUsers: %v", err)
	}
	if len(all) != n {
		t.Fatalf("ListUsers(\"\", 100) = %d users, want %d", len(all), n)
	}
	for i := range all {
		checkUser(t, "ListUsers", all[i], want[i])
	}

	// Page through with limit 3: 3 + 3 + 1, then nothing.
	var paged []gatehouse.User
	after := ""
	for page := 0; ; page++ {
		if page > n {
			t.Fatalf("paging does not terminate")
		}
		got, err := s.ListUsers(t.Context(), after, 3)
		if err != nil {
			t.Fatalf("ListUsers(%q, 3): %v", after, err)
		}
		if len(got) > 3 {
			t.Fatalf("ListUsers(%q, 3) returned %d users", after, len(got))
		}
		if len(got) == 0 {
			break
		}
		paged = append(paged, got...)
		after = got[len(got)-1].ID
	}
	if !slices.Equal(userIDs(paged), userIDs(want)) {
		t.Errorf("paged ids = %v, want %v", userIDs(paged), userIDs(want))
	}

	// after is exclusive and need not be an existing id.
	got, err = s.ListUsers(t.Context(), want[2].ID, 2)
	if err != nil {
		t.Fatalf("ListUsers: %v", err)
	}
	if !slices.Equal(userIDs(got), userIDs(want[3:5])) {
		t.Errorf("ListUsers(after=want[2], 2) = %v, want %v", userIDs(got), userIDs(want[3:5]))
	}
	between := want[4].ID + "0" // sorts after want[4], before want[5]
	got, err = s.ListUsers(t.Context(), between, 100)
	if err != nil {
		t.Fatalf("ListUsers: %v", err)
	}
	if !slices.Equal(userIDs(got), userIDs(want[5:])) {
		t.Errorf("ListUsers(after=%q) = %v, want %v", between, userIDs(got), userIDs(want[5:]))
	}
	got, err = s.ListUsers(t.Context(), want[n-1].ID, 100)
	if err != nil {
		t.Fatalf("ListUsers(after last): %v", err)
	}
	if len(got) != 0 {
		t.Errorf("ListUsers(after last) = %v, want none", userIDs(got))
	}
	got, err = s.ListUsers(t.Context(), "", 1)
	if err != nil {
		t.Fatalf("ListUsers: %v", err)
	}
	if !slices.Equal(userIDs(got), userIDs(want[:1])) {
		t.Errorf("ListUsers(\"\", 1) = %v, want %v", userIDs(got), userIDs(want[:1]))
	}
}

func userIDs(us []gatehouse.User) []string {
	ids := make([]string, len(us))
	for i, u := range us {
		ids[i] = u.ID
	}
	return ids
}

func testSetPasswordHash(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "pw@example.com")
	other := mustCreateUser(t, s, "other@example.com")
	const h = "$argon2id$v=19$m=65536,t=3,p=2$bmV3c2FsdA$bmV3aGFzaA"
	if err := s.SetPasswordHash(t.Context(), u.ID, "", h); err != nil {
		t.Fatalf("SetPasswordHash: %v", err)
	}
	want := u
	want.PasswordHash = h
	checkUser(t, "after SetPasswordHash", mustUser(t, s, u.ID), want)
	checkUser(t, "other user after SetPasswordHash", mustUser(t, s, other.ID), other)

	err := s.SetPasswordHash(t.Context(), newID(), "", h)
	wantNotFound(t, "SetPasswordHash(unknown user)", err)
}

func testUpdateUserFields(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "Update.Me@Example.com")
	other := mustCreateUser(t, s, "bystander@example.com")
	admin, yes, no := gatehouse.RoleAdmin, true, false

	// Nothing to change: the user comes back as it is.
	got, err := s.UpdateUser(t.Context(), u.ID, nil, nil, time.Time{})
	if err != nil {
		t.Fatalf("UpdateUser(no change): %v", err)
	}
	checkUser(t, "UpdateUser(no change)", got, u)

	want := u
	want.Role = gatehouse.RoleAdmin
	got, err = s.UpdateUser(t.Context(), u.ID, &admin, nil, time.Time{})
	if err != nil {
		t.Fatalf("UpdateUser(role): %v", err)
	}
	checkUser(t, "UpdateUser(role) result", got, want)
	checkUser(t, "UserByID after UpdateUser(role)", mustUser(t, s, u.ID), want)

	want.Disabled = true
	got, err = s.UpdateUser(t.Context(), u.ID, nil, &yes, time.Time{})
	if err != nil {
		t.Fatalf("UpdateUser(disabled): %v", err)
	}
	checkUser(t, "UpdateUser(disabled) result (role untouched)", got, want)

	role := gatehouse.RoleUser
	tva := baseTime().Truncate(time.Second)
	want.Role, want.Disabled, want.TokensValidAfter = gatehouse.RoleUser, false, tva
	got, err = s.UpdateUser(t.Context(), u.ID, &role, &no, tva)
	if err != nil {
		t.Fatalf("UpdateUser(all): %v", err)
	}
	checkUser(t, "UpdateUser(all) result", got, want)
	checkUser(t, "UserByID after UpdateUser(all)", mustUser(t, s, u.ID), want)
	checkUser(t, "other user", mustUser(t, s, other.ID), other)

	_, err = s.UpdateUser(t.Context(), newID(), &admin, nil, time.Time{})
	wantNotFound(t, "UpdateUser(unknown, role)", err)
	_, err = s.UpdateUser(t.Context(), newID(), nil, nil, time.Time{})
	wantNotFound(t, "UpdateUser(unknown, no change)", err)
	_, err = s.UpdateUser(t.Context(), newID(), nil, nil, tva)
	wantNotFound(t, "UpdateUser(unknown, tokensValidAfter)", err)
}

func testUpdateUserTokensValidAfter(t *testing.T, s gatehouse.Store) {
	u := mustCreateUser(t, s, "tva@example.com")
	t1 := baseTime().Truncate(time.Second)
	want := u

	step := func(what string, arg, expect time.Time) {
		t.Helper()
		want.TokensValidAfter = expect
		got, err := s.UpdateUser(t.Context(), u.ID, nil, nil, arg)
		if err != nil {
			t.Fatalf("UpdateUser(%s): %v", what, err)
		}
		checkUser(t, "UpdateUser("+what+") result", got, want)
		checkUser(t, "UserByID after UpdateUser("+what+")", mustUser(t, s, u.ID), want)
	}
	step("zero on zero", time.Time{}, time.Time{})
	step("raise from zero", t1, t1)
	step("lower", t1.Add(-time.Hour), t1)
	step("equal", t1, t1)
	step("zero keeps it", time.Time{}, t1)
	step("raise", t1.Add(time.Second), t1.Add(time.Second))

	// Lowering combined with a real change applies the change and still
	// keeps the later instant.
	admin := gatehouse.RoleAdmin
	want.Role = admin
	got, err := s.UpdateUser(t.Context(), u.ID, &admin, nil, t1)
	if err != nil {
		t.Fatalf("UpdateUser(role, lower): %v", err)
	}
	checkUser(t, "UpdateUser(role, lower) result", got, want)
}
