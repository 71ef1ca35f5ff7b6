package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
)

// --- fixtures ---------------------------------------------------------------

// newPasskey returns a never-used passkey of the user created at now, with
// a random credential id (holding a zero byte, which a backend that treats
// it as text would cut) and a stand-in for the credential JSON.
func newPasskey(userID string, now time.Time) gatehouse.Passkey {
	credID := append([]byte{0x00, 0xff}, randomBytes(30)...)
	return gatehouse.Passkey{
		ID:           newID(),
		UserID:       userID,
		CredentialID: credID,
		Credential:   credentialJSON(0),
		Name:         "Security key",
		CreatedAt:    now,
	}
}

// credentialJSON stands in for a go-webauthn credential at a sign count;
// the random public key makes every call's bytes distinct.
func credentialJSON(signCount int) []byte {
	return fmt.Appendf(nil, `{"publicKey":"%x","authenticator":{"signCount":%d}}`, randomBytes(16), signCount)
}

func mustCreatePasskey(t *testing.T, s gatehouse.Store, p gatehouse.Passkey) gatehouse.Passkey {
	t.Helper()
	if err := s.CreatePasskey(t.Context(), p); err != nil {
		t.Fatalf("CreatePasskey(%s): %v", p.ID, err)
	}
	return p
}

func checkPasskey(t *testing.T, what string, got, want gatehouse.Passkey) {
	t.Helper()
	var d diffs
	d.str("ID", got.ID, want.ID)
	d.str("UserID", got.UserID, want.UserID)
	if !bytes.Equal(got.CredentialID, want.CredentialID) {
		d = append(d, fmt.Sprintf("CredentialID: got %x, want %x", got.CredentialID, want.CredentialID))
	}
	if !bytes.Equal(got.Credential, want.Credential) {
		d = append(d, fmt.Sprintf("Credential: got %q, want %q", got.Credential, want.Credential))
	}
	d.str("Name", got.Name, want.Name)
	d.time("CreatedAt", got.CreatedAt, want.CreatedAt)
	d.time("LastUsedAt", got.LastUsedAt, want.LastUsedAt)
	for _, s := range d {
		t.Errorf("%s: passkey %s", what, s)
	}
}

func mustPasskeyByCredentialID(t *testing.T, s gatehouse.Store, credentialID []byte) gatehouse.Passkey {
	t.Helper()
	p, err := s.PasskeyByCredentialID(t.Context(), credentialID)
	if err != nil {
		t.Fatalf("PasskeyByCredentialID(%x): %v", credentialID, err)
	}
	return p
}

func mustPasskeys(t *testing.T, s gatehouse.Store, userID string) []gatehouse.Passkey {
	t.Helper()
	ps, err := s.Passkeys(t.Context(), userID)
	if err != nil {
		t.Fatalf("Passkeys(%s): %v", userID, err)
	}
	return ps
}

func passkeyCount(t *testing.T, s gatehouse.Store, userID string) int {
	t.Helper()
	n, err := s.CountPasskeys(t.Context(), userID)
	if err != nil {
		t.Fatalf("CountPasskeys(%s): %v", userID, err)
	}
	return n
}

func passkeyIDs(ps []gatehouse.Passkey) []string {
	ids := make([]string, len(ps))
	for i, p := range ps {
		ids[i] = p.ID
	}
	return ids
}

// --- tests ------------------------------------------------------------------

// testPasskeyRoundTrip: every field comes back as stored, by either lookup:
// byte slices exactly, times in UTC to the microsecond, a zero LastUsedAt
// as zero.
func testPasskeyRoundTrip(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	u := mustCreateUser(t, s, "passkey@example.com")

	fresh := newPasskey(u.ID, now.In(time.FixedZone("UTC-5", -5*3600)))
	fresh.Name = "Clé de sécurité — bureau"
	mustCreatePasskey(t, s, fresh)
	checkPasskey(t, "PasskeyByCredentialID(never used)", mustPasskeyByCredentialID(t, s, fresh.CredentialID), fresh)

	used := newPasskey(u.ID, now.Add(time.Second))
	used.LastUsedAt = now.Add(time.Minute)
	used.Name = ""
	mustCreatePasskey(t, s, used)
	checkPasskey(t, "PasskeyByCredentialID(used)", mustPasskeyByCredentialID(t, s, used.CredentialID), used)

	ps := mustPasskeys(t, s, u.ID)
	if len(ps) != 2 {
		t.Fatalf("Passkeys = %q, want 2 passkeys", passkeyIDs(ps))
	}
	checkPasskey(t, "Passkeys[0]", ps[0], fresh)
	checkPasskey(t, "Passkeys[1]", ps[1], used)

	// What a caller does to a returned slice does not reach the store.
	got := mustPasskeyByCredentialID(t, s, fresh.CredentialID)
	got.Credential[0] ^= 0xff
	checkPasskey(t, "passkey after the caller changed its copy", mustPasskeyByCredentialID(t, s, fresh.CredentialID), fresh)
}

// testPasskeysListAndCount: a user's passkeys come oldest first, whatever
// the insertion order, and only that user's; CountPasskeys agrees.
func testPasskeysListAndCount(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	u := mustCreateUser(t, s, "passkeys-list@example.com")
	other := mustCreateUser(t, s, "passkeys-other@example.com")

	if ps := mustPasskeys(t, s, u.ID); len(ps) != 0 {
		t.Errorf("Passkeys(no passkeys) = %q, want none", passkeyIDs(ps))
	}
	if n := passkeyCount(t, s, u.ID); n != 0 {
		t.Errorf("CountPasskeys(no passkeys) = %d, want 0", n)
	}

	newest := mustCreatePasskey(t, s, newPasskey(u.ID, now.Add(2*time.Hour)))
	oldest := mustCreatePasskey(t, s, newPasskey(u.ID, now))
	otherKey := mustCreatePasskey(t, s, newPasskey(other.ID, now.Add(time.Hour)))
	middle := mustCreatePasskey(t, s, newPasskey(u.ID, now.Add(time.Hour)))

	ps := mustPasskeys(t, s, u.ID)
	want := []string{oldest.ID, middle.ID, newest.ID}
	if got := passkeyIDs(ps); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Passkeys = %q, want %q (oldest first)", got, want)
	}
	for i, p := range ps {
		if p.UserID != u.ID {
			t.Errorf("Passkeys[%d].UserID = %s, want %s", i, p.UserID, u.ID)
		}
	}
	ops := mustPasskeys(t, s, other.ID)
	if len(ops) != 1 {
		t.Fatalf("Passkeys(other user) = %q, want only %s", passkeyIDs(ops), otherKey.ID)
	}
	checkPasskey(t, "Passkeys(other user)", ops[0], otherKey)
	if ps := mustPasskeys(t, s, newID()); len(ps) != 0 {
		t.Errorf("Passkeys(unknown user) = %q, want none", passkeyIDs(ps))
	}

	for _, c := range []struct {
		userID string
		want   int
	}{{u.ID, 3}, {other.ID, 1}, {newID(), 0}} {
		if n := passkeyCount(t, s, c.userID); n != c.want {
			t.Errorf("CountPasskeys(%s) = %d, want %d", c.userID, n, c.want)
		}
	}
}

// testPasskeyByCredentialID: the lookup is by the whole credential id,
// across users.
func testPasskeyByCredentialID(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	u := mustCreateUser(t, s, "passkey-lookup@example.com")
	other := mustCreateUser(t, s, "passkey-lookup-other@example.com")
	mine := mustCreatePasskey(t, s, newPasskey(u.ID, now))
	theirs := mustCreatePasskey(t, s, newPasskey(other.ID, now))

	checkPasskey(t, "PasskeyByCredentialID(mine)", mustPasskeyByCredentialID(t, s, mine.CredentialID), mine)
	checkPasskey(t, "PasskeyByCredentialID(theirs)", mustPasskeyByCredentialID(t, s, theirs.CredentialID), theirs)

	for name, id := range map[string][]byte{
		"unknown": randomBytes(32),
		"prefix":  mine.CredentialID[:len(mine.CredentialID)-1],
		"longer":  append(bytes.Clone(mine.CredentialID), 0),
		"empty":   {},
		"nil":     nil,
	} {
		_, err := s.PasskeyByCredentialID(t.Context(), id)
		wantNotFound(t, "PasskeyByCredentialID("+name+")", err)
	}
}

// testCreatePasskeyRefusals: a credential id registered before, by the same
// user or another, is ErrStale; an unknown user is ErrNotFound; neither
// stores anything.
func testCreatePasskeyRefusals(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	u := mustCreateUser(t, s, "passkey-dup@example.com")
	other := mustCreateUser(t, s, "passkey-dup-other@example.com")
	orig := mustCreatePasskey(t, s, newPasskey(u.ID, now))

	again := newPasskey(u.ID, now.Add(time.Minute))
	again.CredentialID = bytes.Clone(orig.CredentialID)
	wantStale(t, "CreatePasskey(same credential id, same user)", s.CreatePasskey(t.Context(), again))

	stolen := newPasskey(other.ID, now.Add(time.Minute))
	stolen.CredentialID = bytes.Clone(orig.CredentialID)
	wantStale(t, "CreatePasskey(same credential id, other user)", s.CreatePasskey(t.Context(), stolen))

	wantNotFound(t, "CreatePasskey(unknown user)", s.CreatePasskey(t.Context(), newPasskey(newID(), now)))

	checkPasskey(t, "passkey after refusals", mustPasskeyByCredentialID(t, s, orig.CredentialID), orig)
	if n := passkeyCount(t, s, u.ID); n != 1 {
		t.Errorf("CountPasskeys(user) = %d, want 1", n)
	}
	if n := passkeyCount(t, s, other.ID); n != 0 {
		t.Errorf("CountPasskeys(other user) = %d, want 0", n)
	}

	// A refused credential id did not block the user's next one.
	mustCreatePasskey(t, s, newPasskey(other.ID, now))
}

// testUpdatePasskeyUse: the credential is swapped and LastUsedAt set only
// while the stored credential is the one presented as old; a passkey that
// is gone is ErrNotFound.
func testUpdatePasskeyUse(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	u := mustCreateUser(t, s, "passkey-use@example.com")
	p := mustCreatePasskey(t, s, newPasskey(u.ID, now))
	bystander := mustCreatePasskey(t, s, newPasskey(u.ID, now))

	next := credentialJSON(1)
	at := now.Add(time.Minute)
	if err := s.UpdatePasskeyUse(t.Context(), p.ID, p.Credential, next, at); err != nil {
		t.Fatalf("UpdatePasskeyUse: %v", err)
	}
	want := p
	want.Credential, want.LastUsedAt = next, at
	checkPasskey(t, "passkey after use", mustPasskeyByCredentialID(t, s, p.CredentialID), want)

	// The same assertion again: it read the credential before the use above.
	wantStale(t, "UpdatePasskeyUse(stale old credential)",
		s.UpdatePasskeyUse(t.Context(), p.ID, p.Credential, credentialJSON(1), at.Add(time.Minute)))
	wantStale(t, "UpdatePasskeyUse(nil old credential)",
		s.UpdatePasskeyUse(t.Context(), p.ID, nil, credentialJSON(1), at.Add(time.Minute)))
	checkPasskey(t, "passkey after stale uses", mustPasskeyByCredentialID(t, s, p.CredentialID), want)

	// The next use reads the new credential and moves on from it.
	later := credentialJSON(2)
	if err := s.UpdatePasskeyUse(t.Context(), p.ID, next, later, at.Add(time.Hour)); err != nil {
		t.Fatalf("UpdatePasskeyUse(second use): %v", err)
	}
	want.Credential, want.LastUsedAt = later, at.Add(time.Hour)
	checkPasskey(t, "passkey after second use", mustPasskeyByCredentialID(t, s, p.CredentialID), want)
	checkPasskey(t, "other passkey", mustPasskeyByCredentialID(t, s, bystander.CredentialID), bystander)

	wantNotFound(t, "UpdatePasskeyUse(unknown id)", s.UpdatePasskeyUse(t.Context(), newID(), later, credentialJSON(3), at))
	if err := s.DeletePasskey(t.Context(), u.ID, p.ID); err != nil {
		t.Fatalf("DeletePasskey: %v", err)
	}
	wantNotFound(t, "UpdatePasskeyUse(deleted passkey)", s.UpdatePasskeyUse(t.Context(), p.ID, later, credentialJSON(3), at))
}

// testUpdatePasskeyUseConcurrent: of concurrent uses that read the same
// credential exactly one succeeds; the others are ErrStale, and the stored
// credential is the winner's.
func testUpdatePasskeyUseConcurrent(t *testing.T, s gatehouse.Store) {
	const n = 20
	now := baseTime()
	u := mustCreateUser(t, s, "passkey-race@example.com")
	p := mustCreatePasskey(t, s, newPasskey(u.ID, now))
	nexts := make([][]byte, n)
	for i := range nexts {
		nexts[i] = credentialJSON(1)
	}
	winner, wins := -1, 0
	for i, err := range concurrently(n, func(i int) error {
		return s.UpdatePasskeyUse(t.Context(), p.ID, p.Credential, nexts[i], now.Add(time.Duration(i+1)*time.Second))
	}) {
		switch {
		case err == nil:
			winner, wins = i, wins+1
		case !errors.Is(err, gatehouse.ErrStale):
			t.Errorf("use %d: %v, want nil or ErrStale", i, err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d of %d concurrent uses of one credential succeeded, want exactly 1", wins, n)
	}
	want := p
	want.Credential, want.LastUsedAt = nexts[winner], now.Add(time.Duration(winner+1)*time.Second)
	checkPasskey(t, "passkey after the race", mustPasskeyByCredentialID(t, s, p.CredentialID), want)
}

// testDeletePasskey: a user deletes their own passkey, not another user's
// (ErrNotFound, which changes nothing), and not twice.
func testDeletePasskey(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	u := mustCreateUser(t, s, "passkey-delete@example.com")
	other := mustCreateUser(t, s, "passkey-delete-other@example.com")
	mine := mustCreatePasskey(t, s, newPasskey(u.ID, now))
	kept := mustCreatePasskey(t, s, newPasskey(u.ID, now.Add(time.Second)))
	theirs := mustCreatePasskey(t, s, newPasskey(other.ID, now))

	wantNotFound(t, "DeletePasskey(another user's passkey)", s.DeletePasskey(t.Context(), u.ID, theirs.ID))
	checkPasskey(t, "the other user's passkey", mustPasskeyByCredentialID(t, s, theirs.CredentialID), theirs)
	wantNotFound(t, "DeletePasskey(unknown id)", s.DeletePasskey(t.Context(), u.ID, newID()))

	if err := s.DeletePasskey(t.Context(), u.ID, mine.ID); err != nil {
		t.Fatalf("DeletePasskey(own): %v", err)
	}
	_, err := s.PasskeyByCredentialID(t.Context(), mine.CredentialID)
	wantNotFound(t, "PasskeyByCredentialID(deleted)", err)
	wantNotFound(t, "DeletePasskey(again)", s.DeletePasskey(t.Context(), u.ID, mine.ID))

	ps := mustPasskeys(t, s, u.ID)
	if len(ps) != 1 || ps[0].ID != kept.ID {
		t.Errorf("Passkeys after delete = %q, want only %s", passkeyIDs(ps), kept.ID)
	}
	if n := passkeyCount(t, s, u.ID); n != 1 {
		t.Errorf("CountPasskeys after delete = %d, want 1", n)
	}
	if n := passkeyCount(t, s, other.ID); n != 1 {
		t.Errorf("CountPasskeys(other user) = %d, want 1", n)
	}

	// The credential id is free again once its passkey is gone.
	again := newPasskey(u.ID, now.Add(time.Minute))
	again.CredentialID = mine.CredentialID
	mustCreatePasskey(t, s, again)
}
