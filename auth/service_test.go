package auth_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/password"
	"github.com/gatehouse/gatehouse/ratelimit"
	"github.com/gatehouse/gatehouse/revoke"
	"github.com/gatehouse/gatehouse/sealbox"
	"github.com/gatehouse/gatehouse/store/sqlite"
	"github.com/gatehouse/gatehouse/token"
)

// clock is a settable clock shared by the service, the revoker and the
// limiter, so expiry and grace windows are tested without sleeping.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type nopObserver struct{}

func (nopObserver) Login(string)        {}
func (nopObserver) Refresh(string)      {}
func (nopObserver) Revoked(string, int) {}

const (
	grace  = 10 * time.Second
	idle   = time.Hour
	maxAge = 3 * time.Hour
)

func newService(t *testing.T) (*auth.Service, *clock) {
	t.Helper()
	svc, clk, _ := newServiceWith(t, nil)
	return svc, clk
}

// newServiceWith builds a service on a fresh SQLite file; adjust, when not
// nil, may wrap its dependencies (a gated hasher, a store with hooks).
func newServiceWith(t *testing.T, adjust func(*auth.Deps)) (*auth.Service, *clock, *sqlite.Store) {
	t.Helper()
	return newServiceConfig(t, func(_ *auth.Config, d *auth.Deps) {
		if adjust != nil {
			adjust(d)
		}
	})
}

// newServiceConfig is newServiceWith with the configuration adjustable too.
// Mail goes to a recording mailer (mailbox) unless adjust replaces it.
func newServiceConfig(t testing.TB, adjust func(*auth.Config, *auth.Deps)) (*auth.Service, *clock, *sqlite.Store) {
	t.Helper()
	ctx := context.Background()
	clk := &clock{now: time.Now().UTC()}
	st, err := sqlite.Open(ctx, t.TempDir()+"/gh.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, err := token.NewKeys(st, token.Config{
		Algorithm: token.AlgEdDSA, Issuer: "https://issuer.test", Audience: "aud",
		TTL: 10 * time.Minute, Leeway: 30 * time.Second, SealKey: make([]byte, 32),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.Load(ctx, clk.Now()); err != nil {
		t.Fatal(err)
	}
	codec, err := token.NewRefreshCodec([]byte(strings.Repeat("r", 32)))
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := token.NewSecretCodec([]byte(strings.Repeat("s", 32)))
	if err != nil {
		t.Fatal(err)
	}
	totpBox, err := sealbox.New([]byte(strings.Repeat("t", 32)))
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	rctx, cancel := context.WithCancel(ctx)
	rev := revoke.New(st, nil, revoke.Config{StaleAfter: 24 * time.Hour, Now: clk.Now}, logger)
	if err := rev.Start(rctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); rev.Wait() })
	deps := auth.Deps{
		Store: st, Signer: keys, RefreshCodec: codec,
		Hasher:  password.NewHasher(password.DefaultParams(), 2, 16),
		Revoker: rev, Limiter: ratelimit.NewMemory(clk.Now), Observer: nopObserver{},
		Logger: logger, Now: clk.Now,
		Secrets: st, Emails: st, SecretCodec: secrets, Mailer: &mailbox{secrets: st},
		MFA: st, Attempts: st, TOTPBox: totpBox, RecoveryKey: []byte(strings.Repeat("c", 32)),
	}
	cfg := auth.Config{
		Issuer: "https://issuer.test", Audience: "aud", AccessTTL: 10 * time.Minute,
		IdleTTL: idle, MaxAge: maxAge, ReuseGrace: grace, Leeway: 30 * time.Second,
		PublicURL: "https://auth.test", TOTPIssuer: "Gatehouse",
	}
	if adjust != nil {
		adjust(&cfg, &deps)
	}
	svc := auth.New(cfg, deps)
	t.Cleanup(svc.Close)
	return svc, clk, st
}

var client = auth.Client{IP: "192.0.2.1", UserAgent: "test", Transport: gatehouse.TransportBody}

func signup(t *testing.T, svc *auth.Service, email string) auth.Grant {
	t.Helper()
	g, err := svc.Signup(context.Background(), auth.SignupInput{Email: email, Password: "a long and unusual passphrase"}, client)
	if err != nil {
		t.Fatalf("signup: %v", err)
	}
	return g
}

func TestRotationGraceAndReuse(t *testing.T) {
	svc, clk := newService(t)
	ctx := context.Background()
	g0 := signup(t, svc, "ada@example.com")
	other := signup(t, svc, "bob@example.com")

	g1, err := svc.Refresh(ctx, g0.RefreshToken, client)
	if err != nil {
		t.Fatalf("first refresh: %v", err)
	}
	if g1.RefreshToken == g0.RefreshToken {
		t.Fatal("refresh did not rotate")
	}
	// Within the grace window the predecessor converges on the same successor.
	clk.Advance(grace - time.Second)
	replay, err := svc.Refresh(ctx, g0.RefreshToken, client)
	if err != nil || replay.RefreshToken != g1.RefreshToken {
		t.Fatalf("grace replay = %q, %v; want the same successor %q", replay.RefreshToken, err, g1.RefreshToken)
	}
	// Past the window the predecessor is theft: the session dies, with its
	// newest refresh token and its access tokens.
	clk.Advance(2 * time.Second)
	if _, err := svc.Refresh(ctx, g0.RefreshToken, client); !errors.Is(err, auth.ErrRefreshReused) {
		t.Fatalf("reuse after grace: %v, want ErrRefreshReused", err)
	}
	if _, err := svc.Refresh(ctx, g1.RefreshToken, client); err == nil {
		t.Fatal("newest token of a reused session still refreshes")
	}
	if _, err := svc.Authenticate(ctx, g1.AccessToken); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("access token of a reused session: %v, want ErrInvalidToken", err)
	}
	// Another user's session is untouched.
	if _, err := svc.Authenticate(ctx, other.AccessToken); err != nil {
		t.Fatalf("other session affected: %v", err)
	}
}

func TestForgedTokenRevokesNothing(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	g := signup(t, svc, "ada@example.com")
	sid, _, _ := strings.Cut(g.RefreshToken, ".")
	for _, forged := range []string{
		sid + ".AAAAAAAAAAGBcs9ZWRakR_IevG9DKv7fgtgTh-dDGT7LKcLLT10WEQ",
		sid + ".",
		g.RefreshToken[:len(g.RefreshToken)-1],
		"garbage",
	} {
		if _, err := svc.Refresh(ctx, forged, client); !errors.Is(err, auth.ErrInvalidRefresh) {
			t.Fatalf("forged %q: %v, want ErrInvalidRefresh", forged, err)
		}
	}
	if _, err := svc.Refresh(ctx, g.RefreshToken, client); err != nil {
		t.Fatalf("genuine token after forgeries: %v", err)
	}
}

func TestIdleAndAbsoluteExpiry(t *testing.T) {
	svc, clk := newService(t)
	ctx := context.Background()
	g := signup(t, svc, "ada@example.com")
	clk.Advance(idle + time.Second)
	if _, err := svc.Refresh(ctx, g.RefreshToken, client); !errors.Is(err, auth.ErrInvalidRefresh) {
		t.Fatalf("idle session: %v, want ErrInvalidRefresh", err)
	}

	g = signup(t, svc, "bob@example.com")
	// Keep it busy, but past the absolute lifetime it ends anyway.
	tok := g.RefreshToken
	for i := 0; i < 4; i++ {
		clk.Advance(maxAge/4 + time.Second)
		next, err := svc.Refresh(ctx, tok, client)
		if i == 3 {
			if !errors.Is(err, auth.ErrInvalidRefresh) {
				t.Fatalf("past max age: %v, want ErrInvalidRefresh", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
		tok = next.RefreshToken
	}
}

func TestRoleChangesInOneSecondRevokeTheTokenBetweenThem(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	g := signup(t, svc, "ada@example.com")
	before, err := svc.Authenticate(ctx, g.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := svc.Me(ctx, before); err != nil || u.Role != gatehouse.RoleUser {
		t.Fatalf("Me before promotion: role %q, %v", u.Role, err)
	}
	admin := gatehouse.RoleAdmin
	if _, err := svc.UpdateUser(ctx, g.User.ID, &admin, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Authenticate(ctx, g.AccessToken); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("token from before the promotion: %v, want ErrInvalidToken", err)
	}
	promoted, err := svc.Refresh(ctx, g.RefreshToken, client)
	if err != nil {
		t.Fatal(err)
	}
	p, err := svc.Authenticate(ctx, promoted.AccessToken)
	if err != nil || p.Role != gatehouse.RoleAdmin {
		t.Fatalf("promoted token: %+v, %v", p, err)
	}
	// Me reads through a cache, which must not serve the user as read
	// before the promotion to a token issued after it.
	if u, err := svc.Me(ctx, p); err != nil || u.Role != gatehouse.RoleAdmin {
		t.Fatalf("Me after promotion: role %q, %v; want admin", u.Role, err)
	}
	// Another admin, so that this one is not the last (ErrLastAdmin).
	if _, err := svc.CreateUser(ctx, "second.admin@example.com", "", "another long unusual passphrase", gatehouse.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	user := gatehouse.RoleUser
	if _, err := svc.UpdateUser(ctx, g.User.ID, &user, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Authenticate(ctx, promoted.AccessToken); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("admin token after demotion: %v, want ErrInvalidToken", err)
	}
}

func TestLoginAnswersAlikeForUnknownWrongAndDisabled(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	signup(t, svc, "ada@example.com")
	signup(t, svc, "off@example.com")
	off, err := svc.Store.UserByEmail(ctx, "off@example.com")
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	if _, err := svc.UpdateUser(ctx, off.ID, nil, &yes); err != nil {
		t.Fatal(err)
	}
	for _, in := range []auth.LoginInput{
		{Email: "nobody@example.com", Password: "a long and unusual passphrase"},
		{Email: "ada@example.com", Password: "a wrong passphrase entirely"},
		{Email: "off@example.com", Password: "a long and unusual passphrase"},
	} {
		if _, err := svc.Login(ctx, in, client); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("login %s: %v, want ErrInvalidCredentials", in.Email, err)
		}
	}
	if _, err := svc.Login(ctx, auth.LoginInput{Email: "ADA@example.com", Password: "a long and unusual passphrase"}, client); err != nil {
		t.Fatalf("case-insensitive login: %v", err)
	}

}

func TestStoredUserAgentIsValidUTF8(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	c := client
	c.UserAgent = "Mozilla\xff\xfe/5.0"
	g, err := svc.Signup(ctx, auth.SignupInput{Email: "ua@example.com", Password: "a long and unusual passphrase"}, c)
	if err != nil {
		t.Fatalf("signup with a non-UTF-8 User-Agent: %v", err)
	}
	sess, err := svc.Store.SessionByID(ctx, g.Session.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !utf8.ValidString(sess.UserAgent) || !strings.HasPrefix(sess.UserAgent, "Mozilla") {
		t.Fatalf("stored user agent %q is not valid UTF-8", sess.UserAgent)
	}
}

func TestDisableRetryEndsSessions(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	g := signup(t, svc, "ada@example.com")
	yes := true
	if _, err := svc.UpdateUser(ctx, g.User.ID, nil, &yes); err != nil {
		t.Fatal(err)
	}
	// Disabling an already disabled user (an admin's retry) still leaves
	// no live session behind.
	if _, err := svc.UpdateUser(ctx, g.User.ID, nil, &yes); err != nil {
		t.Fatal(err)
	}
	list, err := svc.Sessions(ctx, g.User.ID)
	if err != nil || len(list) != 0 {
		t.Fatalf("sessions of a disabled user: %d, %v", len(list), err)
	}
	if _, err := svc.Refresh(ctx, g.RefreshToken, client); !errors.Is(err, auth.ErrInvalidRefresh) {
		t.Fatalf("refresh of a disabled user: %v", err)
	}
}

// Successful logins do not use up the account's budget; failures do, and
// once it is spent even the right password is refused.
func TestAccountBudgetCountsFailures(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	signup(t, svc, "ada@example.com")
	rate := ratelimit.Rate{Limit: 3, Period: time.Hour}
	// The same collaborators, with a login limit.
	svc2 := auth.New(auth.Config{
		Issuer: "https://issuer.test", Audience: "aud", AccessTTL: 10 * time.Minute,
		IdleTTL: idle, MaxAge: maxAge, ReuseGrace: grace, Leeway: 30 * time.Second, LoginRate: rate,
	}, svc.Deps)
	good := auth.LoginInput{Email: "ada@example.com", Password: "a long and unusual passphrase"}
	bad := auth.LoginInput{Email: "ada@example.com", Password: "not the passphrase at all"}
	for i := range 6 {
		c := client
		c.IP = fmt.Sprintf("192.0.2.%d", i+10) // a fresh IP each time: only the account limit applies
		if _, err := svc2.Login(ctx, good, c); err != nil {
			t.Fatalf("successful login %d: %v", i, err)
		}
	}
	for i := range 3 {
		c := client
		c.IP = fmt.Sprintf("198.51.100.%d", i+10)
		if _, err := svc2.Login(ctx, bad, c); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("failed login %d: %v", i, err)
		}
	}
	c := client
	c.IP = "203.0.113.99"
	var rl *auth.RateLimitError
	if _, err := svc2.Login(ctx, good, c); !errors.As(err, &rl) {
		t.Fatalf("after 3 failures with a limit of 3: %v, want rate limited", err)
	}
}
