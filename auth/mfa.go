package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/audit"
	"github.com/gatehouse/gatehouse/mfa"
	"github.com/gatehouse/gatehouse/token"
)

// Second factors (API.md part 2): TOTP with recovery codes. A sign-in whose
// first factor checks out for a user with a second factor gets an
// mfa_token (a one-time secret of kind mfa, 5 minutes) instead of a
// session; /auth/mfa/verify spends it with a code and only then does the
// session start, through startSession like every other sign-in.

// Methods of the amr claim added by second factors.
const (
	MethodOTP      = "otp"
	MethodRecovery = "recovery"
	MethodMFA      = "mfa"
)

// Second-factor methods a client can be asked for.
const (
	FactorTOTP         = "totp"
	FactorRecoveryCode = "recovery_code"
)

const mfaTokenTTL = 5 * time.Minute

// MFARequiredError answers a sign-in whose second factor is still due.
type MFARequiredError struct {
	Token   string
	Methods []string
}

func (e *MFARequiredError) Error() string { return "second factor required" }

// requireSecondFactor returns the mfa_token answer when u has a second
// factor, nil otherwise. first lists the methods already used.
func (s *Service) requireSecondFactor(ctx context.Context, u gatehouse.User, first []string) error {
	var methods []string
	if u.TOTPEnabled && s.MFA != nil {
		methods = append(methods, FactorTOTP, FactorRecoveryCode)
	}
	if s.WebAuthn != nil {
		n, err := s.PasskeyCount(ctx, u.ID)
		if err != nil {
			return err
		}
		if n > 0 {
			methods = append(methods, FactorPasskey)
		}
	}
	if len(methods) == 0 {
		return nil
	}
	tok, err := s.newSecret(ctx, gatehouse.SecretMFA, u.ID, strings.Join(first, " "), mfaTokenTTL)
	if err != nil {
		return err
	}
	return &MFARequiredError{Token: tok, Methods: methods}
}

// VerifyMFAInput is the second step of a sign-in.
type VerifyMFAInput struct {
	Token, Method, Code string
}

// VerifyMFA checks the second factor of a pending sign-in and starts its
// session. An attempt is counted on the mfa_token before the code is
// checked (5 per token), and every guess also spends the account's budget,
// so guessing across many mfa_tokens is limited too.
func (s *Service) VerifyMFA(ctx context.Context, in VerifyMFAInput, c Client) (Grant, error) {
	if in.Method != FactorTOTP && in.Method != FactorRecoveryCode {
		return Grant{}, invalid("method", `must be "totp" or "recovery_code"`)
	}
	id, mac, ok := s.SecretCodec.Parse(gatehouse.SecretMFA, in.Token)
	if !ok {
		return Grant{}, ErrInvalidCode
	}
	sec, err := s.Attempts.SpendSecretAttempt(ctx, gatehouse.SecretMFA, id, mac, s.now(), maxSecretAttempts)
	if errors.Is(err, gatehouse.ErrNotFound) {
		return Grant{}, ErrInvalidCode
	}
	if err != nil {
		return Grant{}, fmt.Errorf("mfa token: %w", err)
	}
	u, err := s.Store.UserByID(ctx, sec.Subject)
	if errors.Is(err, gatehouse.ErrNotFound) || (err == nil && u.Disabled) {
		return Grant{}, ErrInvalidCode
	}
	if err != nil {
		return Grant{}, fmt.Errorf("mfa: %w", err)
	}
	// The same budget as password guesses at login: an attacker who knows
	// the password gets no more code guesses than one who does not.
	accountKey := "login:account:" + accountLimitKey(u.Email)
	if err := s.limit(ctx, accountKey, s.cfg.LoginRate); err != nil {
		return Grant{}, err
	}
	method, err := s.checkSecondFactor(ctx, u.ID, in.Method, in.Code)
	if err != nil {
		if errors.Is(err, ErrInvalidCode) {
			s.recordLogin(ctx, u.ID, "", c, append(strings.Fields(sec.Data), in.Method), audit.ReasonMFAFailed)
		}
		return Grant{}, err
	}
	// Single use: of concurrent right answers on one token, one wins.
	if _, err := s.Secrets.UseSecret(ctx, gatehouse.SecretMFA, id, mac, s.now(), maxSecretAttempts+1); err != nil {
		if errors.Is(err, gatehouse.ErrNotFound) {
			return Grant{}, ErrInvalidCode
		}
		return Grant{}, fmt.Errorf("mfa token: %w", err)
	}
	s.refund(ctx, accountKey, s.cfg.LoginRate)
	amr := append(strings.Fields(sec.Data), method, MethodMFA)
	return s.startSession(ctx, u, c, amr, nil)
}

// checkSecondFactor accepts a TOTP code (each time step once) or an unused
// recovery code of the user, and returns the amr method it proves.
func (s *Service) checkSecondFactor(ctx context.Context, userID, method, code string) (string, error) {
	switch method {
	case FactorTOTP:
		f, err := s.MFA.TOTP(ctx, userID)
		if errors.Is(err, gatehouse.ErrNotFound) || (err == nil && f.ConfirmedAt.IsZero()) {
			return "", ErrInvalidCode
		}
		if err != nil {
			return "", fmt.Errorf("mfa: %w", err)
		}
		secret, err := s.openTOTP(f)
		if err != nil {
			return "", err
		}
		step, ok := mfa.MatchStep(secret, code, s.Now())
		if !ok {
			return "", ErrInvalidCode
		}
		// Accepted once: the same code again, even inside its window, is
		// refused (and of concurrent uses exactly one passes).
		if err := s.MFA.UseTOTPStep(ctx, userID, step); err != nil {
			if errors.Is(err, gatehouse.ErrStale) || errors.Is(err, gatehouse.ErrNotFound) {
				return "", ErrInvalidCode
			}
			return "", fmt.Errorf("mfa: %w", err)
		}
		return MethodOTP, nil
	case FactorRecoveryCode:
		if code == "" || len(code) > 64 {
			return "", ErrInvalidCode
		}
		err := s.MFA.UseRecoveryCode(ctx, userID, mfa.RecoveryMAC(s.RecoveryKey, userID, code), s.now())
		if errors.Is(err, gatehouse.ErrNotFound) {
			return "", ErrInvalidCode
		}
		if err != nil {
			return "", fmt.Errorf("mfa: %w", err)
		}
		return MethodRecovery, nil
	}
	return "", invalid("method", `must be "totp" or "recovery_code"`)
}

func (s *Service) openTOTP(f gatehouse.TOTPFactor) (string, error) {
	secret, err := s.TOTPBox.Open([]byte(f.UserID), f.Sealed)
	if err != nil {
		return "", fmt.Errorf("mfa: open totp secret of %s: %w", f.UserID, err)
	}
	return string(secret), nil
}

// TOTPEnrolment is a pending authenticator-app setup.
type TOTPEnrolment struct {
	Secret, URI string
}

// StartTOTP begins enrolment after checking the current password: the
// secret is stored sealed and pending until a code confirms it.
func (s *Service) StartTOTP(ctx context.Context, p Principal, current string) (TOTPEnrolment, error) {
	if current == "" {
		return TOTPEnrolment{}, invalid("current_password", "is required")
	}
	accountKey := "password:account:" + p.UserID
	if err := s.limit(ctx, accountKey, s.cfg.LoginRate); err != nil {
		return TOTPEnrolment{}, err
	}
	u, err := s.Store.UserByID(ctx, p.UserID)
	if err != nil {
		return TOTPEnrolment{}, fmt.Errorf("start totp: %w", err)
	}
	if err := s.checkPasswordOf(ctx, u, current); err != nil {
		return TOTPEnrolment{}, err
	}
	s.refund(ctx, accountKey, s.cfg.LoginRate)
	if u.TOTPEnabled {
		return TOTPEnrolment{}, ErrAlreadyEnabled
	}
	secret, uri, err := mfa.NewTOTP(s.cfg.TOTPIssuer, u.Email)
	if err != nil {
		return TOTPEnrolment{}, err
	}
	err = s.MFA.PutPendingTOTP(ctx, gatehouse.TOTPFactor{
		UserID: u.ID, Sealed: s.TOTPBox.Seal([]byte(u.ID), []byte(secret)), CreatedAt: s.now(),
	})
	if errors.Is(err, gatehouse.ErrStale) {
		return TOTPEnrolment{}, ErrAlreadyEnabled
	}
	if err != nil {
		return TOTPEnrolment{}, fmt.Errorf("start totp: %w", err)
	}
	return TOTPEnrolment{Secret: secret, URI: uri}, nil
}

// ConfirmTOTP enables the pending factor with a code from the app and
// returns the recovery codes, shown this once.
func (s *Service) ConfirmTOTP(ctx context.Context, p Principal, code string) ([]string, error) {
	if err := s.limit(ctx, "mfa:account:"+p.UserID, s.cfg.LoginRate); err != nil {
		return nil, err
	}
	f, err := s.MFA.TOTP(ctx, p.UserID)
	if errors.Is(err, gatehouse.ErrNotFound) || (err == nil && !f.ConfirmedAt.IsZero()) {
		return nil, ErrInvalidCode
	}
	if err != nil {
		return nil, fmt.Errorf("confirm totp: %w", err)
	}
	secret, err := s.openTOTP(f)
	if err != nil {
		return nil, err
	}
	step, ok := mfa.MatchStep(secret, code, s.Now())
	if !ok {
		return nil, ErrInvalidCode
	}
	codes := mfa.NewRecoveryCodes()
	err = s.MFA.ConfirmTOTP(ctx, p.UserID, step, s.now(), s.recoveryMACs(p.UserID, codes))
	if errors.Is(err, gatehouse.ErrNotFound) {
		return nil, ErrInvalidCode
	}
	if err != nil {
		return nil, fmt.Errorf("confirm totp: %w", err)
	}
	s.users.forget(p.UserID)
	s.recordMFA(ctx, p, audit.ActionTOTPEnabled)
	return codes, nil
}

// DisableTOTP removes the factor and its recovery codes; it needs a TOTP
// code or a recovery code, so a stolen access token alone cannot.
func (s *Service) DisableTOTP(ctx context.Context, p Principal, code string) error {
	if err := s.limit(ctx, "mfa:account:"+p.UserID, s.cfg.LoginRate); err != nil {
		return err
	}
	method := FactorTOTP
	if !token.ValidCode(code) {
		method = FactorRecoveryCode
	}
	if _, err := s.checkSecondFactor(ctx, p.UserID, method, code); err != nil {
		return err
	}
	if err := s.MFA.DeleteTOTP(ctx, p.UserID); err != nil {
		return fmt.Errorf("disable totp: %w", err)
	}
	s.users.forget(p.UserID)
	s.recordMFA(ctx, p, audit.ActionTOTPDisabled)
	return nil
}

// RegenerateRecoveryCodes replaces the recovery codes after a TOTP code.
func (s *Service) RegenerateRecoveryCodes(ctx context.Context, p Principal, code string) ([]string, error) {
	if err := s.limit(ctx, "mfa:account:"+p.UserID, s.cfg.LoginRate); err != nil {
		return nil, err
	}
	if _, err := s.checkSecondFactor(ctx, p.UserID, FactorTOTP, code); err != nil {
		return nil, err
	}
	codes := mfa.NewRecoveryCodes()
	if err := s.MFA.ReplaceRecoveryCodes(ctx, p.UserID, s.recoveryMACs(p.UserID, codes)); err != nil {
		return nil, fmt.Errorf("recovery codes: %w", err)
	}
	s.recordMFA(ctx, p, audit.ActionRecoveryCodes)
	return codes, nil
}

// AdminResetMFA removes every second factor of a user.
func (s *Service) AdminResetMFA(ctx context.Context, userID string) error {
	if _, err := s.Store.UserByID(ctx, userID); err != nil {
		return fmt.Errorf("reset mfa: %w", err)
	}
	if err := s.MFA.DeleteTOTP(ctx, userID); err != nil {
		return fmt.Errorf("reset mfa: %w", err)
	}
	if s.Passkeys != nil {
		keys, err := s.Passkeys.Passkeys(ctx, userID)
		if err != nil {
			return fmt.Errorf("reset mfa: %w", err)
		}
		for _, k := range keys {
			if err := s.Passkeys.DeletePasskey(ctx, userID, k.ID); err != nil && !errors.Is(err, gatehouse.ErrNotFound) {
				return fmt.Errorf("reset mfa: %w", err)
			}
		}
	}
	s.users.forget(userID)
	s.recordAdmin(ctx, userID, audit.ActionMFAReset, nil)
	return nil
}

// recordMFA records a change of the caller's second factors.
func (s *Service) recordMFA(ctx context.Context, p Principal, action string) {
	s.recordAudit(ctx, audit.Event{Type: audit.TypeMFA, UserID: p.UserID, SessionID: p.SessionID,
		Detail: audit.Detail{audit.KeyAction: action, audit.KeyMethod: FactorTOTP}})
}

func (s *Service) recoveryMACs(userID string, codes []string) [][]byte {
	macs := make([][]byte, len(codes))
	for i, c := range codes {
		macs[i] = mfa.RecoveryMAC(s.RecoveryKey, userID, c)
	}
	return macs
}
