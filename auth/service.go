// Package auth is the Gatehouse service: sign-up, login, refresh-token
// rotation with reuse detection, logout, sessions, password change and the
// admin operations. It knows nothing of HTTP; it speaks the domain types of
// package gatehouse and returns the errors of errors.go.
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
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/password"
	"github.com/gatehouse/gatehouse/ratelimit"
	"github.com/gatehouse/gatehouse/revoke"
	"github.com/gatehouse/gatehouse/token"
)

// Revocation reasons recorded on sessions.
const (
	ReasonLogout         = "logout"
	ReasonReuse          = "reuse"
	ReasonPasswordChange = "password_change"
	ReasonAdmin          = "admin"
	ReasonDisabled       = "disabled"
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
}

// Service implements every Gatehouse operation.
type Service struct {
	Deps
	cfg   Config
	users *userCache
}

// New returns a Service.
func New(cfg Config, deps Deps) *Service {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	return &Service{Deps: deps, cfg: cfg, users: newUserCache()}
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

// Principal is the verified caller of a Bearer-authenticated request.
type Principal struct {
	UserID    string
	SessionID string
	Role      gatehouse.Role
	IssuedAt  time.Time
}

func (s *Service) now() time.Time { return s.Now().UTC().Truncate(time.Microsecond) }

// MaxCutoffAhead caps how far past the clock a user's token cutoff
// (TokensValidAfter) may be pushed by changes in quick succession; a change
// that would push it further is refused as rate limited.
const MaxCutoffAhead = 10 * time.Second

// revocationExpiry is how long a session revocation made at now matters:
// until every access token of the session has expired. Tokens are stamped
// no earlier than their user's cutoff, which may lie up to MaxCutoffAhead
// (rounded up to the second) past the clock, so the latest of them expires
// that much later than a token issued now.
func (s *Service) revocationExpiry(now time.Time) time.Time {
	return now.Add(MaxCutoffAhead + time.Second + s.cfg.AccessTTL + s.cfg.Leeway + time.Second)
}

// SignupInput is a sign-up request.
type SignupInput struct {
	Email, Password, Name string
}

// Signup creates a user with role user and logs it in.
func (s *Service) Signup(ctx context.Context, in SignupInput, c Client) (Grant, error) {
	if err := s.limit(ctx, "signup:ip:"+ipLimitKey(c.IP), s.cfg.SignupRate); err != nil {
		return Grant{}, err
	}
	if err := validateSignup(in); err != nil {
		return Grant{}, err
	}
	hash, err := s.Hasher.Hash(ctx, in.Password)
	if err != nil {
		return Grant{}, s.hashError(err)
	}
	u := gatehouse.User{
		ID:           uuid.Must(uuid.NewV7()).String(),
		Email:        in.Email,
		Name:         in.Name,
		Role:         gatehouse.RoleUser,
		PasswordHash: hash,
		CreatedAt:    s.now(),
		Version:      1,
	}
	if err := s.Store.CreateUser(ctx, u); err != nil {
		return Grant{}, fmt.Errorf("signup: %w", err)
	}
	return s.startSession(ctx, u, c, nil)
}

// CreateUser creates a user directly (the operator's `user create`).
func (s *Service) CreateUser(ctx context.Context, email, name, pw string, role gatehouse.Role) (gatehouse.User, error) {
	if !role.Valid() {
		return gatehouse.User{}, invalid("role", "must be user or admin")
	}
	if err := validateSignup(SignupInput{Email: email, Name: name, Password: pw}); err != nil {
		return gatehouse.User{}, err
	}
	hash, err := s.Hasher.Hash(ctx, pw)
	if err != nil {
		return gatehouse.User{}, s.hashError(err)
	}
	u := gatehouse.User{
		ID: uuid.Must(uuid.NewV7()).String(), Email: email, Name: name, Role: role,
		PasswordHash: hash, CreatedAt: s.now(), Version: 1,
	}
	if err := s.Store.CreateUser(ctx, u); err != nil {
		return gatehouse.User{}, fmt.Errorf("create user: %w", err)
	}
	return u, nil
}

// LoginInput is a login request.
type LoginInput struct {
	Email, Password string
}

// Login checks credentials and starts a new session. Unknown email, wrong
// password and disabled account give the same error after the same work
// (one password hash), and the per-account limit is keyed by the email as
// typed, so a limited unknown account looks like a limited real one.
func (s *Service) Login(ctx context.Context, in LoginInput, c Client) (Grant, error) {
	if err := s.limit(ctx, "login:ip:"+ipLimitKey(c.IP), s.cfg.LoginRate); err != nil {
		s.Observer.Login("rate_limited")
		return Grant{}, err
	}
	// The per-account budget is spent before the password is checked, not
	// after a failure: with peek-then-count, guesses fired concurrently all
	// pass the peek before any failure is counted, so 40 parallel guesses
	// from 40 addresses got 40 password checks under a limit of 5
	// (TestAttackAccountLimitConcurrent). A successful login gets its
	// attempt back, so the budget counts failures (API.md).
	accountKey := "login:account:" + accountLimitKey(in.Email)
	if err := s.limit(ctx, accountKey, s.cfg.LoginRate); err != nil {
		s.Observer.Login("rate_limited")
		return Grant{}, err
	}
	if len(in.Password) > maxPasswordBytes {
		// Longer than any password that can have been set: refuse without
		// hashing so huge inputs cost nothing.
		s.Observer.Login("invalid")
		return Grant{}, ErrInvalidCredentials
	}
	var u gatehouse.User
	err := gatehouse.ErrNotFound
	if checkEmail(in.Email) == "" {
		// Only addresses that sign-up accepts can belong to anyone; others
		// (such as non-ASCII ones that Unicode case folding maps onto an
		// ASCII address) are treated as unknown without a lookup.
		u, err = s.Store.UserByEmail(ctx, in.Email)
	}
	ok := false
	switch {
	case errors.Is(err, gatehouse.ErrNotFound):
		if err := s.Hasher.VerifyDummy(ctx, in.Password); err != nil {
			return Grant{}, s.hashError(err)
		}
	case err != nil:
		return Grant{}, fmt.Errorf("login: %w", err)
	default:
		var rehash bool
		ok, rehash, err = s.Hasher.Verify(ctx, in.Password, u.PasswordHash)
		if err != nil && !errors.Is(err, password.ErrMalformedHash) {
			return Grant{}, s.hashError(err)
		}
		if err != nil {
			s.Logger.Error("stored password hash unusable", "user_id", u.ID, "err", err)
			ok = false
		}
		if ok && u.Disabled {
			ok = false
		}
		if ok && rehash {
			s.upgradeHash(ctx, u.ID, u.PasswordHash, in.Password)
		}
	}
	if !ok {
		// The attempt was already counted against the account above.
		s.Observer.Login("invalid")
		return Grant{}, ErrInvalidCredentials
	}
	// The password checked out against the hash read before the (slow)
	// check. If the user changed since, the session is refused by the
	// store and the sign-in is decided again on the fresh row: a new
	// password must be checked again, a disabled account fails.
	verified := u.PasswordHash
	recheck := func(ctx context.Context, fresh gatehouse.User) error {
		if fresh.PasswordHash == verified {
			return nil
		}
		ok, _, err := s.Hasher.Verify(ctx, in.Password, fresh.PasswordHash)
		if err != nil && !errors.Is(err, password.ErrMalformedHash) {
			return s.hashError(err)
		}
		if !ok {
			return ErrInvalidCredentials
		}
		verified = fresh.PasswordHash
		return nil
	}
	g, err := s.startSession(ctx, u, c, recheck)
	if err != nil {
		if errors.Is(err, ErrInvalidCredentials) {
			s.Observer.Login("invalid")
		}
		return Grant{}, err
	}
	s.refund(ctx, accountKey, s.cfg.LoginRate)
	s.Observer.Login("ok")
	return g, nil
}

// upgradeHash replaces a bcrypt or weaker argon2 hash after a successful
// login, only while the stored hash is still the one just verified: a
// password change that landed meanwhile must not be overwritten by the old
// password. A failure only postpones the upgrade to the next login.
func (s *Service) upgradeHash(ctx context.Context, userID, verifiedHash, pw string) {
	hash, err := s.Hasher.Hash(ctx, pw)
	if err == nil {
		err = s.Store.RehashPassword(ctx, userID, verifiedHash, hash)
	}
	if err != nil {
		s.Logger.Warn("password hash upgrade postponed", "user_id", userID, "err", err)
	}
}

// maxStaleSessionRetries bounds how often startSession re-reads a user that
// keeps changing under it before giving up with 503.
const maxStaleSessionRetries = 3

// startSession creates a session for u and signs its first tokens: every
// way of signing in ends here. The row is inserted only while u is still
// at the version read (Store.CreateSession), and the access token is
// stamped from a clock reading taken before that insert; a change of
// role, enabled state or password that commits after the insert dates its
// cutoff after that reading (UpdateUser), so the token cannot outlive the
// change. When the user changed between the read and the insert, recheck
// (nil: nothing to recheck) decides on the fresh row whether the sign-in
// still stands.
func (s *Service) startSession(ctx context.Context, u gatehouse.User, c Client, recheck func(context.Context, gatehouse.User) error) (Grant, error) {
	for attempt := 0; ; attempt++ {
		now := s.now()
		sess := s.newSession(u.ID, c, now)
		err := s.Store.CreateSession(ctx, sess, u.Version)
		if err == nil {
			return s.grant(u, sess, now)
		}
		if !errors.Is(err, gatehouse.ErrStale) {
			return Grant{}, fmt.Errorf("create session: %w", err)
		}
		if attempt == maxStaleSessionRetries {
			return Grant{}, fmt.Errorf("create session: user keeps changing: %w", gatehouse.ErrUnavailable)
		}
		fresh, err := s.Store.UserByID(ctx, u.ID)
		if errors.Is(err, gatehouse.ErrNotFound) {
			return Grant{}, ErrInvalidCredentials
		}
		if err != nil {
			return Grant{}, fmt.Errorf("create session: reread user: %w", err)
		}
		if fresh.Disabled {
			return Grant{}, ErrInvalidCredentials
		}
		if recheck != nil {
			if err := recheck(ctx, fresh); err != nil {
				return Grant{}, err
			}
		}
		u = fresh
	}
}

func (s *Service) newSession(userID string, c Client, now time.Time) gatehouse.Session {
	if c.Transport == "" {
		c.Transport = gatehouse.TransportCookie
	}
	return gatehouse.Session{
		ID:         newSessionID(),
		UserID:     userID,
		Gen:        1,
		CreatedAt:  now,
		RotatedAt:  now,
		LastUsedAt: now,
		ExpiresAt:  now.Add(s.cfg.MaxAge),
		// Header values may hold any bytes; stored text must be UTF-8
		// (PostgreSQL refuses anything else).
		UserAgent: truncate(strings.ToValidUTF8(c.UserAgent, "\uFFFD"), 512),
		IP:        c.IP,
		Transport: c.Transport,
	}
}

// grant issues an access token and the refresh token of the session's
// current generation.
func (s *Service) grant(u gatehouse.User, sess gatehouse.Session, now time.Time) (Grant, error) {
	// Tokens are stamped no earlier than the user's TokensValidAfter, so a
	// token issued in the same second as a role change is not mistaken for
	// one issued before it.
	base := now
	if u.TokensValidAfter.After(base) {
		base = u.TokensValidAfter
	}
	// iat rounds up to the whole second (JWT times are seconds), so the
	// token lives at least the configured lifetime from now and expires_in
	// never overstates it; iat is then at most a second ahead, well inside
	// every verifier's leeway.
	iat := ceilSecond(base)
	exp := iat.Add(s.cfg.AccessTTL)
	access, err := s.Signer.Sign(token.Claims{
		Issuer:    s.cfg.Issuer,
		Audience:  s.cfg.Audience,
		Subject:   u.ID,
		SessionID: sess.ID,
		ID:        newSessionID(), // jti: the same 128 random bits
		Role:      u.Role,
		IssuedAt:  iat,
		ExpiresAt: exp,
	})
	if err != nil {
		return Grant{}, fmt.Errorf("sign access token: %w", err)
	}
	return Grant{
		AccessToken:      access,
		ExpiresIn:        s.cfg.AccessTTL.Truncate(time.Second),
		Session:          sess,
		User:             u,
		RefreshToken:     s.RefreshCodec.Encode(sess.ID, sess.Gen),
		RefreshExpiresAt: s.SessionExpiry(sess),
	}, nil
}

// Refresh rotates a refresh token (DESIGN.md, "Refresh tokens"): one atomic
// rotation in the common case; otherwise the session row tells a grace
// replay (same successor again) from reuse (session revoked).
func (s *Service) Refresh(ctx context.Context, raw string, c Client) (Grant, error) {
	if err := s.limit(ctx, "refresh:ip:"+ipLimitKey(c.IP), s.cfg.RefreshRate); err != nil {
		s.Observer.Refresh("rate_limited")
		return Grant{}, err
	}
	sid, gen, err := s.RefreshCodec.Decode(raw)
	if err != nil {
		s.Observer.Refresh("invalid")
		return Grant{}, ErrInvalidRefresh
	}
	now := s.now()
	sess, u, err := s.Store.RotateSession(ctx, sid, gen, now, now.Add(-s.cfg.IdleTTL))
	if err == nil {
		s.Observer.Refresh("ok")
		return s.grant(u, sess, now)
	}
	if !errors.Is(err, gatehouse.ErrNotFound) {
		return Grant{}, fmt.Errorf("refresh: %w", err)
	}
	sess, err = s.Store.SessionByID(ctx, sid)
	if errors.Is(err, gatehouse.ErrNotFound) {
		s.Observer.Refresh("invalid")
		return Grant{}, ErrInvalidRefresh
	}
	if err != nil {
		return Grant{}, fmt.Errorf("refresh: %w", err)
	}
	switch {
	case sess.Revoked():
		s.Observer.Refresh("revoked")
		if sess.RevokeReason == ReasonReuse {
			return Grant{}, ErrRefreshReused
		}
		return Grant{}, ErrInvalidRefresh
	case !now.Before(sess.ExpiresAt) || !sess.LastUsedAt.After(now.Add(-s.cfg.IdleTTL)):
		s.Observer.Refresh("expired")
		return Grant{}, ErrInvalidRefresh
	case gen >= sess.Gen:
		// A genuine token of the current generation that did not rotate:
		// its user is disabled (sessions are revoked on disable, so this
		// is only a race with that). Not theft.
		s.Observer.Refresh("invalid")
		return Grant{}, ErrInvalidRefresh
	case gen+1 == sess.Gen && now.Sub(sess.RotatedAt) <= s.cfg.ReuseGrace:
		u, err := s.Store.UserByID(ctx, sess.UserID)
		if err != nil {
			return Grant{}, fmt.Errorf("refresh grace: %w", err)
		}
		if u.Disabled {
			return Grant{}, ErrInvalidRefresh
		}
		s.Observer.Refresh("grace")
		return s.grant(u, sess, now)
	}
	// An earlier generation of a live session, outside the grace window:
	// someone holds a copy of a token that was already rotated.
	if err := s.revokeSession(ctx, sess.ID, ReasonReuse, now); err != nil && !errors.Is(err, gatehouse.ErrNotFound) {
		return Grant{}, fmt.Errorf("revoke reused session: %w", err)
	}
	s.Observer.Refresh("reused")
	s.Logger.Warn("refresh token reuse detected; session revoked", "session_id", sess.ID, "user_id", sess.UserID, "ip", c.IP)
	return Grant{}, ErrRefreshReused
}

// Authenticate verifies a Bearer access token and checks it against the
// revocation sets.
func (s *Service) Authenticate(ctx context.Context, raw string) (Principal, error) {
	claims, err := s.Signer.Verify(ctx, raw, s.Now())
	if err != nil {
		if errors.Is(err, gatehouse.ErrUnavailable) {
			// An unknown kid could not be looked up in the store: we
			// cannot tell whether the token is good, so fail closed.
			return Principal{}, fmt.Errorf("verify access token: %w", err)
		}
		return Principal{}, ErrInvalidToken
	}
	if err := s.Revoker.Check(claims.SessionID, claims.Subject, claims.IssuedAt); err != nil {
		if errors.Is(err, revoke.ErrRevoked) {
			return Principal{}, ErrInvalidToken
		}
		return Principal{}, fmt.Errorf("revocation check: %w", err)
	}
	return Principal{UserID: claims.Subject, SessionID: claims.SessionID, Role: claims.Role, IssuedAt: claims.IssuedAt}, nil
}

// SessionFromRefresh resolves a refresh token presented to logout to its
// session. Only the current token, or its predecessor within the grace
// window, identifies the session; anything else revokes nothing.
func (s *Service) SessionFromRefresh(ctx context.Context, raw string) (gatehouse.Session, error) {
	sid, gen, err := s.RefreshCodec.Decode(raw)
	if err != nil {
		return gatehouse.Session{}, ErrInvalidRefresh
	}
	sess, err := s.Store.SessionByID(ctx, sid)
	if errors.Is(err, gatehouse.ErrNotFound) {
		return gatehouse.Session{}, ErrInvalidRefresh
	}
	if err != nil {
		return gatehouse.Session{}, fmt.Errorf("logout: %w", err)
	}
	now := s.now()
	current := gen == sess.Gen || (gen+1 == sess.Gen && now.Sub(sess.RotatedAt) <= s.cfg.ReuseGrace)
	// An ended session's token identifies nothing: else a stolen token of
	// a session already revoked would log its user out everywhere, again
	// and again.
	live := !sess.Revoked() && now.Before(sess.ExpiresAt) && sess.LastUsedAt.After(now.Add(-s.cfg.IdleTTL))
	if !current || !live {
		return gatehouse.Session{}, ErrInvalidRefresh
	}
	return sess, nil
}

// Logout ends the session sid of user userID (scope local), every other
// session of the user (others), or all of them (global).
func (s *Service) Logout(ctx context.Context, userID, sid, scope string) error {
	now := s.now()
	switch scope {
	case "", ScopeLocal:
		err := s.revokeSession(ctx, sid, ReasonLogout, now)
		if errors.Is(err, gatehouse.ErrNotFound) {
			return nil // already ended: logout is idempotent
		}
		return err
	case ScopeOthers:
		return s.revokeUserSessions(ctx, userID, sid, ReasonLogout, now)
	case ScopeGlobal:
		return s.revokeUserSessions(ctx, userID, "", ReasonLogout, now)
	}
	return invalid("scope", "must be local, others or global")
}

// Sessions lists the live sessions of a user.
func (s *Service) Sessions(ctx context.Context, userID string) ([]gatehouse.Session, error) {
	now := s.now()
	list, err := s.Store.ListSessions(ctx, userID, now, now.Add(-s.cfg.IdleTTL))
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return list, nil
}

// EndOwnSession ends one of the caller's sessions; another user's session
// is reported as not found so that ids cannot be probed.
func (s *Service) EndOwnSession(ctx context.Context, p Principal, sid string) error {
	sess, err := s.Store.SessionByID(ctx, sid)
	if err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	if sess.UserID != p.UserID || sess.Revoked() {
		return gatehouse.ErrNotFound
	}
	return s.revokeSession(ctx, sid, ReasonLogout, s.now())
}

// Me returns the caller's user.
func (s *Service) Me(ctx context.Context, p Principal) (gatehouse.User, error) {
	readAt := s.Now()
	if u, ok := s.users.get(p.UserID, p.IssuedAt, readAt); ok {
		return u, nil
	}
	u, err := s.Store.UserByID(ctx, p.UserID)
	if errors.Is(err, gatehouse.ErrNotFound) {
		return gatehouse.User{}, ErrInvalidToken
	}
	if err != nil {
		return gatehouse.User{}, fmt.Errorf("me: %w", err)
	}
	s.users.put(u, readAt, s.Now())
	return u, nil
}

// ChangePassword checks the current password, sets the new one and ends
// every other session of the user; the calling session stays.
func (s *Service) ChangePassword(ctx context.Context, p Principal, current, next string) error {
	var fields []FieldError
	if current == "" {
		fields = append(fields, FieldError{Field: "current_password", Message: "is required"})
	}
	if next == "" {
		fields = append(fields, FieldError{Field: "new_password", Message: "is required"})
	}
	if len(fields) > 0 {
		return &ValidationError{Fields: fields}
	}
	if err := checkPassword("new_password", next); err != nil {
		return err
	}
	// Spent before checking, like login's per-account budget, so that
	// concurrent guesses with a stolen access token cannot outrun it.
	accountKey := "password:account:" + p.UserID
	if err := s.limit(ctx, accountKey, s.cfg.LoginRate); err != nil {
		return err
	}
	u, err := s.Store.UserByID(ctx, p.UserID)
	if err != nil {
		return fmt.Errorf("change password: %w", err)
	}
	if err := s.checkPasswordOf(ctx, u, current); err != nil {
		return err
	}
	s.refund(ctx, accountKey, s.cfg.LoginRate)
	hash, err := s.Hasher.Hash(ctx, next)
	if err != nil {
		return s.hashError(err)
	}
	// Other sessions end first: if setting the hash then fails, the user
	// retries with the old password and nothing of the thief survives.
	if err := s.revokeUserSessions(ctx, u.ID, p.SessionID, ReasonPasswordChange, s.now()); err != nil {
		return err
	}
	ctx, cancel := detach(ctx)
	defer cancel()
	// A compare-and-swap on the hash that was checked: a change that
	// landed meanwhile (another password change, a login's rehash) is
	// checked against the current password again rather than overwritten.
	for attempt := 0; ; attempt++ {
		err := s.Store.SetPasswordHash(ctx, u.ID, u.PasswordHash, hash)
		if err == nil {
			break
		}
		if !errors.Is(err, gatehouse.ErrStale) {
			return fmt.Errorf("change password: %w", err)
		}
		if attempt == maxStaleSessionRetries {
			return fmt.Errorf("change password: user keeps changing: %w", gatehouse.ErrUnavailable)
		}
		if u, err = s.Store.UserByID(ctx, p.UserID); err != nil {
			return fmt.Errorf("change password: %w", err)
		}
		if err := s.checkPasswordOf(ctx, u, current); err != nil {
			return err
		}
	}
	// Setting the hash advanced the user's version, so no login that
	// checked the old password can create a session from now on; the
	// sessions such logins created before it are ended here.
	return s.revokeUserSessions(ctx, u.ID, p.SessionID, ReasonPasswordChange, s.now())
}

// checkPasswordOf verifies pw against u's stored hash.
func (s *Service) checkPasswordOf(ctx context.Context, u gatehouse.User, pw string) error {
	ok, _, err := s.Hasher.Verify(ctx, pw, u.PasswordHash)
	if err != nil && !errors.Is(err, password.ErrMalformedHash) {
		return s.hashError(err)
	}
	if !ok {
		return ErrInvalidCredentials
	}
	return nil
}

// RequireAdmin checks that the principal may use the admin endpoints. The
// role comes from the token; a role change revokes the tokens issued
// before it, so a demoted admin's token stops working at once.
func RequireAdmin(p Principal) error {
	if p.Role != gatehouse.RoleAdmin {
		return ErrForbidden
	}
	return nil
}

// ListUsers pages through users in id order.
func (s *Service) ListUsers(ctx context.Context, after string, limit int) ([]gatehouse.User, error) {
	users, err := s.Store.ListUsers(ctx, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return users, nil
}

// UserSessions lists any user's live sessions.
func (s *Service) UserSessions(ctx context.Context, userID string) ([]gatehouse.Session, error) {
	if _, err := s.Store.UserByID(ctx, userID); err != nil {
		return nil, fmt.Errorf("user sessions: %w", err)
	}
	return s.Sessions(ctx, userID)
}

// UpdateUser changes a user's role and/or disabled flag. Both revoke the
// access tokens issued before the change; disabling also ends every
// session.
func (s *Service) UpdateUser(ctx context.Context, userID string, role *gatehouse.Role, disabled *bool) (gatehouse.User, error) {
	if role != nil && !role.Valid() {
		return gatehouse.User{}, invalid("role", "must be user or admin")
	}
	before, err := s.Store.UserByID(ctx, userID)
	if err != nil {
		return gatehouse.User{}, fmt.Errorf("update user: %w", err)
	}
	changed := (role != nil && *role != before.Role) || (disabled != nil && *disabled != before.Disabled)
	disabling := disabled != nil && *disabled
	if !changed {
		if disabling {
			// A retry after a failed disable must still end the sessions.
			if err := s.revokeUserSessions(ctx, userID, "", ReasonDisabled, s.now()); err != nil {
				return gatehouse.User{}, err
			}
		}
		return before, nil
	}
	now := s.now()
	// Every token issued so far has an iat of at most ceilSecond(now),
	// so a cutoff past that rejects them all; every token issued from now
	// on is stamped at or after it. The second second of margin covers
	// instance clocks a little apart. Two changes must also get distinct
	// cutoffs, or a token issued between them (stamped at the first
	// cutoff) survives the second: hence at least one second past the
	// previous cutoff. That pushes the cutoff ahead of the clock when
	// changes come quickly, and every revocation entry has to live until
	// cutoff + AccessTTL, so how far ahead it may go is capped.
	cutoff := ceilSecond(now).Add(2 * time.Second)
	if next := before.TokensValidAfter.Add(time.Second); next.After(cutoff) {
		cutoff = next
	}
	if limit := ceilSecond(now).Add(MaxCutoffAhead); cutoff.After(limit) {
		return gatehouse.User{}, &RateLimitError{RetryAfter: cutoff.Sub(limit)}
	}
	ctx, cancel := detach(ctx)
	defer cancel()
	// The revocation is recorded before the change it enforces: if the
	// update then fails, the extra revocation only costs the user a
	// refresh, and a retry finds the change still to do. The other order
	// could leave a change made and its revocation lost.
	if err := s.revokeUserBefore(ctx, userID, cutoff); err != nil {
		return gatehouse.User{}, err
	}
	if disabling {
		if err := s.revokeUserSessions(ctx, userID, "", ReasonDisabled, now); err != nil {
			return gatehouse.User{}, err
		}
	}
	u, err := s.Store.UpdateUser(ctx, userID, role, disabled, cutoff)
	s.users.forget(userID)
	if err != nil {
		return gatehouse.User{}, fmt.Errorf("update user: %w", err)
	}
	// A login or refresh that read the user before the update committed
	// stamps its token from a clock reading taken before its read, so
	// before now (the update advanced the user's version: a session
	// insert after it fails). If the update took long enough for that
	// reading to reach the cutoff, move the cutoff past it.
	if late := ceilSecond(s.now()).Add(2 * time.Second); late.After(u.TokensValidAfter) {
		if err := s.revokeUserBefore(ctx, userID, late); err != nil {
			return gatehouse.User{}, err
		}
		if u, err = s.Store.UpdateUser(ctx, userID, nil, nil, late); err != nil {
			return gatehouse.User{}, fmt.Errorf("update user: %w", err)
		}
		s.users.forget(userID)
	}
	if disabling {
		// Sessions that logins in flight inserted before the version
		// changed: ended now, so re-enabling the account cannot revive them.
		if err := s.revokeUserSessions(ctx, userID, "", ReasonDisabled, s.now()); err != nil {
			return gatehouse.User{}, err
		}
	}
	return u, nil
}

// revokeUserBefore records that the user's access tokens issued before
// cutoff are revoked.
func (s *Service) revokeUserBefore(ctx context.Context, userID string, cutoff time.Time) error {
	rev := gatehouse.Revocation{Kind: gatehouse.RevokeUserBefore, Subject: userID, At: cutoff,
		ExpiresAt: cutoff.Add(s.cfg.AccessTTL + s.cfg.Leeway + time.Second)}
	if err := s.Store.AddRevocation(ctx, rev); err != nil {
		return fmt.Errorf("update user: record revocation: %w", err)
	}
	s.Revoker.Record(ctx, rev)
	s.Observer.Revoked("user_update", 1)
	return nil
}

// AdminEndSession ends any session.
func (s *Service) AdminEndSession(ctx context.Context, sid string) error {
	return s.revokeSession(ctx, sid, ReasonAdmin, s.now())
}

// AdminLogoutUser ends every session of a user.
func (s *Service) AdminLogoutUser(ctx context.Context, userID string) error {
	if _, err := s.Store.UserByID(ctx, userID); err != nil {
		return fmt.Errorf("logout user: %w", err)
	}
	return s.revokeUserSessions(ctx, userID, "", ReasonAdmin, s.now())
}

func (s *Service) revokeSession(ctx context.Context, sid, reason string, now time.Time) error {
	// A revocation must not be rolled back because the client hung up
	// (a thief's replay on a flaky connection, a logout tab closed).
	ctx, cancel := detach(ctx)
	defer cancel()
	exp := s.revocationExpiry(now)
	if err := s.Store.RevokeSession(ctx, sid, reason, now, exp); err != nil {
		return fmt.Errorf("revoke session: %w", err)
	}
	s.Revoker.Record(ctx, gatehouse.Revocation{Kind: gatehouse.RevokeSession, Subject: sid, At: now, ExpiresAt: exp})
	s.Observer.Revoked(reason, 1)
	return nil
}

func (s *Service) revokeUserSessions(ctx context.Context, userID, keep, reason string, now time.Time) error {
	ctx, cancel := detach(ctx)
	defer cancel()
	exp := s.revocationExpiry(now)
	ids, err := s.Store.RevokeUserSessions(ctx, userID, keep, reason, now, exp)
	if err != nil {
		return fmt.Errorf("revoke sessions: %w", err)
	}
	revs := make([]gatehouse.Revocation, len(ids))
	for i, id := range ids {
		revs[i] = gatehouse.Revocation{Kind: gatehouse.RevokeSession, Subject: id, At: now, ExpiresAt: exp}
	}
	s.Revoker.Record(ctx, revs...)
	s.Observer.Revoked(reason, len(ids))
	return nil
}

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

// SessionExpiry is when a session ends if nothing else happens: the
// earlier of idle expiry and absolute expiry.
func (s *Service) SessionExpiry(sess gatehouse.Session) time.Time {
	idle := sess.LastUsedAt.Add(s.cfg.IdleTTL)
	if sess.ExpiresAt.Before(idle) {
		return sess.ExpiresAt
	}
	return idle
}

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
