// Package auth is the Gatehouse service: sign-up, login, refresh-token
// rotation with reuse detection, logout, sessions, password change and the
// admin operations. It knows nothing of HTTP; it speaks the domain types of
// package gatehouse and returns the errors of errors.go.
//
// One file per way in or concern: password.go (sign-up, login, password
// change), refresh.go (rotation), session.go (the one place sessions start
// and end, which every sign-in method funnels into), admin.go, and
// retention.go. This file holds the service's wiring and shared helpers.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/audit"
	"github.com/gatehouse/gatehouse/password"
	"github.com/gatehouse/gatehouse/ratelimit"
	"github.com/gatehouse/gatehouse/sealbox"
	"github.com/gatehouse/gatehouse/token"
	"github.com/go-webauthn/webauthn/webauthn"
)

// Revocation reasons recorded on sessions.
const (
	ReasonLogout         = "logout"
	ReasonReuse          = "reuse"
	ReasonPasswordChange = "password_change"
	ReasonAdmin          = "admin"
	ReasonDisabled       = "disabled"
	ReasonPasswordReset  = "password_reset"
)

// Authentication methods recorded on sessions and in the amr claim
// (RFC 8176 names).
const (
	MethodPassword = "pwd"
	MethodEmail    = "email"
)

// Logout scopes.
const (
	ScopeLocal  = "local"
	ScopeOthers = "others"
	ScopeGlobal = "global"
)

// Signer issues and verifies access tokens (token.Keys).
type Signer interface {
	Sign(c token.Claims) (string, error)
	Verify(ctx context.Context, raw string, now time.Time) (token.Claims, error)
	// For the OAuth provider: tokens issued to clients carry their
	// audience; ID tokens are signed with the same keys.
	VerifyAnyAudience(ctx context.Context, raw string, now time.Time) (token.Claims, error)
	SignIDToken(iat time.Time, build func(alg string) any) (string, error)
	ParseIDTokenHint(raw string, now time.Time) (map[string]any, error)
}

// Hasher hashes and verifies passwords with bounded concurrency (password.Hasher).
type Hasher interface {
	Hash(ctx context.Context, pw string) (string, error)
	Verify(ctx context.Context, pw, encoded string) (ok, needsRehash bool, err error)
	VerifyDummy(ctx context.Context, pw string) error
}

// Revoker keeps the revocation sets every access token is checked against (revoke.Revoker).
type Revoker interface {
	Record(ctx context.Context, revs ...gatehouse.Revocation)
	Check(sessionID, userID string, issuedAt time.Time) error
	CheckAPIKey(id string) error
	CheckToken(jti string) error
}

// Observer counts what the service does, for metrics. Results are short
// snake_case words such as "ok", "invalid", "reused", "grace"; Revoked
// counts revocations (sessions ended, or one user-wide cutoff).
type Observer interface {
	Login(result string)
	Refresh(result string)
	Revoked(reason string, sessions int)
}

// Config holds the lifetimes and limits of the service.
type Config struct {
	Issuer, Audience string
	AccessTTL        time.Duration
	IdleTTL          time.Duration // refresh token unused this long ends the session
	MaxAge           time.Duration // absolute session lifetime
	ReuseGrace       time.Duration
	Leeway           time.Duration // clock leeway of access-token checks
	LoginRate        ratelimit.Rate
	RefreshRate      ratelimit.Rate
	SignupRate       ratelimit.Rate
	// Mail flows.
	PublicURL            string         // base of links in mail
	RequireVerifiedEmail bool           // password login needs a verified email
	MagicLinkSignup      bool           // a magic link to an unknown address creates the account
	MailRate             ratelimit.Rate // mail sent per address
	MailIPRate           ratelimit.Rate // mail-sending requests per client IP
	TOTPIssuer           string         // the issuer named in otpauth:// URIs
	APIKeyRate           ratelimit.Rate // failed API-key attempts per client IP
}

// Deps are the collaborators of the service, wired in main.
type Deps struct {
	Store        gatehouse.Store
	Signer       Signer
	RefreshCodec *token.RefreshCodec
	Hasher       Hasher
	Revoker      Revoker
	Limiter      ratelimit.Limiter
	Observer     Observer
	Logger       *slog.Logger
	Now          func() time.Time

	// Mail flows. Mailer may be nil only where no flow sends mail (tools).
	Secrets     gatehouse.SecretStore
	Emails      gatehouse.EmailStore
	SecretCodec *token.SecretCodec
	Mailer      Mailer

	// Second factors.
	MFA         gatehouse.MFAStore
	Attempts    gatehouse.SecretAttempts
	TOTPBox     *sealbox.Box
	RecoveryKey []byte

	// Passkeys; WebAuthn nil switches them off (404 not_configured).
	Passkeys gatehouse.PasskeyStore
	WebAuthn *webauthn.WebAuthn

	// External identity providers; a nil IdP.Store switches them off.
	IdP IdPDeps
	// API keys; nil switches them off.
	APIKeyStore gatehouse.APIKeyStore
	APIKeyCodec *token.APIKeyCodec
	// Audit records security events; nil records none (tools).
	Audit *audit.Recorder
	// OAuth provider; a nil OAuth.Store switches it off.
	OAuth OAuthDeps
}

// Service implements every Gatehouse operation.
type Service struct {
	Deps
	cfg   Config
	users *userCache
	// API keys: cached rows and owners, uses awaiting their batched
	// write, addresses that spent their budget of failed attempts.
	keys     *keyCache
	keyUses  *keyUsage
	keyGuard *keyGuard
	// jobs bounds the work some requests hand to the background (mail for
	// forgot-password and magic links, done after the answer so that its
	// duration reveals nothing); wg lets Close wait for it.
	jobs chan struct{}
	wg   sync.WaitGroup
}

// maxBackgroundJobs bounds the background work in flight; past it the work
// runs in the request, which is slower but loses nothing.
const maxBackgroundJobs = 64

// New returns a Service.
func New(cfg Config, deps Deps) *Service {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	return &Service{Deps: deps, cfg: cfg, users: newUserCache(), jobs: make(chan struct{}, maxBackgroundJobs),
		keys: newKeyCache(), keyUses: newKeyUsage(), keyGuard: newKeyGuard()}
}

// Close waits for background work to finish.
func (s *Service) Close() { s.wg.Wait() }

// background runs f after the request, with a context that outlives it but
// not a stuck backend.
func (s *Service) background(ctx context.Context, f func(context.Context)) {
	ctx, cancel := detach(ctx)
	select {
	case s.jobs <- struct{}{}:
		s.wg.Go(func() {
			defer func() { <-s.jobs; cancel() }()
			f(ctx)
		})
	default:
		defer cancel()
		f(ctx)
	}
}

// Client describes the caller of a request: where it comes from, what it
// runs, and how it wants its refresh token delivered.
type Client struct {
	IP        string
	UserAgent string
	Transport gatehouse.Transport
}

// Grant is the result of signup, login and refresh.
type Grant struct {
	AccessToken  string
	ExpiresIn    time.Duration
	Session      gatehouse.Session
	User         gatehouse.User
	RefreshToken string
	// RefreshExpiresAt is when the refresh token stops working if unused:
	// the earlier of idle and absolute expiry.
	RefreshExpiresAt time.Time
}

// Principal is the verified caller of a Bearer-authenticated request: an
// access token (SessionID set) or an API key (APIKeyID set, SessionID
// empty, Role the owner's current role).
type Principal struct {
	UserID    string
	SessionID string
	Role      gatehouse.Role
	// IssuedAt is the token's iat; for an API key, the instant its owner's
	// role and state were known current.
	IssuedAt time.Time
	APIKeyID string
	// Scopes of an API key (admin-only ones only while the owner is an
	// admin) or of an OAuth client's own token; empty for access tokens.
	Scopes []string
	// ClientID is set for an OAuth client's own token (client_credentials;
	// UserID and SessionID empty).
	ClientID string
}

func (s *Service) now() time.Time { return s.Now().UTC().Truncate(time.Microsecond) }

func (s *Service) limit(ctx context.Context, key string, r ratelimit.Rate) error {
	if r.Off() {
		return nil
	}
	res, err := s.Limiter.Allow(ctx, key, r)
	if err != nil {
		// The limiter degrades to in-process state by itself; an error
		// here means even that failed, and refusing every login over it
		// would be worse than not limiting one request.
		s.Logger.Warn("rate limiter", "key_kind", key[:min(len(key), 12)], "err", err)
		return nil
	}
	if !res.Allowed {
		return &RateLimitError{RetryAfter: res.RetryAfter}
	}
	return nil
}

// refund gives back the attempt of an account that proved its password,
// so per-account budgets count failures only.
func (s *Service) refund(ctx context.Context, key string, r ratelimit.Rate) {
	if r.Off() {
		return
	}
	if err := s.Limiter.Refund(ctx, key, r); err != nil {
		s.Logger.Warn("rate limit refund", "err", err)
	}
}

func (s *Service) hashError(err error) error {
	if errors.Is(err, password.ErrBusy) {
		return ErrBusy
	}
	return fmt.Errorf("password hashing: %w", err)
}

func newSessionID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary so stored strings stay valid UTF-8.
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// ceilSecond rounds t up to a whole second.
func ceilSecond(t time.Time) time.Time {
	if f := t.Truncate(time.Second); !f.Equal(t) {
		return f.Add(time.Second)
	}
	return t
}

// detach gives security-relevant writes a context that outlives the
// client's request but not a stuck backend.
func detach(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
}

// ipLimitKey is the rate-limit key of a client address: IPv6 clients are
// keyed by their /64, which one subscriber typically holds whole, so that
// stepping through its addresses does not reset the budget.
func ipLimitKey(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil || addr.Is4() {
		return ip
	}
	return netip.PrefixFrom(addr, 64).Masked().String()
}

// accountLimitKey is the rate-limit key of a login email: a hash of its
// folded form, so keys stay short however long the typed email, and an
// unknown account is keyed exactly like a real one.
func accountLimitKey(email string) string {
	sum := sha256.Sum256([]byte(gatehouse.EmailKey(email)))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}
