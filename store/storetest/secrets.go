package storetest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
)

// maxGuesses is the guess limit the tests pass, the one API.md gives codes.
const maxGuesses = 5

// newSecret returns an unused secret of kind for subject, created at now,
// live for an hour, with a random 32-byte MAC.
func newSecret(kind gatehouse.SecretKind, subject string, now time.Time) gatehouse.OneTimeSecret {
	return gatehouse.OneTimeSecret{
		ID:        newID(),
		Kind:      kind,
		Subject:   subject,
		MAC:       randomBytes(32),
		CreatedAt: now,
		ExpiresAt: now.Add(time.Hour),
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return b
}

func mustCreateSecret(t *testing.T, s gatehouse.Store, sec gatehouse.OneTimeSecret) gatehouse.OneTimeSecret {
	t.Helper()
	if err := s.CreateSecret(t.Context(), sec); err != nil {
		t.Fatalf("CreateSecret(%s %s): %v", sec.Kind, sec.ID, err)
	}
	return sec
}

// usable reports whether sec can still be used at now, using it if so.
func usable(t *testing.T, s gatehouse.Store, sec gatehouse.OneTimeSecret, now time.Time) bool {
	t.Helper()
	_, err := s.UseSecret(t.Context(), sec.Kind, sec.ID, sec.MAC, now, maxGuesses)
	switch {
	case err == nil:
		return true
	case errors.Is(err, gatehouse.ErrNotFound):
		return false
	default:
		t.Fatalf("UseSecret(%s): %v", sec.ID, err)
		return false
	}
}

func checkSecret(t *testing.T, what string, got, want gatehouse.OneTimeSecret) {
	t.Helper()
	var d diffs
	d.str("ID", got.ID, want.ID)
	d.str("Kind", string(got.Kind), string(want.Kind))
	d.str("Subject", got.Subject, want.Subject)
	if !bytes.Equal(got.MAC, want.MAC) {
		d = append(d, fmt.Sprintf("MAC: got %x, want %x", got.MAC, want.MAC))
	}
	d.str("Data", got.Data, want.Data)
	d.time("CreatedAt", got.CreatedAt, want.CreatedAt)
	d.time("ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	d.time("UsedAt", got.UsedAt, want.UsedAt)
	d.any("Attempts", got.Attempts, want.Attempts)
	for _, s := range d {
		t.Errorf("%s: secret %s", what, s)
	}
}

func testSecretRoundTrip(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	zone := time.FixedZone("UTC+2", 2*3600)
	sec := newSecret(gatehouse.SecretChangeEmail, newID(), now.In(zone))
	sec.Data = "Nëw.Address@Example.com"
	sec.ExpiresAt = time.Date(2099, 1, 2, 3, 4, 5, 678901234, zone)
	mustCreateSecret(t, s, sec)

	got, err := s.UseSecret(t.Context(), sec.Kind, sec.ID, bytes.Clone(sec.MAC), now, maxGuesses)
	if err != nil {
		t.Fatalf("UseSecret: %v", err)
	}
	checkSecret(t, "UseSecret result (as stored before)", got, sec)

	_, err = s.UseSecret(t.Context(), sec.Kind, sec.ID, sec.MAC, now, maxGuesses)
	wantNotFound(t, "UseSecret(second use)", err)
	_, err = s.UseSecret(t.Context(), sec.Kind, sec.ID, sec.MAC, now.Add(time.Second), maxGuesses)
	wantNotFound(t, "UseSecret(second use, later)", err)
}

func testCreateSecretVoidsOlder(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	u1, u2 := newID(), newID()
	older := mustCreateSecret(t, s, newSecret(gatehouse.SecretVerifyEmail, u1, now))
	otherKind := mustCreateSecret(t, s, newSecret(gatehouse.SecretResetPassword, u1, now))
	otherSubject := mustCreateSecret(t, s, newSecret(gatehouse.SecretVerifyEmail, u2, now))
	// The same subject as an "email:" form is another subject too.
	emailSubject := mustCreateSecret(t, s, newSecret(gatehouse.SecretVerifyEmail, "email:"+u1, now))
	newer := mustCreateSecret(t, s, newSecret(gatehouse.SecretVerifyEmail, u1, now.Add(time.Second)))

	at := now.Add(2 * time.Second)
	if usable(t, s, older, at) {
		t.Errorf("the older secret of the same kind and subject is still usable")
	}
	if !usable(t, s, newer, at) {
		t.Errorf("the newer secret is not usable")
	}
	if !usable(t, s, otherKind, at) {
		t.Errorf("a secret of another kind was voided")
	}
	if !usable(t, s, otherSubject, at) {
		t.Errorf("a secret of another subject was voided")
	}
	if !usable(t, s, emailSubject, at) {
		t.Errorf("a secret of the subject's email form was voided")
	}
}

// testCreateSecretConcurrent creates secrets of one kind and subject at
// once: when they are done, exactly one of them is usable.
func testCreateSecretConcurrent(t *testing.T, s gatehouse.Store) {
	const n = 10
	now := baseTime()
	subject := newID()
	secs := make([]gatehouse.OneTimeSecret, n)
	for i := range secs {
		secs[i] = newSecret(gatehouse.SecretMagicCode, subject, now)
	}
	for i, err := range concurrently(n, func(i int) error { return s.CreateSecret(t.Context(), secs[i]) }) {
		if err != nil {
			t.Fatalf("CreateSecret %d: %v", i, err)
		}
	}
	live := 0
	for _, sec := range secs {
		if usable(t, s, sec, now) {
			live++
		}
	}
	if live != 1 {
		t.Errorf("%d of %d concurrently created secrets usable, want 1", live, n)
	}
}

func testUseSecretRefusals(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	sec := mustCreateSecret(t, s, newSecret(gatehouse.SecretResetPassword, newID(), now))
	use := func(kind gatehouse.SecretKind, id string, mac []byte, at time.Time, limit int) error {
		_, err := s.UseSecret(t.Context(), kind, id, mac, at, limit)
		return err
	}

	wrong := bytes.Clone(sec.MAC)
	wrong[len(wrong)-1] ^= 1
	wantNotFound(t, "UseSecret(wrong MAC)", use(sec.Kind, sec.ID, wrong, now, maxGuesses))
	wantNotFound(t, "UseSecret(MAC prefix)", use(sec.Kind, sec.ID, sec.MAC[:16], now, maxGuesses))
	wantNotFound(t, "UseSecret(no MAC)", use(sec.Kind, sec.ID, nil, now, maxGuesses))
	wantNotFound(t, "UseSecret(wrong kind)", use(gatehouse.SecretMagicLink, sec.ID, sec.MAC, now, maxGuesses))
	wantNotFound(t, "UseSecret(unknown id)", use(sec.Kind, newID(), sec.MAC, now, maxGuesses))
	wantNotFound(t, "UseSecret(at ExpiresAt)", use(sec.Kind, sec.ID, sec.MAC, sec.ExpiresAt, maxGuesses))
	wantNotFound(t, "UseSecret(after ExpiresAt)", use(sec.Kind, sec.ID, sec.MAC, sec.ExpiresAt.Add(time.Hour), maxGuesses))
	wantNotFound(t, "UseSecret(no attempts allowed)", use(sec.Kind, sec.ID, sec.MAC, now, 0))

	// None of those changed anything: a wrong MAC by id is not a counted
	// guess, and the secret is still usable just before it expires.
	got, err := s.UseSecret(t.Context(), sec.Kind, sec.ID, sec.MAC, sec.ExpiresAt.Add(-time.Microsecond), 1)
	if err != nil {
		t.Fatalf("UseSecret(right, just before expiry, 1 attempt allowed): %v", err)
	}
	checkSecret(t, "UseSecret result", got, sec)
	wantNotFound(t, "UseSecret(used)", use(sec.Kind, sec.ID, sec.MAC, now, maxGuesses))

	// A secret stored with its attempts used up is dead by id too.
	spent := newSecret(gatehouse.SecretMagicCode, newID(), now)
	spent.Attempts = maxGuesses
	mustCreateSecret(t, s, spent)
	wantNotFound(t, "UseSecret(attempts at the limit)", use(spent.Kind, spent.ID, spent.MAC, now, maxGuesses))
	if got, err := s.UseSecret(t.Context(), spent.Kind, spent.ID, spent.MAC, now, maxGuesses+1); err != nil {
		t.Errorf("UseSecret(attempts below a higher limit): %v", err)
	} else if got.Attempts != maxGuesses {
		t.Errorf("UseSecret: Attempts = %d, want %d", got.Attempts, maxGuesses)
	}
}

func testUseSecretConcurrent(t *testing.T, s gatehouse.Store) {
	const n = 20
	now := baseTime()
	sec := mustCreateSecret(t, s, newSecret(gatehouse.SecretMagicLink, newID(), now))
	wins := 0
	for i, err := range concurrently(n, func(int) error {
		_, err := s.UseSecret(t.Context(), sec.Kind, sec.ID, sec.MAC, now, maxGuesses)
		return err
	}) {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, gatehouse.ErrNotFound):
			t.Errorf("use %d: %v, want nil or ErrNotFound", i, err)
		}
	}
	if wins != 1 {
		t.Errorf("%d of %d concurrent uses succeeded, want exactly 1", wins, n)
	}
}

func wantMismatch(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, gatehouse.ErrMismatch) {
		t.Errorf("%s: err = %v, want ErrMismatch", what, err)
	}
}

// testUseSecretOf: wrong codes are counted, a right one after them works
// once and reports the attempts it had.
func testUseSecretOf(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	subject := "email:code@example.com"
	sec := newSecret(gatehouse.SecretMagicCode, subject, now)
	sec.Data = "code@example.com"
	mustCreateSecret(t, s, sec)
	// Neighbours that must not be touched: another kind, another subject.
	otherKind := mustCreateSecret(t, s, newSecret(gatehouse.SecretMagicLink, subject, now))
	otherSubject := mustCreateSecret(t, s, newSecret(gatehouse.SecretMagicCode, "email:other@example.com", now))

	useOf := func(kind gatehouse.SecretKind, subject string, mac []byte, at time.Time) (gatehouse.OneTimeSecret, error) {
		return s.UseSecretOf(t.Context(), kind, subject, mac, at, maxGuesses)
	}
	_, err := useOf(sec.Kind, "email:nobody@example.com", sec.MAC, now)
	wantNotFound(t, "UseSecretOf(unknown subject)", err)
	_, err = useOf(gatehouse.SecretVerifyEmail, subject, sec.MAC, now)
	wantNotFound(t, "UseSecretOf(kind without a secret)", err)
	_, err = useOf(sec.Kind, subject, sec.MAC, sec.ExpiresAt)
	wantNotFound(t, "UseSecretOf(at ExpiresAt)", err)
	// Another kind's MAC under this kind is a wrong guess, not a use.
	_, err = useOf(sec.Kind, subject, otherKind.MAC, now)
	wantMismatch(t, "UseSecretOf(another secret's MAC)", err)
	for i := 2; i < maxGuesses; i++ {
		_, err = useOf(sec.Kind, subject, randomBytes(32), now)
		wantMismatch(t, fmt.Sprintf("UseSecretOf(wrong guess %d)", i), err)
	}

	got, err := useOf(sec.Kind, subject, sec.MAC, now.Add(time.Minute))
	if err != nil {
		t.Fatalf("UseSecretOf(right code after %d wrong): %v", maxGuesses-1, err)
	}
	want := sec
	want.Attempts = maxGuesses - 1
	checkSecret(t, "UseSecretOf result (as stored before)", got, want)

	_, err = useOf(sec.Kind, subject, sec.MAC, now.Add(time.Minute))
	wantNotFound(t, "UseSecretOf(right code again)", err)
	_, err = useOf(sec.Kind, subject, randomBytes(32), now.Add(time.Minute))
	wantNotFound(t, "UseSecretOf(wrong code after the use)", err)
	if usable(t, s, sec, now) {
		t.Errorf("UseSecret by id works after UseSecretOf used the secret")
	}

	if got, err := s.UseSecret(t.Context(), otherKind.Kind, otherKind.ID, otherKind.MAC, now, maxGuesses); err != nil {
		t.Errorf("UseSecret(the other kind's secret): %v", err)
	} else if got.Attempts != 0 {
		t.Errorf("the other kind's secret has %d attempts, want 0", got.Attempts)
	}
	if got, err := s.UseSecret(t.Context(), otherSubject.Kind, otherSubject.ID, otherSubject.MAC, now, maxGuesses); err != nil {
		t.Errorf("UseSecret(the other subject's secret): %v", err)
	} else if got.Attempts != 0 {
		t.Errorf("the other subject's secret has %d attempts, want 0", got.Attempts)
	}
}

// testUseSecretOfDies: maxGuesses wrong codes kill the secret, for the
// right code too, and by id as well.
func testUseSecretOfDies(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	sec := mustCreateSecret(t, s, newSecret(gatehouse.SecretMagicCode, newID(), now))
	for i := 1; i <= maxGuesses; i++ {
		_, err := s.UseSecretOf(t.Context(), sec.Kind, sec.Subject, randomBytes(32), now, maxGuesses)
		wantMismatch(t, fmt.Sprintf("UseSecretOf(wrong guess %d)", i), err)
	}
	_, err := s.UseSecretOf(t.Context(), sec.Kind, sec.Subject, randomBytes(32), now, maxGuesses)
	wantNotFound(t, "UseSecretOf(wrong guess past the limit)", err)
	_, err = s.UseSecretOf(t.Context(), sec.Kind, sec.Subject, sec.MAC, now, maxGuesses)
	wantNotFound(t, "UseSecretOf(right code past the limit)", err)
	_, err = s.UseSecret(t.Context(), sec.Kind, sec.ID, sec.MAC, now, maxGuesses)
	wantNotFound(t, "UseSecret(right code past the limit)", err)

	// Past the limit nothing more was counted: under a higher limit the
	// secret has exactly maxGuesses attempts.
	got, err := s.UseSecret(t.Context(), sec.Kind, sec.ID, sec.MAC, now, maxGuesses+10)
	if err != nil {
		t.Fatalf("UseSecret(under a higher limit): %v", err)
	}
	if got.Attempts != maxGuesses {
		t.Errorf("Attempts = %d, want %d", got.Attempts, maxGuesses)
	}
}

// testUseSecretOfConcurrentWrong: of many simultaneous wrong guesses,
// exactly maxGuesses are counted; the others find the secret dead.
func testUseSecretOfConcurrentWrong(t *testing.T, s gatehouse.Store) {
	const n = 20
	for round := range 3 {
		now := baseTime()
		sec := mustCreateSecret(t, s, newSecret(gatehouse.SecretMagicCode, newID(), now))
		mismatches := 0
		for i, err := range concurrently(n, func(int) error {
			_, err := s.UseSecretOf(t.Context(), sec.Kind, sec.Subject, randomBytes(32), now, maxGuesses)
			return err
		}) {
			switch {
			case errors.Is(err, gatehouse.ErrMismatch):
				mismatches++
			case !errors.Is(err, gatehouse.ErrNotFound):
				t.Errorf("round %d: guess %d: %v, want ErrMismatch or ErrNotFound", round, i, err)
			}
		}
		if mismatches != maxGuesses {
			t.Errorf("round %d: %d of %d concurrent wrong guesses counted, want %d", round, mismatches, n, maxGuesses)
		}
		_, err := s.UseSecretOf(t.Context(), sec.Kind, sec.Subject, sec.MAC, now, maxGuesses)
		wantNotFound(t, fmt.Sprintf("round %d: UseSecretOf(right code after the wrong ones)", round), err)
		got, err := s.UseSecret(t.Context(), sec.Kind, sec.ID, sec.MAC, now, 1000)
		if err != nil {
			t.Fatalf("round %d: UseSecret(under a high limit): %v", round, err)
		}
		if got.Attempts != maxGuesses {
			t.Errorf("round %d: Attempts = %d, want %d", round, got.Attempts, maxGuesses)
		}
	}
}

// testUseSecretOfConcurrentRight: among simultaneous guesses, right and
// wrong, the right code is used exactly once.
func testUseSecretOfConcurrentRight(t *testing.T, s gatehouse.Store) {
	const n = 20
	const limit = 1000 // wrong guesses cannot kill it here
	now := baseTime()
	sec := mustCreateSecret(t, s, newSecret(gatehouse.SecretMagicCode, newID(), now))
	right := func(i int) bool { return i%2 == 0 }
	wins := 0
	for i, err := range concurrently(n, func(i int) error {
		mac := randomBytes(32)
		if right(i) {
			mac = sec.MAC
		}
		_, err := s.UseSecretOf(t.Context(), sec.Kind, sec.Subject, mac, now, limit)
		return err
	}) {
		switch {
		case err == nil && right(i):
			wins++
		case err == nil:
			t.Errorf("guess %d: a wrong code succeeded", i)
		case right(i) && !errors.Is(err, gatehouse.ErrNotFound):
			t.Errorf("guess %d (right): %v, want nil or ErrNotFound", i, err)
		case !right(i) && !errors.Is(err, gatehouse.ErrNotFound) && !errors.Is(err, gatehouse.ErrMismatch):
			t.Errorf("guess %d (wrong): %v, want ErrMismatch or ErrNotFound", i, err)
		}
	}
	if wins != 1 {
		t.Errorf("%d right guesses succeeded, want exactly 1", wins)
	}
}

func testDeleteSecrets(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	u1, u2 := newID(), newID()
	reset1 := mustCreateSecret(t, s, newSecret(gatehouse.SecretResetPassword, u1, now))
	verify1 := mustCreateSecret(t, s, newSecret(gatehouse.SecretVerifyEmail, u1, now))
	reset2 := mustCreateSecret(t, s, newSecret(gatehouse.SecretResetPassword, u2, now))

	if err := s.DeleteSecrets(t.Context(), gatehouse.SecretResetPassword, u1); err != nil {
		t.Fatalf("DeleteSecrets: %v", err)
	}
	if usable(t, s, reset1, now) {
		t.Errorf("a deleted secret is usable")
	}
	if !usable(t, s, verify1, now) {
		t.Errorf("DeleteSecrets deleted a secret of another kind")
	}
	if !usable(t, s, reset2, now) {
		t.Errorf("DeleteSecrets deleted a secret of another subject")
	}
	// Nothing left to delete is not an error.
	if err := s.DeleteSecrets(t.Context(), gatehouse.SecretResetPassword, u1); err != nil {
		t.Errorf("DeleteSecrets(nothing left): %v", err)
	}
}

func testPruneSecrets(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	expired := newSecret(gatehouse.SecretMagicLink, newID(), now.Add(-2*time.Hour))
	expired.ExpiresAt = now.Add(-time.Minute)
	mustCreateSecret(t, s, expired)
	live := mustCreateSecret(t, s, newSecret(gatehouse.SecretMagicLink, newID(), now))

	if err := s.PruneSecrets(t.Context(), now); err != nil {
		t.Fatalf("PruneSecrets: %v", err)
	}
	// Asked as of a time before it expired, a pruned secret is still gone.
	if usable(t, s, expired, expired.CreatedAt) {
		t.Errorf("an expired secret survived PruneSecrets")
	}
	if !usable(t, s, live, now) {
		t.Errorf("PruneSecrets deleted a live secret")
	}
}
