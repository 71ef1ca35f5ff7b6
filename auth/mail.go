package auth

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/audit"
	"github.com/gatehouse/gatehouse/token"
)

// The mail flows (API.md part 2, "Mail"): verification, password reset,
// magic links and codes, email change. Every secret handed out is a
// one-time secret of the store (only its MAC is kept, single use, voided
// by a newer one); every sign-in ends in startSession like a password login.

// Lifetimes of mailed secrets.
const (
	verifyEmailTTL   = 24 * time.Hour
	resetPasswordTTL = time.Hour
	magicLinkTTL     = 15 * time.Minute
	changeEmailTTL   = time.Hour
	// maxSecretAttempts: a code dies after this many wrong guesses.
	maxSecretAttempts = 5
)

// Mail templates the flows send.
const (
	TemplateVerifyEmail   = "verify_email"
	TemplateResetPassword = "reset_password"
	TemplateMagicLink     = "magic_link"
	TemplateChangeEmail   = "change_email"
	TemplateEmailChanged  = "email_changed"
)

// MailRequest is one message to queue: which template, for whom, and what
// it needs. Link carries a live token in its fragment.
type MailRequest struct {
	To       string
	Template string
	Link     string
	Code     string
	Lifetime time.Duration
	NewEmail string // email change: the new address
	OldEmail string // email change: the address being replaced
	// Secrets are the one-time secrets Link and Code stand for. The
	// mailer stores them with the message in one transaction: a link is
	// never live without its mail, and a sign-up that mails pays for one
	// durable write instead of two.
	Secrets []gatehouse.OneTimeSecret
}

// Mailer renders and queues mail (mail.Outbox); it never waits for
// delivery.
type Mailer interface {
	Queue(ctx context.Context, m MailRequest) error
}

// MailPreparer is a Mailer that can also render and seal a message
// without storing it, so that a sign-up stores the user and its
// verification mail in one transaction (Store.CreateUserWithMail).
type MailPreparer interface {
	Prepare(m MailRequest) (PreparedMail, error)
}

// PreparedMail is a message ready to store: Message goes into the
// transaction, and Done reports whether it committed.
type PreparedMail interface {
	Message() gatehouse.OutboxMessage
	Done(committed bool)
}

// link is the address of an account-page action with the token in the
// fragment, so that it never reaches server logs or Referer headers.
func (s *Service) link(action, tok string) string {
	return strings.TrimRight(s.cfg.PublicURL, "/") + "/account/" + action + "#token=" + url.QueryEscape(tok)
}

// queue hands a message to the mailer. A failure is logged, not returned:
// the request that caused the mail must not fail over it (API.md), and the
// user can ask again.
func (s *Service) queue(ctx context.Context, m MailRequest) {
	if s.Mailer == nil {
		return
	}
	if err := s.Mailer.Queue(ctx, m); err != nil {
		s.Logger.Error("queue mail", "template", m.Template, "err", err)
	}
}

// newSecret stores a fresh token of kind for subject (voiding older ones)
// and returns it.
func (s *Service) newSecret(ctx context.Context, kind gatehouse.SecretKind, subject, data string, ttl time.Duration) (string, error) {
	tok, sec := s.mintSecret(kind, subject, data, ttl)
	if err := s.Secrets.CreateSecret(ctx, sec); err != nil {
		return "", fmt.Errorf("create %s secret: %w", kind, err)
	}
	return tok, nil
}

// mintSecret makes a fresh token of kind for subject and the row that
// stands for it, without storing it: a mailed token is stored with its
// mail (MailRequest.Secrets).
func (s *Service) mintSecret(kind gatehouse.SecretKind, subject, data string, ttl time.Duration) (string, gatehouse.OneTimeSecret) {
	tok, id, mac := s.SecretCodec.New(kind)
	now := s.now()
	return tok, gatehouse.OneTimeSecret{
		ID: id, Kind: kind, Subject: subject, MAC: mac, Data: data, CreatedAt: now, ExpiresAt: now.Add(ttl),
	}
}

// useToken spends a mailed token of kind; anything wrong with it is
// ErrInvalidLink and changes nothing.
func (s *Service) useToken(ctx context.Context, kind gatehouse.SecretKind, tok string) (gatehouse.OneTimeSecret, error) {
	id, mac, ok := s.SecretCodec.Parse(kind, tok)
	if !ok {
		return gatehouse.OneTimeSecret{}, ErrInvalidLink
	}
	sec, err := s.Secrets.UseSecret(ctx, kind, id, mac, s.now(), maxSecretAttempts)
	if errors.Is(err, gatehouse.ErrNotFound) {
		return gatehouse.OneTimeSecret{}, ErrInvalidLink
	}
	if err != nil {
		return gatehouse.OneTimeSecret{}, fmt.Errorf("use %s secret: %w", kind, err)
	}
	return sec, nil
}

// limitMail spends the per-address and per-IP mail budgets. The address
// key is the same for known and unknown addresses.
func (s *Service) limitMail(ctx context.Context, email, ip string) error {
	if err := s.limit(ctx, "mail:ip:"+ipLimitKey(ip), s.cfg.MailIPRate); err != nil {
		return err
	}
	return s.limit(ctx, "mail:address:"+accountLimitKey(email), s.cfg.MailRate)
}

// --- verification -------------------------------------------------------

// sendVerification mails u a verification link (after sign-up).
func (s *Service) sendVerification(ctx context.Context, u gatehouse.User) {
	if s.Mailer == nil || u.EmailVerified {
		return
	}
	s.queue(ctx, s.verificationMail(u))
}

func (s *Service) verificationMail(u gatehouse.User) MailRequest {
	tok, sec := s.mintSecret(gatehouse.SecretVerifyEmail, u.ID, u.Email, verifyEmailTTL)
	return MailRequest{To: u.Email, Template: TemplateVerifyEmail, Link: s.link("verify-email", tok), Lifetime: verifyEmailTTL,
		Secrets: []gatehouse.OneTimeSecret{sec}}
}

// createUserMailingVerification stores a new user and, in the same
// transaction, its verification mail when the mailer can prepare one:
// the sign-up then pays for one durable write, not two. mailed reports
// whether the mail went with it; otherwise the caller sends it later.
func (s *Service) createUserMailingVerification(ctx context.Context, u gatehouse.User) (mailed bool, err error) {
	mp, ok := s.Mailer.(MailPreparer)
	if !ok || u.EmailVerified {
		return false, s.Store.CreateUser(ctx, u)
	}
	req := s.verificationMail(u)
	pm, err := mp.Prepare(req)
	if err != nil {
		// A mail that cannot be rendered must not fail the sign-up.
		s.Logger.Error("prepare verification mail", "err", err)
		return false, s.Store.CreateUser(ctx, u)
	}
	err = s.Store.CreateUserWithMail(ctx, u, pm.Message(), req.Secrets...)
	pm.Done(err == nil)
	return err == nil, err
}

// ResendVerification mails the caller a new verification link.
func (s *Service) ResendVerification(ctx context.Context, p Principal, c Client) error {
	if s.Mailer == nil {
		return ErrNotConfigured
	}
	u, err := s.Store.UserByID(ctx, p.UserID)
	if err != nil {
		return fmt.Errorf("resend verification: %w", err)
	}
	if u.EmailVerified {
		return ErrAlreadyVerified
	}
	if err := s.limitMail(ctx, u.Email, c.IP); err != nil {
		return err
	}
	s.sendVerification(ctx, u)
	return nil
}

// VerifyEmail spends a verification token. The address it was sent to
// must still be the user's.
func (s *Service) VerifyEmail(ctx context.Context, tok string) (gatehouse.User, error) {
	sec, err := s.useToken(ctx, gatehouse.SecretVerifyEmail, tok)
	if err != nil {
		return gatehouse.User{}, err
	}
	u, err := s.markVerified(ctx, sec.Subject, sec.Data)
	if err != nil {
		return gatehouse.User{}, err
	}
	s.recordAudit(ctx, audit.Event{Type: audit.TypeEmailVerified, UserID: u.ID})
	return u, nil
}

func (s *Service) markVerified(ctx context.Context, userID, email string) (gatehouse.User, error) {
	u, err := s.Emails.SetEmailVerified(ctx, userID, email)
	if errors.Is(err, gatehouse.ErrStale) || errors.Is(err, gatehouse.ErrNotFound) {
		return gatehouse.User{}, ErrInvalidLink
	}
	if err != nil {
		return gatehouse.User{}, fmt.Errorf("verify email: %w", err)
	}
	s.users.forget(userID)
	return u, nil
}

// --- password reset -----------------------------------------------------

// ForgotPassword mails a reset link to an existing, enabled account. The
// answer is the same for any address: the limits are keyed alike, and the
// lookup and mail happen after the answer.
func (s *Service) ForgotPassword(ctx context.Context, email string, c Client) error {
	if s.Mailer == nil {
		return ErrNotConfigured
	}
	if err := s.limitMail(ctx, email, c.IP); err != nil {
		return err
	}
	s.background(ctx, func(ctx context.Context) {
		u, ok := s.mailableUser(ctx, email)
		if !ok {
			return
		}
		tok, sec := s.mintSecret(gatehouse.SecretResetPassword, u.ID, u.Email, resetPasswordTTL)
		s.queue(ctx, MailRequest{To: u.Email, Template: TemplateResetPassword, Link: s.link("reset-password", tok), Lifetime: resetPasswordTTL,
			Secrets: []gatehouse.OneTimeSecret{sec}})
	})
	return nil
}

// mailableUser finds the enabled account of email, if any.
func (s *Service) mailableUser(ctx context.Context, email string) (gatehouse.User, bool) {
	if checkEmail(email) != "" {
		return gatehouse.User{}, false
	}
	u, err := s.Store.UserByEmail(ctx, email)
	if err != nil {
		if !errors.Is(err, gatehouse.ErrNotFound) {
			s.Logger.Error("mail: look up user", "err", err)
		}
		return gatehouse.User{}, false
	}
	return u, !u.Disabled
}

// ResetPassword sets a new password with a reset token, verifies the email
// (the link proved it) and ends every session of the user.
func (s *Service) ResetPassword(ctx context.Context, tok, next string) error {
	if next == "" {
		return invalid("new_password", "is required")
	}
	if err := checkPassword("new_password", next); err != nil {
		return err // before the token is spent: a weak password costs no link
	}
	sec, err := s.useToken(ctx, gatehouse.SecretResetPassword, tok)
	if err != nil {
		return err
	}
	u, err := s.Store.UserByID(ctx, sec.Subject)
	if errors.Is(err, gatehouse.ErrNotFound) {
		return ErrInvalidLink
	}
	if err != nil {
		return fmt.Errorf("reset password: %w", err)
	}
	if u.Disabled {
		return ErrInvalidLink
	}
	hash, err := s.Hasher.Hash(ctx, next)
	if err != nil {
		return s.hashError(err)
	}
	ctx, cancel := detach(ctx)
	defer cancel()
	// Setting the hash advances the user's version, so a login in flight
	// with the old password cannot start a session after this; the
	// sessions that exist end below.
	if err := s.Store.SetPasswordHash(ctx, u.ID, "", hash); err != nil {
		return fmt.Errorf("reset password: %w", err)
	}
	if err := s.Secrets.DeleteSecrets(ctx, gatehouse.SecretResetPassword, u.ID); err != nil {
		s.Logger.Warn("void reset links", "user_id", u.ID, "err", err)
	}
	if _, err := s.markVerified(ctx, u.ID, sec.Data); err != nil && !errors.Is(err, ErrInvalidLink) {
		return err
	}
	s.recordAudit(ctx, audit.Event{Type: audit.TypePasswordReset, UserID: u.ID})
	return s.revokeUserSessions(ctx, u.ID, "", ReasonPasswordReset, s.now())
}

// voidResetLinks is called after a password change: a link mailed before
// must not set a password over the one just chosen.
func (s *Service) voidResetLinks(ctx context.Context, userID string) error {
	if s.Secrets == nil {
		return nil
	}
	if err := s.Secrets.DeleteSecrets(ctx, gatehouse.SecretResetPassword, userID); err != nil {
		return fmt.Errorf("void reset links: %w", err)
	}
	return nil
}

// --- magic links and codes ----------------------------------------------

// emailSubject is the secret subject of an address without an account.
func emailSubject(email string) string { return "email:" + gatehouse.EmailKey(email) }

// MagicLink mails a sign-in link and code to an existing, enabled account,
// or to any valid address with MagicLinkSignup. Same answer for any address.
func (s *Service) MagicLink(ctx context.Context, email string, c Client) error {
	if s.Mailer == nil {
		return ErrNotConfigured
	}
	if err := s.limitMail(ctx, email, c.IP); err != nil {
		return err
	}
	s.background(ctx, func(ctx context.Context) {
		subject, to := "", ""
		if u, ok := s.mailableUser(ctx, email); ok {
			subject, to = u.ID, u.Email
		} else if s.cfg.MagicLinkSignup && checkEmail(email) == "" {
			if _, err := s.Store.UserByEmail(ctx, email); errors.Is(err, gatehouse.ErrNotFound) {
				subject, to = emailSubject(email), email
			}
		}
		if subject == "" {
			return
		}
		tok, link := s.mintSecret(gatehouse.SecretMagicLink, subject, to, magicLinkTTL)
		code, mac := s.SecretCodec.NewCode(gatehouse.SecretMagicCode, subject)
		now := s.now()
		codeSecret := gatehouse.OneTimeSecret{
			ID: uuid.Must(uuid.NewV7()).String(), Kind: gatehouse.SecretMagicCode, Subject: subject, MAC: mac, Data: to,
			CreatedAt: now, ExpiresAt: now.Add(magicLinkTTL),
		}
		s.queue(ctx, MailRequest{To: to, Template: TemplateMagicLink, Link: s.link("magic-link", tok), Code: code, Lifetime: magicLinkTTL,
			Secrets: []gatehouse.OneTimeSecret{link, codeSecret}})
	})
	return nil
}

// MagicLinkInput is a link token, or an email with the code mailed to it.
type MagicLinkInput struct {
	Token, Email, Code string
}

// MagicLinkSignIn spends a magic link or code and starts a session with
// amr ["email"]; the address is verified by it.
func (s *Service) MagicLinkSignIn(ctx context.Context, in MagicLinkInput, c Client) (Grant, error) {
	var sec gatehouse.OneTimeSecret
	var err error
	if in.Token != "" {
		if sec, err = s.useToken(ctx, gatehouse.SecretMagicLink, in.Token); err != nil {
			return Grant{}, err
		}
	} else if sec, err = s.useCode(ctx, in.Email, in.Code); err != nil {
		return Grant{}, err
	}
	// Link and code were mailed together: spending one voids the other.
	for _, kind := range []gatehouse.SecretKind{gatehouse.SecretMagicLink, gatehouse.SecretMagicCode} {
		if err := s.Secrets.DeleteSecrets(ctx, kind, sec.Subject); err != nil {
			s.Logger.Warn("void magic link", "err", err)
		}
	}
	u, err := s.magicLinkUser(ctx, sec)
	if err != nil {
		return Grant{}, err
	}
	if u, err = s.markVerified(ctx, u.ID, sec.Data); err != nil {
		return Grant{}, err
	}
	if err := s.requireSecondFactor(ctx, u, []string{MethodEmail}); err != nil {
		return Grant{}, err
	}
	return s.startSession(ctx, u, c, []string{MethodEmail}, nil)
}

// useCode spends a sign-in code typed with its address. Guesses count
// against the account like failed logins, and against the code itself.
func (s *Service) useCode(ctx context.Context, email, code string) (gatehouse.OneTimeSecret, error) {
	accountKey := "login:account:" + accountLimitKey(email)
	if err := s.limit(ctx, accountKey, s.cfg.LoginRate); err != nil {
		return gatehouse.OneTimeSecret{}, err
	}
	if !token.ValidCode(code) || checkEmail(email) != "" {
		return gatehouse.OneTimeSecret{}, ErrInvalidCode
	}
	subject, userID := emailSubject(email), ""
	if u, err := s.Store.UserByEmail(ctx, email); err == nil {
		subject, userID = u.ID, u.ID
	} else if !errors.Is(err, gatehouse.ErrNotFound) {
		return gatehouse.OneTimeSecret{}, fmt.Errorf("magic code: %w", err)
	}
	sec, err := s.Secrets.UseSecretOf(ctx, gatehouse.SecretMagicCode, subject,
		s.SecretCodec.CodeMAC(gatehouse.SecretMagicCode, subject, code), s.now(), maxSecretAttempts)
	if errors.Is(err, gatehouse.ErrMismatch) && userID != "" {
		// A wrong guess at a live code of an existing account.
		s.recordLogin(ctx, userID, "", Client{}, []string{MethodEmail}, audit.ReasonWrongCode)
	}
	if errors.Is(err, gatehouse.ErrNotFound) || errors.Is(err, gatehouse.ErrMismatch) {
		return gatehouse.OneTimeSecret{}, ErrInvalidCode
	}
	if err != nil {
		return gatehouse.OneTimeSecret{}, fmt.Errorf("magic code: %w", err)
	}
	s.refund(ctx, accountKey, s.cfg.LoginRate)
	return sec, nil
}

// magicLinkUser is the account a spent magic secret signs in: its user, or
// for an address without one (MagicLinkSignup) a new account, verified.
func (s *Service) magicLinkUser(ctx context.Context, sec gatehouse.OneTimeSecret) (gatehouse.User, error) {
	if !strings.HasPrefix(sec.Subject, "email:") {
		u, err := s.Store.UserByID(ctx, sec.Subject)
		if errors.Is(err, gatehouse.ErrNotFound) || (err == nil && u.Disabled) {
			return gatehouse.User{}, ErrInvalidLink
		}
		if err != nil {
			return gatehouse.User{}, fmt.Errorf("magic link: %w", err)
		}
		return u, nil
	}
	if !s.cfg.MagicLinkSignup {
		return gatehouse.User{}, ErrInvalidLink
	}
	u := gatehouse.User{
		ID: uuid.Must(uuid.NewV7()).String(), Email: sec.Data, Role: gatehouse.RoleUser,
		CreatedAt: s.now(), Version: 1, EmailVerified: true,
		// No password: one can be set with a reset link.
	}
	err := s.Store.CreateUser(ctx, u)
	if err == nil {
		s.recordAudit(ctx, audit.Event{Type: audit.TypeSignup, UserID: u.ID, Detail: audit.Detail{audit.KeyMethod: MethodEmail}})
	}
	if errors.Is(err, gatehouse.ErrEmailTaken) {
		// Signed up meanwhile; the link proves the address all the same.
		existing, err := s.Store.UserByEmail(ctx, sec.Data)
		if err != nil || existing.Disabled {
			return gatehouse.User{}, ErrInvalidLink
		}
		return existing, nil
	}
	if err != nil {
		return gatehouse.User{}, fmt.Errorf("magic link sign-up: %w", err)
	}
	return u, nil
}

// --- email change -------------------------------------------------------

// RequestEmailChange mails a confirmation link to the new address and a
// notice to the current one, after checking the current password.
func (s *Service) RequestEmailChange(ctx context.Context, p Principal, newEmail, current string, c Client) error {
	if s.Mailer == nil {
		return ErrNotConfigured
	}
	var fields []FieldError
	if msg := checkEmail(newEmail); msg != "" {
		fields = append(fields, FieldError{Field: "new_email", Message: msg})
	}
	if current == "" {
		fields = append(fields, FieldError{Field: "current_password", Message: "is required"})
	}
	if len(fields) > 0 {
		return &ValidationError{Fields: fields}
	}
	accountKey := "password:account:" + p.UserID
	if err := s.limit(ctx, accountKey, s.cfg.LoginRate); err != nil {
		return err
	}
	u, err := s.Store.UserByID(ctx, p.UserID)
	if err != nil {
		return fmt.Errorf("change email: %w", err)
	}
	if err := s.checkPasswordOf(ctx, u, current); err != nil {
		return err
	}
	s.refund(ctx, accountKey, s.cfg.LoginRate)
	if err := s.limitMail(ctx, newEmail, c.IP); err != nil {
		return err
	}
	if gatehouse.EmailKey(newEmail) == gatehouse.EmailKey(u.Email) {
		return invalid("new_email", "is already this account's address")
	}
	if _, err := s.Store.UserByEmail(ctx, newEmail); err == nil {
		return gatehouse.ErrEmailTaken
	} else if !errors.Is(err, gatehouse.ErrNotFound) {
		return fmt.Errorf("change email: %w", err)
	}
	tok, sec := s.mintSecret(gatehouse.SecretChangeEmail, u.ID, newEmail, changeEmailTTL)
	if err := s.Mailer.Queue(ctx, MailRequest{To: newEmail, Template: TemplateChangeEmail, Link: s.link("change-email", tok), Lifetime: changeEmailTTL,
		NewEmail: newEmail, OldEmail: u.Email, Secrets: []gatehouse.OneTimeSecret{sec}}); err != nil {
		return fmt.Errorf("change email: %w", err)
	}
	s.queue(ctx, MailRequest{To: u.Email, Template: TemplateEmailChanged, NewEmail: newEmail, OldEmail: u.Email})
	return nil
}

// ConfirmEmailChange spends an email-change token: the new address
// replaces the old one, verified.
func (s *Service) ConfirmEmailChange(ctx context.Context, tok string) (gatehouse.User, error) {
	sec, err := s.useToken(ctx, gatehouse.SecretChangeEmail, tok)
	if err != nil {
		return gatehouse.User{}, err
	}
	u, err := s.Store.UserByID(ctx, sec.Subject)
	if errors.Is(err, gatehouse.ErrNotFound) || (err == nil && u.Disabled) {
		return gatehouse.User{}, ErrInvalidLink
	}
	if err != nil {
		return gatehouse.User{}, fmt.Errorf("confirm email change: %w", err)
	}
	changed, err := s.Emails.ChangeEmail(ctx, u.ID, u.Email, sec.Data)
	if errors.Is(err, gatehouse.ErrStale) {
		return gatehouse.User{}, ErrInvalidLink
	}
	if err != nil {
		return gatehouse.User{}, fmt.Errorf("confirm email change: %w", err)
	}
	s.users.forget(u.ID)
	s.recordAudit(ctx, audit.Event{Type: audit.TypeEmailChanged, UserID: u.ID})
	return changed, nil
}
