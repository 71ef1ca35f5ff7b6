package auth_test

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/revoke"
)

// These tests pin down the check-then-act paths of sign-in: a login reads
// the user, spends a long time on the password hash, then creates a session
// and signs. Whatever changes the user in between (role, disabled,
// password) must win.

// gatedHasher pauses the next Verify once armed, after the hash is checked
// and before the caller acts on it, so a test can change the user exactly
// in that window.
type gatedHasher struct {
	auth.Hasher
	armed   atomic.Bool
	paused  chan struct{}
	release chan struct{}
}

func newGatedHasher(h auth.Hasher) *gatedHasher {
	return &gatedHasher{Hasher: h, paused: make(chan struct{}), release: make(chan struct{})}
}

func (h *gatedHasher) Verify(ctx context.Context, pw, encoded string) (bool, bool, error) {
	ok, rehash, err := h.Hasher.Verify(ctx, pw, encoded)
	if h.armed.CompareAndSwap(true, false) {
		h.paused <- struct{}{}
		<-h.release
	}
	return ok, rehash, err
}

type loginResult struct {
	grant auth.Grant
	err   error
}

// pausedLogin starts a login that stops right after its password check and
// returns a function that lets it finish and reports its outcome.
func pausedLogin(t *testing.T, svc *auth.Service, h *gatedHasher, email, pw string) func() loginResult {
	t.Helper()
	h.armed.Store(true)
	done := make(chan loginResult, 1)
	go func() {
		g, err := svc.Login(context.Background(), auth.LoginInput{Email: email, Password: pw}, client)
		done <- loginResult{g, err}
	}()
	select {
	case <-h.paused:
	case r := <-done:
		t.Fatalf("login finished without reaching the password check: %v", r.err)
	}
	return func() loginResult {
		h.release <- struct{}{}
		return <-done
	}
}

const passphrase = "a long and unusual passphrase"

func gatedService(t *testing.T) (*auth.Service, *clock, *gatedHasher, gatehouse.Store) {
	t.Helper()
	var h *gatedHasher
	svc, clk, st := newServiceWith(t, func(d *auth.Deps) {
		h = newGatedHasher(d.Hasher)
		d.Hasher = h
	})
	return svc, clk, h, st
}

func TestLoginOverlappingDemotionGetsTheNewRole(t *testing.T) {
	svc, _, h, _ := gatedService(t)
	ctx := context.Background()
	admin, err := svc.CreateUser(ctx, "admin@example.com", "", passphrase, gatehouse.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	// Another admin, so that the demotion is not refused as the last.
	if _, err := svc.CreateUser(ctx, "second.admin@example.com", "", passphrase, gatehouse.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	finish := pausedLogin(t, svc, h, "admin@example.com", passphrase)
	user := gatehouse.RoleUser
	if _, err := svc.UpdateUser(ctx, admin.ID, &user, nil); err != nil {
		t.Fatalf("demote: %v", err)
	}
	r := finish()
	if r.err != nil {
		// Refusing the login would be safe too, but the password is
		// still right: the login should go through on the fresh row.
		t.Fatalf("login overlapping a role change: %v", r.err)
	}
	p, err := svc.Authenticate(ctx, r.grant.AccessToken)
	if err == nil && p.Role != gatehouse.RoleUser {
		t.Fatalf("token from a login that overlapped the demotion works with role %q", p.Role)
	}
	if err != nil {
		t.Fatalf("token of the login after the demotion refused: %v", err)
	}
}

func TestLoginOverlappingDisableFails(t *testing.T) {
	svc, _, h, st := gatedService(t)
	ctx := context.Background()
	g := signup(t, svc, "ada@example.com")
	finish := pausedLogin(t, svc, h, "ada@example.com", passphrase)
	yes := true
	if _, err := svc.UpdateUser(ctx, g.User.ID, nil, &yes); err != nil {
		t.Fatalf("disable: %v", err)
	}
	r := finish()
	if !errors.Is(r.err, auth.ErrInvalidCredentials) {
		t.Fatalf("login overlapping a disable = %v, want ErrInvalidCredentials", r.err)
	}
	live, err := st.ListSessions(ctx, g.User.ID, time.Now().Add(-time.Hour), time.Now().Add(-48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != 0 {
		t.Fatalf("a disabled user has %d live sessions", len(live))
	}
}

func TestLoginOverlappingPasswordChangeFails(t *testing.T) {
	svc, _, h, _ := gatedService(t)
	ctx := context.Background()
	g := signup(t, svc, "ada@example.com")
	caller, err := svc.Authenticate(ctx, g.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	finish := pausedLogin(t, svc, h, "ada@example.com", passphrase)
	const next = "another long and unusual passphrase"
	if err := svc.ChangePassword(ctx, caller, passphrase, next); err != nil {
		t.Fatalf("change password: %v", err)
	}
	r := finish()
	if !errors.Is(r.err, auth.ErrInvalidCredentials) {
		t.Fatalf("login with the old password overlapping a password change = %v, want ErrInvalidCredentials", r.err)
	}
	if _, err := svc.Authenticate(ctx, g.AccessToken); err != nil {
		t.Fatalf("the session that changed the password was ended: %v", err)
	}
}

func TestRehashOverlappingPasswordChangeKeepsTheNewPassword(t *testing.T) {
	svc, _, h, st := gatedService(t)
	ctx := context.Background()
	g := signup(t, svc, "ada@example.com")
	legacy, err := bcrypt.GenerateFromPassword([]byte(passphrase), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetPasswordHash(ctx, g.User.ID, "", string(legacy)); err != nil {
		t.Fatal(err)
	}
	// A fresh session after the import, to change the password from.
	g2, err := svc.Login(ctx, auth.LoginInput{Email: "ada@example.com", Password: passphrase}, client)
	if err != nil {
		t.Fatal(err)
	}
	// That login upgraded the hash; put bcrypt back for the race.
	if err := st.SetPasswordHash(ctx, g.User.ID, "", string(legacy)); err != nil {
		t.Fatal(err)
	}
	caller, err := svc.Authenticate(ctx, g2.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	finish := pausedLogin(t, svc, h, "ada@example.com", passphrase)
	const next = "another long and unusual passphrase"
	if err := svc.ChangePassword(ctx, caller, passphrase, next); err != nil {
		t.Fatalf("change password: %v", err)
	}
	if r := finish(); r.err == nil {
		t.Errorf("login with the old password overlapping the change succeeded")
	}
	if _, err := svc.Login(ctx, auth.LoginInput{Email: "ada@example.com", Password: next}, client); err != nil {
		t.Errorf("the new password no longer works after the overlapping login: %v", err)
	}
	if _, err := svc.Login(ctx, auth.LoginInput{Email: "ada@example.com", Password: passphrase}, client); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("the old password works again: %v", err)
	}
}

// slowUpdateStore runs a hook just before the next UpdateUser reaches the
// database, to simulate an update that takes long to commit.
type slowUpdateStore struct {
	gatehouse.Store
	before atomic.Pointer[func()]
}

func (s *slowUpdateStore) UpdateUser(ctx context.Context, id string, role *gatehouse.Role, disabled *bool, tva time.Time) (gatehouse.User, error) {
	if f := s.before.Swap(nil); f != nil {
		(*f)()
	}
	return s.Store.UpdateUser(ctx, id, role, disabled, tva)
}

// UpdateUserKeepingAdmin is the write a role change makes; hooked alike.
func (s *slowUpdateStore) UpdateUserKeepingAdmin(ctx context.Context, id string, role *gatehouse.Role, disabled *bool, tva time.Time) (gatehouse.User, error) {
	if f := s.before.Swap(nil); f != nil {
		(*f)()
	}
	return s.Store.UpdateUserKeepingAdmin(ctx, id, role, disabled, tva)
}

// TestSlowDemotionStillRevokesLoginsBeforeIt: a login that read the user
// and signed while a demotion was still on its way to the database (seconds
// after the demotion took its clock reading) must not keep the old role.
func TestSlowDemotionStillRevokesLoginsBeforeIt(t *testing.T) {
	var slow *slowUpdateStore
	svc, clk, _ := newServiceWith(t, func(d *auth.Deps) {
		slow = &slowUpdateStore{Store: d.Store}
		d.Store = slow
	})
	ctx := context.Background()
	admin, err := svc.CreateUser(ctx, "admin@example.com", "", passphrase, gatehouse.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	// Another admin, so that the demotion is not refused as the last.
	if _, err := svc.CreateUser(ctx, "second.admin@example.com", "", passphrase, gatehouse.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	var early auth.Grant
	hook := func() {
		clk.Advance(3 * time.Second)
		g, err := svc.Login(ctx, auth.LoginInput{Email: "admin@example.com", Password: passphrase}, client)
		if err != nil {
			t.Errorf("login before the demotion commits: %v", err)
		}
		early = g
	}
	slow.before.Store(&hook)
	user := gatehouse.RoleUser
	if _, err := svc.UpdateUser(ctx, admin.ID, &user, nil); err != nil {
		t.Fatalf("demote: %v", err)
	}
	if early.AccessToken == "" {
		t.Fatal("the hook did not run")
	}
	if p, err := svc.Authenticate(ctx, early.AccessToken); err == nil {
		t.Fatalf("token signed before the demotion committed still works, with role %q", p.Role)
	}
}

func TestCutoffAheadIsCapped(t *testing.T) {
	svc, clk, st := newServiceWith(t, nil)
	ctx := context.Background()
	g := signup(t, svc, "ada@example.com")
	// Another admin, so that demoting ada is never refused as the last.
	if _, err := svc.CreateUser(ctx, "second.admin@example.com", "", "another long unusual passphrase", gatehouse.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	limited := 0
	roles := []gatehouse.Role{gatehouse.RoleAdmin, gatehouse.RoleUser}
	for i := range 20 {
		_, err := svc.UpdateUser(ctx, g.User.ID, &roles[i%2], nil)
		var rl *auth.RateLimitError
		switch {
		case errors.As(err, &rl):
			limited++
			if rl.RetryAfter <= 0 {
				t.Fatalf("rate limited without a Retry-After: %v", rl.RetryAfter)
			}
		case err != nil:
			t.Fatalf("role change %d: %v", i, err)
		}
	}
	if limited == 0 {
		t.Fatal("20 role changes in the same instant all pushed the cutoff further ahead")
	}
	// The next login's token is stamped at the cutoff: it must still be
	// covered by a session revocation made now, whose entry must outlive it.
	g2, err := svc.Login(ctx, auth.LoginInput{Email: "ada@example.com", Password: passphrase}, client)
	if err != nil {
		t.Fatal(err)
	}
	p, err := svc.Authenticate(ctx, g2.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Logout(ctx, g2.User.ID, g2.Session.ID, auth.ScopeLocal); err != nil {
		t.Fatal(err)
	}
	// Past now + AccessTTL + leeway + 1s (when a revocation entry made now
	// expired), but before the token stops verifying at exp + leeway (it
	// was stamped at the cutoff, seconds ahead): an instance starting now
	// loads the revocation log and must still reject the token.
	clk.Advance(10*time.Minute + 35*time.Second)
	if p.IssuedAt.Add(10*time.Minute + 30*time.Second).Before(clk.Now()) {
		t.Fatalf("test setup: the token (iat %v) has already expired at %v", p.IssuedAt, clk.Now())
	}
	restarted := revoke.New(st, nil, revoke.Config{StaleAfter: 24 * time.Hour, Now: clk.Now}, slog.New(slog.DiscardHandler))
	rctx, cancel := context.WithCancel(ctx)
	if err := restarted.Start(rctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); restarted.Wait() })
	if err := restarted.Check(p.SessionID, p.UserID, p.IssuedAt); !errors.Is(err, revoke.ErrRevoked) {
		t.Fatalf("after a restart, a logged-out token whose iat lies at the pushed cutoff passes the revocation check: %v", err)
	}
}

func TestLogoutNeedsALiveSession(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	g := signup(t, svc, "ada@example.com")
	if err := svc.Logout(ctx, g.User.ID, g.Session.ID, auth.ScopeLocal); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.SessionFromRefresh(ctx, g.RefreshToken); !errors.Is(err, auth.ErrInvalidRefresh) {
		t.Fatalf("the refresh token of a logged-out session identifies it for logout: %v", err)
	}
}

func TestDeleteEndedSessionsKeepsLiveOnes(t *testing.T) {
	svc, clk, st := newServiceWith(t, nil)
	ctx := context.Background()
	ended := signup(t, svc, "ended@example.com")
	live := signup(t, svc, "live@example.com")
	if err := svc.Logout(ctx, ended.User.ID, ended.Session.ID, auth.ScopeLocal); err != nil {
		t.Fatal(err)
	}
	const retention = 30 * time.Minute
	if n, err := svc.DeleteEndedSessions(ctx, retention); err != nil || n != 0 {
		t.Fatalf("a session ended just now was deleted (n=%d, err=%v)", n, err)
	}
	clk.Advance(retention + time.Minute)
	// Keep the live session live: it refreshes within its idle lifetime.
	if _, err := st.SessionByID(ctx, live.Session.ID); err != nil {
		t.Fatal(err)
	}
	if err := st.TouchSession(ctx, live.Session.ID, clk.Now().UTC()); err != nil {
		t.Fatal(err)
	}
	n, err := svc.DeleteEndedSessions(ctx, retention)
	if err != nil || n != 1 {
		t.Fatalf("DeleteEndedSessions after the retention period = %d, %v; want the one ended session", n, err)
	}
	if _, err := st.SessionByID(ctx, ended.Session.ID); !errors.Is(err, gatehouse.ErrNotFound) {
		t.Errorf("the ended session is still stored: %v", err)
	}
	if _, err := st.SessionByID(ctx, live.Session.ID); err != nil {
		t.Errorf("a live session was deleted: %v", err)
	}
}
