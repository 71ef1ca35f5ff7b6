package auth

import (
	"context"
	"errors"
	"fmt"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/audit"
	"github.com/gatehouse/gatehouse/password"
	"github.com/google/uuid"
)

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
	mailed, err := s.createUserMailingVerification(ctx, u)
	if err != nil {
		return Grant{}, fmt.Errorf("signup: %w", err)
	}
	s.recordAudit(ctx, audit.Event{Type: audit.TypeSignup, UserID: u.ID, IP: c.IP, UserAgent: c.UserAgent,
		Detail: audit.Detail{audit.KeyMethod: MethodPassword}})
	g, err := s.startSession(ctx, u, c, []string{MethodPassword}, nil)
	if err != nil {
		return Grant{}, err
	}
	if !mailed {
		s.sendVerification(ctx, g.User)
	}
	return g, nil
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
		// Made by the operator, who vouches for the address: it can sign
		// in under --require-verified-email without a mail round trip.
		EmailVerified: true,
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
	reason := "" // why an existing account's login failed, for the audit log
	switch {
	case errors.Is(err, gatehouse.ErrNotFound):
		if err := s.Hasher.VerifyDummy(ctx, in.Password); err != nil {
			return Grant{}, s.hashError(err)
		}
	case err != nil:
		return Grant{}, fmt.Errorf("login: %w", err)
	case u.PasswordHash == "":
		// An account made by a magic link has no password until one is
		// set with a reset link; it costs the same hash as any miss.
		if err := s.Hasher.VerifyDummy(ctx, in.Password); err != nil {
			return Grant{}, s.hashError(err)
		}
		reason = audit.ReasonNoPassword
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
		reason = audit.ReasonWrongPassword
		if ok && u.Disabled {
			ok, reason = false, audit.ReasonDisabled
		}
		if ok && rehash {
			s.upgradeHash(ctx, u.ID, u.PasswordHash, in.Password)
		}
	}
	if !ok {
		// The attempt was already counted against the account above.
		s.Observer.Login("invalid")
		if reason != "" {
			s.recordLogin(ctx, u.ID, "", c, []string{MethodPassword}, reason)
		}
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
	if s.cfg.RequireVerifiedEmail && !u.EmailVerified {
		// Only after the password checked out, so the answer reveals
		// nothing to someone who does not know it.
		s.refund(ctx, accountKey, s.cfg.LoginRate)
		s.Observer.Login("unverified")
		s.recordLogin(ctx, u.ID, "", c, []string{MethodPassword}, audit.ReasonEmailNotVerified)
		return Grant{}, ErrEmailNotVerified
	}
	if err := s.requireSecondFactor(ctx, u, []string{MethodPassword}); err != nil {
		s.refund(ctx, accountKey, s.cfg.LoginRate)
		s.Observer.Login("mfa_required")
		return Grant{}, err
	}
	g, err := s.startSession(ctx, u, c, []string{MethodPassword}, recheck)
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
		if errors.Is(err, ErrInvalidCredentials) {
			s.recordAudit(ctx, audit.Event{Type: audit.TypePasswordChanged, UserID: u.ID, SessionID: p.SessionID,
				Outcome: audit.Failure, Detail: audit.Detail{audit.KeyReason: audit.ReasonWrongPassword}})
		}
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
	if err := s.voidResetLinks(ctx, u.ID); err != nil {
		return err
	}
	s.recordAudit(ctx, audit.Event{Type: audit.TypePasswordChanged, UserID: u.ID, SessionID: p.SessionID})
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
