// Package storetest is the conformance suite for gatehouse.Store. Every
// backend runs the same tests, unchanged, so that the service above can rely
// on the documented contract and not on whichever backend it happens to run on:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) gatehouse.Store {
//			s := open(t) // a fresh, empty store
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The suite checks observable behaviour only (no SQL), including the
// concurrency guarantees refresh-token rotation depends on.
package storetest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
)

// Run runs the whole suite. newStore must return a fresh, empty store on each
// call and register its own cleanup with t.Cleanup. Subtests run one after
// another, so a backend may share one server between them.
func Run(t *testing.T, newStore func(t *testing.T) gatehouse.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s gatehouse.Store)
	}{
		{"Ping", testPing},

		{"UserRoundTrip", testUserRoundTrip},
		{"UserTimesUTCMicro", testUserTimesUTCMicro},
		{"UserNotFound", testUserNotFound},
		{"UserDuplicateID", testUserDuplicateID},
		{"EmailCaseInsensitive", testEmailCaseInsensitive},
		{"EmailUnicodeCase", testEmailUnicodeCase},
		{"EmailNoPatternMatching", testEmailNoPatternMatching},
		{"EmailTakenConcurrent", testEmailTakenConcurrent},
		{"ListUsers", testListUsers},
		{"SetPasswordHash", testSetPasswordHash},
		{"UpdateUserFields", testUpdateUserFields},
		{"UpdateUserTokensValidAfter", testUpdateUserTokensValidAfter},

		{"SessionRoundTrip", testSessionRoundTrip},
		{"SessionNotFound", testSessionNotFound},
		{"RotateSession", testRotateSession},
		{"RotateSessionWrongGen", testRotateSessionWrongGen},
		{"RotateSessionRevoked", testRotateSessionRevoked},
		{"RotateSessionExpired", testRotateSessionExpired},
		{"RotateSessionIdle", testRotateSessionIdle},
		{"RotateSessionUserDisabled", testRotateSessionUserDisabled},
		{"RotateSessionReturnsCurrentUser", testRotateSessionReturnsCurrentUser},
		{"RotateSessionConcurrent", testRotateSessionConcurrent},
		{"RotateSessionConstantStorage", testRotateSessionConstantStorage},
		{"ConcurrentWritersAndReaders", testConcurrentWritersAndReaders},
		{"TouchSession", testTouchSession},
		{"ListSessions", testListSessions},
		{"RevokeSession", testRevokeSession},
		{"RevokeSessionConcurrent", testRevokeSessionConcurrent},
		{"RevokeUserSessions", testRevokeUserSessions},
		{"CreateSessionVersion", testCreateSessionVersion},
		{"CreateSessionDisabledOrUnknown", testCreateSessionDisabledOrUnknown},
		{"CreateSessionRacesPasswordChange", testCreateSessionRacesPasswordChange},
		{"RehashPassword", testRehashPassword},
		{"SetPasswordHashCompareAndSwap", testSetPasswordHashCompareAndSwap},
		{"DeleteEndedSessions", testDeleteEndedSessions},

		{"RevocationsAfter", testRevocationsAfter},
		{"RevocationSeqNotReused", testRevocationSeqNotReused},
		{"RevocationSeqConcurrent", testRevocationSeqConcurrent},
		{"PruneRevocations", testPruneRevocations},
		{"SigningKeys", testSigningKeys},

		{"SessionAMRAndEmailVerifiedThroughRotation", testNewFieldsThroughRotation},
		{"SetEmailVerified", testSetEmailVerified},
		{"ChangeEmail", testChangeEmail},

		{"SecretRoundTrip", testSecretRoundTrip},
		{"CreateSecretVoidsOlder", testCreateSecretVoidsOlder},
		{"CreateSecretConcurrent", testCreateSecretConcurrent},
		{"UseSecretRefusals", testUseSecretRefusals},
		{"UseSecretConcurrent", testUseSecretConcurrent},
		{"UseSecretOf", testUseSecretOf},
		{"UseSecretOfDies", testUseSecretOfDies},
		{"UseSecretOfConcurrentWrong", testUseSecretOfConcurrentWrong},
		{"UseSecretOfConcurrentRight", testUseSecretOfConcurrentRight},
		{"DeleteSecrets", testDeleteSecrets},
		{"PruneSecrets", testPruneSecrets},

		{"TOTPPendingConfirm", testTOTPPendingConfirm},
		{"ConfirmTOTPReplacesCodes", testConfirmTOTPReplacesCodes},
		{"ConfirmTOTPConcurrent", testConfirmTOTPConcurrent},
		{"UseTOTPStep", testUseTOTPStep},
		{"UseTOTPStepConcurrent", testUseTOTPStepConcurrent},
		{"DeleteTOTP", testDeleteTOTP},
		{"RecoveryCodes", testRecoveryCodes},
		{"UseRecoveryCodeConcurrent", testUseRecoveryCodeConcurrent},
		{"ReplaceRecoveryCodesConcurrent", testReplaceRecoveryCodesConcurrent},
		{"TOTPEnabled", testTOTPEnabled},
		{"SpendSecretAttempt", testSpendSecretAttempt},
		{"SpendSecretAttemptConcurrent", testSpendSecretAttemptConcurrent},

		{"PasskeyRoundTrip", testPasskeyRoundTrip},
		{"PasskeysListAndCount", testPasskeysListAndCount},
		{"PasskeyByCredentialID", testPasskeyByCredentialID},
		{"CreatePasskeyRefusals", testCreatePasskeyRefusals},
		{"UpdatePasskeyUse", testUpdatePasskeyUse},
		{"UpdatePasskeyUseConcurrent", testUpdatePasskeyUseConcurrent},
		{"DeletePasskey", testDeletePasskey},

		{"IdPs", testIdPs},
		{"AuditRoundTrip", testAuditRoundTrip},
		{"AuditOrderAndPaging", testAuditOrderAndPaging},
		{"AuditFilters", testAuditFilters},
		{"PruneAudit", testPruneAudit},
		{"AuditAppendConcurrent", testAuditAppendConcurrent},

		{"ClaimMail", testClaimMail},
		{"EnqueueMailWithSecrets", testEnqueueMailWithSecrets},
		{"CreateUserWithMail", testCreateUserWithMail},
		{"EnqueueMailClaimed", testEnqueueMailClaimed},
		{"ClaimMailLease", testClaimMailLease},
		{"ClaimMailConcurrent", testClaimMailConcurrent},
		{"RetryMail", testRetryMail},
		{"DeleteMail", testDeleteMail},

		{"APIKeyRoundTrip", testAPIKeyRoundTrip},
		{"APIKeysList", testAPIKeysList},
		{"RevokeAPIKey", testRevokeAPIKey},
		{"RevokeAPIKeyConcurrent", testRevokeAPIKeyConcurrent},
		{"APIKeyLimit", testAPIKeyLimit},
		{"TouchAPIKeys", testTouchAPIKeys},
		{"UpdateUserKeepingAdmin", testUpdateUserKeepingAdmin},
		{"UpdateUserKeepingAdminConcurrent", testUpdateUserKeepingAdminConcurrent},

		{"OAuthClientRoundTrip", testOAuthClientRoundTrip},
		{"OAuthClientNotFound", testOAuthClientNotFound},
		{"OAuthClientsOldestFirst", testOAuthClientsOldestFirst},
		{"OAuthDeleteClient", testOAuthDeleteClient},
		{"OAuthConsentUpsert", testOAuthConsentUpsert},
		{"OAuthConsentUnknownUserOrClient", testOAuthConsentUnknownUserOrClient},
		{"OAuthConsentsOfUser", testOAuthConsentsOfUser},
		{"OAuthDeleteConsent", testOAuthDeleteConsent},
		{"OAuthSessionFields", testOAuthSessionFields},
		{"OAuthClientSessionIDs", testOAuthClientSessionIDs},
		{"SecretByID", testSecretByID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

func testPing(t *testing.T, s gatehouse.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// --- fixtures ---------------------------------------------------------------

// newID returns 128 random bits in hex, like the ids the service generates;
// lower-case hex also sorts the same under every collation, so ListUsers'
// order is checked on byte order and nothing else.
func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

// baseTime is "now" as a store can keep it: UTC, whole microseconds, no
// monotonic reading.
func baseTime() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func newUser(email string) gatehouse.User {
	return gatehouse.User{
		ID:           newID(),
		Email:        email,
		Name:         "Test User",
		Role:         gatehouse.RoleUser,
		PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
		CreatedAt:    baseTime(),
		Version:      1,
	}
}

func mustCreateUser(t *testing.T, s gatehouse.Store, email string) gatehouse.User {
	t.Helper()
	u := newUser(email)
	if err := s.CreateUser(t.Context(), u); err != nil {
		t.Fatalf("CreateUser(%q): %v", email, err)
	}
	return u
}

// newSession returns a fresh generation-1 session created at now, live for
// 30 days.
func newSession(userID string, now time.Time) gatehouse.Session {
	return gatehouse.Session{
		ID:         newID(),
		UserID:     userID,
		Gen:        1,
		CreatedAt:  now,
		RotatedAt:  now,
		LastUsedAt: now,
		ExpiresAt:  now.Add(30 * 24 * time.Hour),
		UserAgent:  "storetest/1.0 (X11; Linux)",
		IP:         "192.0.2.10",
		Transport:  gatehouse.TransportCookie,
		AMR:        []string{"pwd"},
	}
}

func mustCreateSession(t *testing.T, s gatehouse.Store, sess gatehouse.Session) gatehouse.Session {
	t.Helper()
	u, err := s.UserByID(t.Context(), sess.UserID)
	if err != nil {
		t.Fatalf("CreateSession(%s): read its user: %v", sess.ID, err)
	}
	if err := s.CreateSession(t.Context(), sess, u.Version); err != nil {
		t.Fatalf("CreateSession(%s): %v", sess.ID, err)
	}
	return sess
}

func mustSession(t *testing.T, s gatehouse.Store, id string) gatehouse.Session {
	t.Helper()
	got, err := s.SessionByID(t.Context(), id)
	if err != nil {
		t.Fatalf("SessionByID(%s): %v", id, err)
	}
	return got
}

func mustUser(t *testing.T, s gatehouse.Store, id string) gatehouse.User {
	t.Helper()
	got, err := s.UserByID(t.Context(), id)
	if err != nil {
		t.Fatalf("UserByID(%s): %v", id, err)
	}
	return got
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, gatehouse.ErrNotFound) {
		t.Errorf("%s: got error %v, want ErrNotFound", what, err)
	}
}

// --- comparisons ------------------------------------------------------------

// timeDiff describes how got differs from want, or returns "". A store must
// return UTC times holding at least microseconds; expected values finer than
// that may come back exact, or truncated or rounded to the microsecond.
func timeDiff(got, want time.Time) string {
	if want.IsZero() {
		if !got.IsZero() {
			return fmt.Sprintf("got %v, want zero", got)
		}
		return ""
	}
	if got.Location() != time.UTC {
		return fmt.Sprintf("got %v in location %q, want UTC", got, got.Location())
	}
	if !got.Equal(want) && !got.Equal(want.Truncate(time.Microsecond)) && !got.Equal(want.Round(time.Microsecond)) {
		return fmt.Sprintf("got %v, want %v", got, want.UTC())
	}
	return ""
}

type diffs []string

func (d *diffs) str(field, got, want string) {
	if got != want {
		*d = append(*d, fmt.Sprintf("%s: got %q, want %q", field, got, want))
	}
}

func (d *diffs) time(field string, got, want time.Time) {
	if s := timeDiff(got, want); s != "" {
		*d = append(*d, field+": "+s)
	}
}

func (d *diffs) any(field string, got, want any) {
	if got != want {
		*d = append(*d, fmt.Sprintf("%s: got %v, want %v", field, got, want))
	}
}

func checkUser(t *testing.T, what string, got, want gatehouse.User) {
	t.Helper()
	var d diffs
	d.str("ID", got.ID, want.ID)
	d.str("Email", got.Email, want.Email)
	d.str("Name", got.Name, want.Name)
	d.str("Role", string(got.Role), string(want.Role))
	d.str("PasswordHash", got.PasswordHash, want.PasswordHash)
	d.any("Disabled", got.Disabled, want.Disabled)
	d.time("CreatedAt", got.CreatedAt, want.CreatedAt)
	d.time("TokensValidAfter", got.TokensValidAfter, want.TokensValidAfter)
	d.any("EmailVerified", got.EmailVerified, want.EmailVerified)
	d.any("TOTPEnabled", got.TOTPEnabled, want.TOTPEnabled)
	for _, s := range d {
		t.Errorf("%s: user %s", what, s)
	}
}

func checkSession(t *testing.T, what string, got, want gatehouse.Session) {
	t.Helper()
	var d diffs
	d.str("ID", got.ID, want.ID)
	d.str("UserID", got.UserID, want.UserID)
	d.any("Gen", got.Gen, want.Gen)
	d.time("CreatedAt", got.CreatedAt, want.CreatedAt)
	d.time("RotatedAt", got.RotatedAt, want.RotatedAt)
	d.time("LastUsedAt", got.LastUsedAt, want.LastUsedAt)
	d.time("ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	d.time("RevokedAt", got.RevokedAt, want.RevokedAt)
	d.str("RevokeReason", got.RevokeReason, want.RevokeReason)
	d.str("UserAgent", got.UserAgent, want.UserAgent)
	d.str("IP", got.IP, want.IP)
	d.str("Transport", string(got.Transport), string(want.Transport))
	d.str("ClientID", got.ClientID, want.ClientID)
	d.str("Scope", got.Scope, want.Scope)
	d.str("CertThumbprint", got.CertThumbprint, want.CertThumbprint)
	d.str("ParentID", got.ParentID, want.ParentID)
	// nil and empty are the same: no methods.
	if !slices.Equal(got.AMR, want.AMR) && (len(got.AMR) != 0 || len(want.AMR) != 0) {
		d = append(d, fmt.Sprintf("AMR: got %q, want %q", got.AMR, want.AMR))
	}
	for _, s := range d {
		t.Errorf("%s: session %s", what, s)
	}
}

func sessionIDs(ss []gatehouse.Session) []string {
	ids := make([]string, len(ss))
	for i, s := range ss {
		ids[i] = s.ID
	}
	return ids
}

// concurrently runs fn(0..n-1) in n goroutines released at the same instant
// and returns their errors by index. Tests assert on the results afterwards
// because t.Fatal must not be called from other goroutines.
func concurrently(n int, fn func(i int) error) []error {
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}
