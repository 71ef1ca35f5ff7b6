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

// newTOTP returns a pending factor of the user created at now, with a
// random stand-in for the sealed secret.
func newTOTP(userID string, now time.Time) gatehouse.TOTPFactor {
	return gatehouse.TOTPFactor{UserID: userID, Sealed: randomBytes(48), CreatedAt: now}
}

// newCodes returns n random recovery-code MACs.
func newCodes(n int) [][]byte {
	codes := make([][]byte, n)
	for i := range codes {
		codes[i] = randomBytes(32)
	}
	return codes
}

// mustEnrol gives the user a confirmed factor at step and the codes.
func mustEnrol(t *testing.T, s gatehouse.Store, userID string, now time.Time, step int64, codes [][]byte) gatehouse.TOTPFactor {
	t.Helper()
	f := newTOTP(userID, now)
	if err := s.PutPendingTOTP(t.Context(), f); err != nil {
		t.Fatalf("PutPendingTOTP: %v", err)
	}
	if err := s.ConfirmTOTP(t.Context(), userID, step, now, codes); err != nil {
		t.Fatalf("ConfirmTOTP: %v", err)
	}
	f.ConfirmedAt, f.LastStep = now, step
	return f
}

func checkTOTP(t *testing.T, what string, got, want gatehouse.TOTPFactor) {
	t.Helper()
	var d diffs
	d.str("UserID", got.UserID, want.UserID)
	if !bytes.Equal(got.Sealed, want.Sealed) {
		d = append(d, fmt.Sprintf("Sealed: got %x, want %x", got.Sealed, want.Sealed))
	}
	d.time("CreatedAt", got.CreatedAt, want.CreatedAt)
	d.time("ConfirmedAt", got.ConfirmedAt, want.ConfirmedAt)
	d.any("LastStep", got.LastStep, want.LastStep)
	for _, s := range d {
		t.Errorf("%s: factor %s", what, s)
	}
}

func mustTOTP(t *testing.T, s gatehouse.Store, userID string) gatehouse.TOTPFactor {
	t.Helper()
	f, err := s.TOTP(t.Context(), userID)
	if err != nil {
		t.Fatalf("TOTP(%s): %v", userID, err)
	}
	return f
}

func codesLeft(t *testing.T, s gatehouse.Store, userID string) int {
	t.Helper()
	n, err := s.RecoveryCodesLeft(t.Context(), userID)
	if err != nil {
		t.Fatalf("RecoveryCodesLeft(%s): %v", userID, err)
	}
	return n
}

// --- TOTP factor ------------------------------------------------------------

// testTOTPPendingConfirm: a pending factor is stored and replaced while
// pending; confirmation records the step and the codes once; a confirmed
// factor refuses a new pending one.
func testTOTPPendingConfirm(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	u := mustCreateUser(t, s, "totp@example.com")

	_, err := s.TOTP(t.Context(), u.ID)
	wantNotFound(t, "TOTP(no factor)", err)
	wantNotFound(t, "PutPendingTOTP(unknown user)", s.PutPendingTOTP(t.Context(), newTOTP(newID(), now)))
	wantNotFound(t, "ConfirmTOTP(no factor)", s.ConfirmTOTP(t.Context(), u.ID, 1, now, newCodes(2)))

	first := newTOTP(u.ID, now.In(time.FixedZone("UTC+2", 2*3600)))
	if err := s.PutPendingTOTP(t.Context(), first); err != nil {
		t.Fatalf("PutPendingTOTP: %v", err)
	}
	checkTOTP(t, "pending factor", mustTOTP(t, s, u.ID), first)

	// Enrolment started again before it was confirmed: the new secret wins.
	second := newTOTP(u.ID, now.Add(time.Minute))
	if err := s.PutPendingTOTP(t.Context(), second); err != nil {
		t.Fatalf("PutPendingTOTP(replace pending): %v", err)
	}
	checkTOTP(t, "replaced pending factor", mustTOTP(t, s, u.ID), second)
	wantNotFound(t, "UseTOTPStep(pending factor)", s.UseTOTPStep(t.Context(), u.ID, 1000))

	codes := newCodes(10)
	at := now.Add(2 * time.Minute)
	if err := s.ConfirmTOTP(t.Context(), u.ID, 1000, at, codes); err != nil {
		t.Fatalf("ConfirmTOTP: %v", err)
	}
	want := second
	want.ConfirmedAt, want.LastStep = at, 1000
	checkTOTP(t, "confirmed factor", mustTOTP(t, s, u.ID), want)
	if n := codesLeft(t, s, u.ID); n != len(codes) {
		t.Errorf("RecoveryCodesLeft after confirmation = %d, want %d", n, len(codes))
	}

	wantNotFound(t, "ConfirmTOTP(already confirmed)", s.ConfirmTOTP(t.Context(), u.ID, 2000, at.Add(time.Minute), newCodes(10)))
	wantStale(t, "PutPendingTOTP(confirmed factor)", s.PutPendingTOTP(t.Context(), newTOTP(u.ID, at)))
	// Neither refusal changed the factor or its codes.
	checkTOTP(t, "factor after refusals", mustTOTP(t, s, u.ID), want)
	if err := s.UseRecoveryCode(t.Context(), u.ID, codes[0], at); err != nil {
		t.Errorf("UseRecoveryCode(a code of the confirmation): %v", err)
	}
}

// testConfirmTOTPReplacesCodes: confirmation replaces codes the user had
// before (a factor removed and enrolled again), used or not.
func testConfirmTOTPReplacesCodes(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	u := mustCreateUser(t, s, "reenrol@example.com")
	old := newCodes(3)
	if err := s.ReplaceRecoveryCodes(t.Context(), u.ID, old); err != nil {
		t.Fatalf("ReplaceRecoveryCodes: %v", err)
	}
	if err := s.UseRecoveryCode(t.Context(), u.ID, old[0], now); err != nil {
		t.Fatalf("UseRecoveryCode: %v", err)
	}
	fresh := newCodes(10)
	mustEnrol(t, s, u.ID, now, 7, fresh)
	if n := codesLeft(t, s, u.ID); n != len(fresh) {
		t.Errorf("RecoveryCodesLeft = %d, want %d", n, len(fresh))
	}
	for i, c := range old[1:] {
		wantNotFound(t, fmt.Sprintf("UseRecoveryCode(old code %d)", i+1), s.UseRecoveryCode(t.Context(), u.ID, c, now))
	}
	if err := s.UseRecoveryCode(t.Context(), u.ID, fresh[9], now); err != nil {
		t.Errorf("UseRecoveryCode(new code): %v", err)
	}
}

// testConfirmTOTPConcurrent: of concurrent confirmations of one pending
// factor exactly one succeeds, and its codes are the ones left.
func testConfirmTOTPConcurrent(t *testing.T, s gatehouse.Store) {
	const n = 10
	now := baseTime()
	u := mustCreateUser(t, s, "confirm-race@example.com")
	if err := s.PutPendingTOTP(t.Context(), newTOTP(u.ID, now)); err != nil {
		t.Fatalf("PutPendingTOTP: %v", err)
	}
	sets := make([][][]byte, n)
	for i := range sets {
		sets[i] = newCodes(3)
	}
	winner := -1
	for i, err := range concurrently(n, func(i int) error {
		return s.ConfirmTOTP(t.Context(), u.ID, int64(100+i), now, sets[i])
	}) {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Errorf("confirmations %d and %d both succeeded", winner, i)
			}
			winner = i
		case !errors.Is(err, gatehouse.ErrNotFound):
			t.Errorf("confirm %d: %v, want nil or ErrNotFound", i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("no concurrent confirmation succeeded")
	}
	if got := mustTOTP(t, s, u.ID).LastStep; got != int64(100+winner) {
		t.Errorf("LastStep = %d, want the winner's %d", got, 100+winner)
	}
	if n := codesLeft(t, s, u.ID); n != 3 {
		t.Errorf("RecoveryCodesLeft = %d, want 3 (the winner's)", n)
	}
	for i, set := range sets {
		err := s.UseRecoveryCode(t.Context(), u.ID, set[0], now)
		if i == winner && err != nil {
			t.Errorf("UseRecoveryCode(the winner's code): %v", err)
		}
		if i != winner {
			wantNotFound(t, fmt.Sprintf("UseRecoveryCode(code of losing confirmation %d)", i), err)
		}
	}
}

// testUseTOTPStep: only a step newer than the last accepted one is
// accepted; the same or an older step is ErrStale; no confirmed factor is
// ErrNotFound.
func testUseTOTPStep(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	u := mustCreateUser(t, s, "steps@example.com")
	other := mustCreateUser(t, s, "other-steps@example.com")
	wantNotFound(t, "UseTOTPStep(no factor)", s.UseTOTPStep(t.Context(), u.ID, 1))
	wantNotFound(t, "UseTOTPStep(unknown user)", s.UseTOTPStep(t.Context(), newID(), 1))
	f := mustEnrol(t, s, u.ID, now, 1000, newCodes(1))
	mustEnrol(t, s, other.ID, now, 1000, newCodes(1))

	wantStale(t, "UseTOTPStep(the confirmation's step)", s.UseTOTPStep(t.Context(), u.ID, 1000))
	wantStale(t, "UseTOTPStep(older step)", s.UseTOTPStep(t.Context(), u.ID, 999))
	if err := s.UseTOTPStep(t.Context(), u.ID, 1001); err != nil {
		t.Fatalf("UseTOTPStep(newer step): %v", err)
	}
	wantStale(t, "UseTOTPStep(same step again)", s.UseTOTPStep(t.Context(), u.ID, 1001))
	wantStale(t, "UseTOTPStep(the step before)", s.UseTOTPStep(t.Context(), u.ID, 1000))
	// Steps may jump (a code from the next window, drift).
	if err := s.UseTOTPStep(t.Context(), u.ID, 1003); err != nil {
		t.Fatalf("UseTOTPStep(two steps on): %v", err)
	}
	wantStale(t, "UseTOTPStep(a skipped step)", s.UseTOTPStep(t.Context(), u.ID, 1002))
	f.LastStep = 1003
	checkTOTP(t, "factor after uses", mustTOTP(t, s, u.ID), f)
	if got := mustTOTP(t, s, other.ID).LastStep; got != 1000 {
		t.Errorf("another user's LastStep = %d, want 1000 (untouched)", got)
	}
}

// testUseTOTPStepConcurrent: of concurrent uses of one code (one step)
// exactly one succeeds; the others are ErrStale.
func testUseTOTPStepConcurrent(t *testing.T, s gatehouse.Store) {
	const n = 20
	u := mustCreateUser(t, s, "step-race@example.com")
	mustEnrol(t, s, u.ID, baseTime(), 1000, newCodes(1))
	wins := 0
	for i, err := range concurrently(n, func(int) error { return s.UseTOTPStep(t.Context(), u.ID, 1001) }) {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, gatehouse.ErrStale):
			t.Errorf("use %d: %v, want nil or ErrStale", i, err)
		}
	}
	if wins != 1 {
		t.Errorf("%d of %d concurrent uses of one step succeeded, want exactly 1", wins, n)
	}
}

// testDeleteTOTP: the factor goes with its recovery codes; deleting nothing
// is no error; enrolment can start again.
func testDeleteTOTP(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	u := mustCreateUser(t, s, "delete-totp@example.com")
	other := mustCreateUser(t, s, "keep-totp@example.com")
	codes := newCodes(10)
	mustEnrol(t, s, u.ID, now, 1000, codes)
	otherCodes := newCodes(10)
	otherF := mustEnrol(t, s, other.ID, now, 1000, otherCodes)

	if err := s.DeleteTOTP(t.Context(), u.ID); err != nil {
		t.Fatalf("DeleteTOTP: %v", err)
	}
	_, err := s.TOTP(t.Context(), u.ID)
	wantNotFound(t, "TOTP(deleted)", err)
	wantNotFound(t, "UseTOTPStep(deleted)", s.UseTOTPStep(t.Context(), u.ID, 2000))
	if n := codesLeft(t, s, u.ID); n != 0 {
		t.Errorf("RecoveryCodesLeft after DeleteTOTP = %d, want 0", n)
	}
	wantNotFound(t, "UseRecoveryCode(after DeleteTOTP)", s.UseRecoveryCode(t.Context(), u.ID, codes[0], now))

	if err := s.DeleteTOTP(t.Context(), u.ID); err != nil {
		t.Errorf("DeleteTOTP(nothing left): %v", err)
	}
	if err := s.DeleteTOTP(t.Context(), newID()); err != nil {
		t.Errorf("DeleteTOTP(unknown user): %v", err)
	}
	// Another user's factor and codes are untouched.
	checkTOTP(t, "another user's factor", mustTOTP(t, s, other.ID), otherF)
	if n := codesLeft(t, s, other.ID); n != len(otherCodes) {
		t.Errorf("another user's RecoveryCodesLeft = %d, want %d", n, len(otherCodes))
	}
	// A new enrolment after removal starts pending.
	again := newTOTP(u.ID, now.Add(time.Minute))
	if err := s.PutPendingTOTP(t.Context(), again); err != nil {
		t.Fatalf("PutPendingTOTP after DeleteTOTP: %v", err)
	}
	checkTOTP(t, "new pending factor", mustTOTP(t, s, u.ID), again)
}

// --- recovery codes ---------------------------------------------------------

// testRecoveryCodes: each code works once and only for its user; a
// replacement kills every old code; the count is of unused codes.
func testRecoveryCodes(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	u := mustCreateUser(t, s, "codes@example.com")
	other := mustCreateUser(t, s, "other-codes@example.com")
	if n := codesLeft(t, s, u.ID); n != 0 {
		t.Errorf("RecoveryCodesLeft(none) = %d, want 0", n)
	}
	codes := newCodes(10)
	mustEnrol(t, s, u.ID, now, 1, codes)
	otherCodes := newCodes(10)
	mustEnrol(t, s, other.ID, now, 1, otherCodes)

	if err := s.UseRecoveryCode(t.Context(), u.ID, bytes.Clone(codes[3]), now); err != nil {
		t.Fatalf("UseRecoveryCode: %v", err)
	}
	wantNotFound(t, "UseRecoveryCode(used)", s.UseRecoveryCode(t.Context(), u.ID, codes[3], now.Add(time.Second)))
	if n := codesLeft(t, s, u.ID); n != 9 {
		t.Errorf("RecoveryCodesLeft after one use = %d, want 9", n)
	}
	wrong := bytes.Clone(codes[4])
	wrong[len(wrong)-1] ^= 1
	wantNotFound(t, "UseRecoveryCode(wrong MAC)", s.UseRecoveryCode(t.Context(), u.ID, wrong, now))
	wantNotFound(t, "UseRecoveryCode(MAC prefix)", s.UseRecoveryCode(t.Context(), u.ID, codes[4][:16], now))
	wantNotFound(t, "UseRecoveryCode(no MAC)", s.UseRecoveryCode(t.Context(), u.ID, nil, now))
	wantNotFound(t, "UseRecoveryCode(another user's code)", s.UseRecoveryCode(t.Context(), u.ID, otherCodes[0], now))
	wantNotFound(t, "UseRecoveryCode(unknown user)", s.UseRecoveryCode(t.Context(), newID(), codes[4], now))
	if n := codesLeft(t, s, u.ID); n != 9 {
		t.Errorf("RecoveryCodesLeft after refusals = %d, want 9", n)
	}

	fresh := newCodes(10)
	if err := s.ReplaceRecoveryCodes(t.Context(), u.ID, fresh); err != nil {
		t.Fatalf("ReplaceRecoveryCodes: %v", err)
	}
	if n := codesLeft(t, s, u.ID); n != 10 {
		t.Errorf("RecoveryCodesLeft after replacement = %d, want 10", n)
	}
	for i, c := range codes {
		wantNotFound(t, fmt.Sprintf("UseRecoveryCode(replaced code %d)", i), s.UseRecoveryCode(t.Context(), u.ID, c, now))
	}
	for i, c := range fresh {
		if err := s.UseRecoveryCode(t.Context(), u.ID, c, now); err != nil {
			t.Errorf("UseRecoveryCode(new code %d): %v", i, err)
		}
	}
	if n := codesLeft(t, s, u.ID); n != 0 {
		t.Errorf("RecoveryCodesLeft after using all = %d, want 0", n)
	}
	if n := codesLeft(t, s, other.ID); n != 10 {
		t.Errorf("another user's RecoveryCodesLeft = %d, want 10", n)
	}
	// Replacing with none leaves none.
	if err := s.ReplaceRecoveryCodes(t.Context(), other.ID, nil); err != nil {
		t.Fatalf("ReplaceRecoveryCodes(none): %v", err)
	}
	if n := codesLeft(t, s, other.ID); n != 0 {
		t.Errorf("RecoveryCodesLeft after replacing with none = %d, want 0", n)
	}
}

// testUseRecoveryCodeConcurrent: of concurrent uses of one code exactly one
// succeeds, and only that code is spent.
func testUseRecoveryCodeConcurrent(t *testing.T, s gatehouse.Store) {
	const n = 20
	now := baseTime()
	u := mustCreateUser(t, s, "code-race@example.com")
	codes := newCodes(10)
	mustEnrol(t, s, u.ID, now, 1, codes)
	wins := 0
	for i, err := range concurrently(n, func(int) error { return s.UseRecoveryCode(t.Context(), u.ID, codes[0], now) }) {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, gatehouse.ErrNotFound):
			t.Errorf("use %d: %v, want nil or ErrNotFound", i, err)
		}
	}
	if wins != 1 {
		t.Errorf("%d of %d concurrent uses of one recovery code succeeded, want exactly 1", wins, n)
	}
	if n := codesLeft(t, s, u.ID); n != 9 {
		t.Errorf("RecoveryCodesLeft = %d, want 9", n)
	}
}

// testReplaceRecoveryCodesConcurrent: after concurrent replacements exactly
// one set of codes is live.
func testReplaceRecoveryCodesConcurrent(t *testing.T, s gatehouse.Store) {
	const n = 10
	u := mustCreateUser(t, s, "replace-race@example.com")
	mustEnrol(t, s, u.ID, baseTime(), 1, newCodes(10))
	sets := make([][][]byte, n)
	for i := range sets {
		sets[i] = newCodes(10)
	}
	for i, err := range concurrently(n, func(i int) error { return s.ReplaceRecoveryCodes(t.Context(), u.ID, sets[i]) }) {
		if err != nil {
			t.Fatalf("ReplaceRecoveryCodes %d: %v", i, err)
		}
	}
	if got := codesLeft(t, s, u.ID); got != 10 {
		t.Errorf("RecoveryCodesLeft after %d concurrent replacements = %d, want 10 (one set)", n, got)
	}
}

// --- TOTPEnabled ------------------------------------------------------------

// testTOTPEnabled: every read of a user says whether a confirmed factor
// exists; a pending one does not count, and CreateUser never sets it.
func testTOTPEnabled(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	u := newUser("enabled@example.com")
	u.TOTPEnabled = true // read-only: must not be stored
	if err := s.CreateUser(t.Context(), u); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	bystander := mustCreateUser(t, s, "bystander@example.com")
	sess := mustCreateSession(t, s, newSession(u.ID, now))
	gen := uint64(1)

	check := func(stage string, want bool) {
		t.Helper()
		got := map[string]bool{}
		if v, err := s.UserByID(t.Context(), u.ID); err != nil {
			t.Fatalf("%s: UserByID: %v", stage, err)
		} else {
			got["UserByID"] = v.TOTPEnabled
		}
		if v, err := s.UserByEmail(t.Context(), u.Email); err != nil {
			t.Fatalf("%s: UserByEmail: %v", stage, err)
		} else {
			got["UserByEmail"] = v.TOTPEnabled
		}
		us, err := s.ListUsers(t.Context(), "", 100)
		if err != nil {
			t.Fatalf("%s: ListUsers: %v", stage, err)
		}
		for _, v := range us {
			switch v.ID {
			case u.ID:
				got["ListUsers"] = v.TOTPEnabled
			case bystander.ID:
				if v.TOTPEnabled {
					t.Errorf("%s: ListUsers: a user without a factor has TOTPEnabled", stage)
				}
			}
		}
		at := now.Add(time.Duration(gen) * time.Second)
		_, ru, err := s.RotateSession(t.Context(), sess.ID, gen, at, at.Add(-idleTTL))
		if err != nil {
			t.Fatalf("%s: RotateSession: %v", stage, err)
		}
		gen++
		got["RotateSession"] = ru.TOTPEnabled
		if v, err := s.UpdateUser(t.Context(), u.ID, nil, nil, time.Time{}); err != nil {
			t.Fatalf("%s: UpdateUser: %v", stage, err)
		} else {
			got["UpdateUser"] = v.TOTPEnabled
		}
		if v, err := s.SetEmailVerified(t.Context(), u.ID, u.Email); err != nil {
			t.Fatalf("%s: SetEmailVerified: %v", stage, err)
		} else {
			got["SetEmailVerified"] = v.TOTPEnabled
		}
		if v, err := s.ChangeEmail(t.Context(), u.ID, u.Email, u.Email); err != nil {
			t.Fatalf("%s: ChangeEmail: %v", stage, err)
		} else {
			got["ChangeEmail"] = v.TOTPEnabled
		}
		for _, read := range []string{"UserByID", "UserByEmail", "ListUsers", "RotateSession", "UpdateUser", "SetEmailVerified", "ChangeEmail"} {
			v, ok := got[read]
			if !ok {
				t.Errorf("%s: %s did not return the user", stage, read)
			} else if v != want {
				t.Errorf("%s: %s: TOTPEnabled = %v, want %v", stage, read, v, want)
			}
		}
	}

	check("new user", false)
	if err := s.PutPendingTOTP(t.Context(), newTOTP(u.ID, now)); err != nil {
		t.Fatalf("PutPendingTOTP: %v", err)
	}
	check("pending factor", false)
	if err := s.ConfirmTOTP(t.Context(), u.ID, 1, now, newCodes(10)); err != nil {
		t.Fatalf("ConfirmTOTP: %v", err)
	}
	check("confirmed factor", true)
	if err := s.DeleteTOTP(t.Context(), u.ID); err != nil {
		t.Fatalf("DeleteTOTP: %v", err)
	}
	check("deleted factor", false)
}

// --- mfa_token attempts -----------------------------------------------------

// testSpendSecretAttempt: each spend counts one attempt and returns the
// secret with it counted, up to the limit; a wrong MAC, kind or id, an
// expired or used secret changes nothing.
func testSpendSecretAttempt(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	sec := newSecret(gatehouse.SecretMFA, newID(), now)
	sec.Data = "pwd"
	mustCreateSecret(t, s, sec)
	spend := func(kind gatehouse.SecretKind, id string, mac []byte, at time.Time, limit int) (gatehouse.OneTimeSecret, error) {
		return s.SpendSecretAttempt(t.Context(), kind, id, mac, at, limit)
	}

	wrong := bytes.Clone(sec.MAC)
	wrong[0] ^= 1
	for what, err := range map[string]error{
		"wrong MAC":         second(spend(sec.Kind, sec.ID, wrong, now, maxGuesses)),
		"no MAC":            second(spend(sec.Kind, sec.ID, nil, now, maxGuesses)),
		"wrong kind":        second(spend(gatehouse.SecretMagicCode, sec.ID, sec.MAC, now, maxGuesses)),
		"unknown id":        second(spend(sec.Kind, newID(), sec.MAC, now, maxGuesses)),
		"at ExpiresAt":      second(spend(sec.Kind, sec.ID, sec.MAC, sec.ExpiresAt, maxGuesses)),
		"no attempts to go": second(spend(sec.Kind, sec.ID, sec.MAC, now, 0)),
	} {
		wantNotFound(t, "SpendSecretAttempt("+what+")", err)
	}

	for i := 1; i <= maxGuesses; i++ {
		got, err := spend(sec.Kind, sec.ID, bytes.Clone(sec.MAC), now, maxGuesses)
		if err != nil {
			t.Fatalf("SpendSecretAttempt %d: %v", i, err)
		}
		want := sec
		want.Attempts = i // the refusals above counted nothing
		checkSecret(t, fmt.Sprintf("SpendSecretAttempt %d", i), got, want)
	}
	_, err := spend(sec.Kind, sec.ID, sec.MAC, now, maxGuesses)
	wantNotFound(t, "SpendSecretAttempt(at the limit)", err)
	// At the limit the secret is dead for use too.
	_, err = s.UseSecret(t.Context(), sec.Kind, sec.ID, sec.MAC, now, maxGuesses)
	wantNotFound(t, "UseSecret(attempts spent)", err)

	// A used secret has no attempts left to spend.
	used := mustCreateSecret(t, s, newSecret(gatehouse.SecretMFA, newID(), now))
	if got, err := spend(used.Kind, used.ID, used.MAC, now, maxGuesses); err != nil || got.Attempts != 1 {
		t.Fatalf("SpendSecretAttempt(fresh) = Attempts %d, %v; want 1, nil", got.Attempts, err)
	}
	if _, err := s.UseSecret(t.Context(), used.Kind, used.ID, used.MAC, now, maxGuesses); err != nil {
		t.Fatalf("UseSecret(after one attempt): %v", err)
	}
	_, err = spend(used.Kind, used.ID, used.MAC, now, maxGuesses)
	wantNotFound(t, "SpendSecretAttempt(used)", err)
}

func second[T any](_ T, err error) error { return err }

// testSpendSecretAttemptConcurrent: concurrent spends on one secret never
// exceed the limit: exactly maxGuesses succeed, each with its own count.
func testSpendSecretAttemptConcurrent(t *testing.T, s gatehouse.Store) {
	const n = 20
	now := baseTime()
	sec := mustCreateSecret(t, s, newSecret(gatehouse.SecretMFA, newID(), now))
	counts := make([]int, n)
	seen := map[int]bool{}
	wins := 0
	for i, err := range concurrently(n, func(i int) error {
		got, err := s.SpendSecretAttempt(t.Context(), sec.Kind, sec.ID, sec.MAC, now, maxGuesses)
		counts[i] = got.Attempts
		return err
	}) {
		switch {
		case err == nil:
			wins++
			if seen[counts[i]] {
				t.Errorf("two spends both returned Attempts %d", counts[i])
			}
			seen[counts[i]] = true
		case !errors.Is(err, gatehouse.ErrNotFound):
			t.Errorf("spend %d: %v, want nil or ErrNotFound", i, err)
		}
	}
	if wins != maxGuesses {
		t.Errorf("%d of %d concurrent spends succeeded with a limit of %d, want exactly %d", wins, n, maxGuesses, maxGuesses)
	}
	for c := range seen {
		if c < 1 || c > maxGuesses {
			t.Errorf("a spend returned Attempts %d, want 1..%d", c, maxGuesses)
		}
	}
}
