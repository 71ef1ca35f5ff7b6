package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/audit"
)

// Passkeys (API.md part 2, "Passkeys"): WebAuthn with go-webauthn. The
// state of a ceremony lives in the one-time secret table, so any instance
// can finish what another began: a registration is found by its user and
// the challenge the browser signed, a sign-in by its challenge_id.

// MethodHardwareKey is the amr of a passkey (RFC 8176 "hwk").
const MethodHardwareKey = "hwk"

// FactorPasskey is the second-factor method of a passkey.
const FactorPasskey = "passkey"

const (
	passkeyCeremonyTTL = 5 * time.Minute
	maxPasskeyName     = 100
)

// passkeyUser is a user as go-webauthn sees it. The user handle is the
// user's id, so a discoverable sign-in names its account.
type passkeyUser struct {
	u     gatehouse.User
	creds []webauthn.Credential
}

func (p passkeyUser) WebAuthnID() []byte                         { return []byte(p.u.ID) }
func (p passkeyUser) WebAuthnName() string                       { return p.u.Email }
func (p passkeyUser) WebAuthnDisplayName() string                { return displayName(p.u) }
func (p passkeyUser) WebAuthnCredentials() []webauthn.Credential { return p.creds }

func displayName(u gatehouse.User) string {
	if u.Name != "" {
		return u.Name
	}
	return u.Email
}

// passkeyUserOf loads u's passkeys in go-webauthn's form.
func (s *Service) passkeyUserOf(ctx context.Context, u gatehouse.User) (passkeyUser, []gatehouse.Passkey, error) {
	keys, err := s.Passkeys.Passkeys(ctx, u.ID)
	if err != nil {
		return passkeyUser{}, nil, fmt.Errorf("passkeys: %w", err)
	}
	pu := passkeyUser{u: u}
	for _, k := range keys {
		var c webauthn.Credential
		if err := json.Unmarshal(k.Credential, &c); err != nil {
			return passkeyUser{}, nil, fmt.Errorf("passkey %s: stored credential: %w", k.ID, err)
		}
		pu.creds = append(pu.creds, c)
	}
	return pu, keys, nil
}

func (s *Service) passkeysOn() error {
	if s.WebAuthn == nil || s.Passkeys == nil {
		return ErrNotConfigured
	}
	return nil
}

// BeginPasskeyRegistration returns creation options for a discoverable
// credential, excluding the user's existing passkeys.
func (s *Service) BeginPasskeyRegistration(ctx context.Context, p Principal) (*protocol.CredentialCreation, error) {
	if err := s.passkeysOn(); err != nil {
		return nil, err
	}
	u, err := s.Store.UserByID(ctx, p.UserID)
	if err != nil {
		return nil, fmt.Errorf("passkey registration: %w", err)
	}
	pu, _, err := s.passkeyUserOf(ctx, u)
	if err != nil {
		return nil, err
	}
	exclude := make([]protocol.CredentialDescriptor, len(pu.creds))
	for i, c := range pu.creds {
		exclude[i] = c.Descriptor()
	}
	creation, session, err := s.WebAuthn.BeginRegistration(pu,
		webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired),
		webauthn.WithExclusions(exclude))
	if err != nil {
		return nil, fmt.Errorf("passkey registration: %w", err)
	}
	if err := s.saveCeremony(ctx, gatehouse.SecretPasskeyRegister, uuid.Must(uuid.NewV7()).String(), u.ID, session); err != nil {
		return nil, err
	}
	return creation, nil
}

// saveCeremony stores a ceremony's session data as a one-time secret whose
// MAC covers the challenge, so finishing needs the challenge the
// authenticator signed.
func (s *Service) saveCeremony(ctx context.Context, kind gatehouse.SecretKind, id, subject string, session *webauthn.SessionData) error {
	data, err := json.Marshal(session)
	if err != nil {
		return fmt.Errorf("passkey ceremony: %w", err)
	}
	now := s.now()
	err = s.Secrets.CreateSecret(ctx, gatehouse.OneTimeSecret{
		ID: id, Kind: kind, Subject: subject, MAC: s.SecretCodec.CodeMAC(kind, subject, session.Challenge),
		Data: string(data), CreatedAt: now, ExpiresAt: now.Add(passkeyCeremonyTTL),
	})
	if err != nil {
		return fmt.Errorf("passkey ceremony: %w", err)
	}
	return nil
}

// FinishPasskeyRegistration verifies the new credential and stores it.
func (s *Service) FinishPasskeyRegistration(ctx context.Context, p Principal, credential []byte, name string) (gatehouse.Passkey, error) {
	if err := s.passkeysOn(); err != nil {
		return gatehouse.Passkey{}, err
	}
	name = strings.TrimSpace(name)
	if msg := checkName(name); msg != "" || len([]rune(name)) > maxPasskeyName {
		return gatehouse.Passkey{}, invalid("name", "must be at most 100 printable characters")
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(credential)
	if err != nil {
		return gatehouse.Passkey{}, ErrBadCredential
	}
	sec, err := s.Secrets.UseSecretOf(ctx, gatehouse.SecretPasskeyRegister, p.UserID,
		s.SecretCodec.CodeMAC(gatehouse.SecretPasskeyRegister, p.UserID, parsed.Response.CollectedClientData.Challenge),
		s.now(), maxSecretAttempts)
	if errors.Is(err, gatehouse.ErrNotFound) || errors.Is(err, gatehouse.ErrMismatch) {
		return gatehouse.Passkey{}, ErrBadCredential
	}
	if err != nil {
		return gatehouse.Passkey{}, fmt.Errorf("passkey registration: %w", err)
	}
	var session webauthn.SessionData
	if err := json.Unmarshal([]byte(sec.Data), &session); err != nil {
		return gatehouse.Passkey{}, fmt.Errorf("passkey registration: session: %w", err)
	}
	u, err := s.Store.UserByID(ctx, p.UserID)
	if err != nil {
		return gatehouse.Passkey{}, fmt.Errorf("passkey registration: %w", err)
	}
	pu, _, err := s.passkeyUserOf(ctx, u)
	if err != nil {
		return gatehouse.Passkey{}, err
	}
	cred, err := s.WebAuthn.CreateCredential(pu, session, parsed)
	if err != nil {
		s.Logger.Debug("passkey registration refused", "user_id", u.ID, "err", err)
		return gatehouse.Passkey{}, ErrBadCredential
	}
	raw, err := json.Marshal(cred)
	if err != nil {
		return gatehouse.Passkey{}, fmt.Errorf("passkey registration: %w", err)
	}
	if name == "" {
		name = "Passkey"
	}
	pk := gatehouse.Passkey{ID: uuid.Must(uuid.NewV7()).String(), UserID: u.ID, CredentialID: cred.ID, Credential: raw, Name: name, CreatedAt: s.now()}
	if err := s.Passkeys.CreatePasskey(ctx, pk); err != nil {
		if errors.Is(err, gatehouse.ErrStale) {
			return gatehouse.Passkey{}, ErrBadCredential // already registered
		}
		return gatehouse.Passkey{}, fmt.Errorf("passkey registration: %w", err)
	}
	s.users.forget(u.ID)
	s.recordAudit(ctx, audit.Event{Type: audit.TypePasskeyAdded, UserID: u.ID, SessionID: p.SessionID,
		Detail: audit.Detail{audit.KeyPasskeyID: pk.ID}})
	return pk, nil
}

// BeginPasskeyLogin returns request options and their challenge_id: for any
// discoverable passkey, or with an mfa_token for that user's passkeys as
// the second factor.
func (s *Service) BeginPasskeyLogin(ctx context.Context, mfaToken string) (*protocol.CredentialAssertion, string, error) {
	if err := s.passkeysOn(); err != nil {
		return nil, "", err
	}
	var (
		assertion *protocol.CredentialAssertion
		session   *webauthn.SessionData
		err       error
	)
	tok, id, _ := s.SecretCodec.New(gatehouse.SecretPasskeyLogin)
	subject := "ceremony:" + id // its own subject: concurrent sign-ins do not void each other
	if mfaToken != "" {
		ref, err := s.peekMFA(ctx, mfaToken)
		if err != nil {
			return nil, "", err
		}
		u, err := s.Store.UserByID(ctx, ref.sec.Subject)
		if err != nil {
			return nil, "", ErrInvalidCredential
		}
		pu, _, err := s.passkeyUserOf(ctx, u)
		if err != nil {
			return nil, "", err
		}
		if len(pu.creds) == 0 {
			return nil, "", ErrInvalidCredential
		}
		subject = "mfa:" + u.ID
		assertion, session, err = s.WebAuthn.BeginLogin(pu)
		if err != nil {
			return nil, "", fmt.Errorf("passkey sign-in: %w", err)
		}
	} else {
		assertion, session, err = s.WebAuthn.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationPreferred))
		if err != nil {
			return nil, "", fmt.Errorf("passkey sign-in: %w", err)
		}
	}
	if err := s.saveCeremony(ctx, gatehouse.SecretPasskeyLogin, id, subject, session); err != nil {
		return nil, "", err
	}
	// The challenge_id is the secret's token: the stored MAC covers the
	// challenge, and the token's own MAC is checked by Parse below.
	return assertion, tok, nil
}

// mfaTokenRef is a parsed mfa_token: its stored secret, id and MAC.
type mfaTokenRef struct {
	sec gatehouse.OneTimeSecret
	id  string
	mac []byte
}

// peekMFA counts an attempt on an mfa_token and returns it.
func (s *Service) peekMFA(ctx context.Context, mfaToken string) (mfaTokenRef, error) {
	id, mac, ok := s.SecretCodec.Parse(gatehouse.SecretMFA, mfaToken)
	if !ok {
		return mfaTokenRef{}, ErrInvalidCredential
	}
	sec, err := s.Attempts.SpendSecretAttempt(ctx, gatehouse.SecretMFA, id, mac, s.now(), maxSecretAttempts)
	if errors.Is(err, gatehouse.ErrNotFound) {
		return mfaTokenRef{}, ErrInvalidCredential
	}
	if err != nil {
		return mfaTokenRef{}, fmt.Errorf("mfa token: %w", err)
	}
	return mfaTokenRef{sec: sec, id: id, mac: mac}, nil
}

// PasskeyLoginInput finishes a passkey sign-in.
type PasskeyLoginInput struct {
	ChallengeID string
	Credential  []byte
	MFAToken    string
}

// FinishPasskeyLogin verifies an assertion against its single-use
// challenge and starts the session (amr hwk, plus mfa when the
// authenticator verified the user or a first factor came before).
func (s *Service) FinishPasskeyLogin(ctx context.Context, in PasskeyLoginInput, c Client) (Grant, error) {
	if err := s.passkeysOn(); err != nil {
		return Grant{}, err
	}
	id, _, ok := s.SecretCodec.Parse(gatehouse.SecretPasskeyLogin, in.ChallengeID)
	if !ok {
		return Grant{}, ErrInvalidCredential
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(in.Credential)
	if err != nil {
		return Grant{}, ErrInvalidCredential
	}
	subject := "ceremony:" + id
	var mfaRef mfaTokenRef
	var accountKey string
	if in.MFAToken != "" {
		if mfaRef, err = s.peekMFA(ctx, in.MFAToken); err != nil {
			return Grant{}, err
		}
		subject = "mfa:" + mfaRef.sec.Subject
		// A second-factor attempt spends the account's budget like a code
		// guess at /auth/mfa/verify; a success gives it back.
		u, err := s.Store.UserByID(ctx, mfaRef.sec.Subject)
		if err != nil {
			return Grant{}, ErrInvalidCredential
		}
		accountKey = "login:account:" + accountLimitKey(u.Email)
		if err := s.limit(ctx, accountKey, s.cfg.LoginRate); err != nil {
			return Grant{}, err
		}
	}
	// Single use, and only for the challenge the authenticator signed.
	sec, err := s.Secrets.UseSecret(ctx, gatehouse.SecretPasskeyLogin, id,
		s.SecretCodec.CodeMAC(gatehouse.SecretPasskeyLogin, subject, parsed.Response.CollectedClientData.Challenge),
		s.now(), maxSecretAttempts)
	if errors.Is(err, gatehouse.ErrNotFound) {
		return Grant{}, ErrInvalidCredential
	}
	if err != nil {
		return Grant{}, fmt.Errorf("passkey sign-in: %w", err)
	}
	var session webauthn.SessionData
	if err := json.Unmarshal([]byte(sec.Data), &session); err != nil {
		return Grant{}, fmt.Errorf("passkey sign-in: session: %w", err)
	}
	var user gatehouse.User
	handler := func(rawID, userHandle []byte) (webauthn.User, error) {
		u, err := s.Store.UserByID(ctx, string(userHandle))
		if err != nil {
			return nil, fmt.Errorf("passkey user: %w", err)
		}
		pu, _, err := s.passkeyUserOf(ctx, u)
		if err != nil {
			return nil, err
		}
		user = u
		return pu, nil
	}
	var cred *webauthn.Credential
	if in.MFAToken != "" {
		if !bytes.Equal(session.UserID, []byte(mfaRef.sec.Subject)) {
			return Grant{}, ErrInvalidCredential
		}
		pu, err := handler(nil, []byte(mfaRef.sec.Subject))
		if err != nil {
			return Grant{}, ErrInvalidCredential
		}
		cred, err = s.WebAuthn.ValidateLogin(pu, session, parsed)
		if err != nil {
			s.Logger.Debug("passkey second factor refused", "err", err)
			s.recordLogin(ctx, mfaRef.sec.Subject, "", c, append(strings.Fields(mfaRef.sec.Data), FactorPasskey), audit.ReasonMFAFailed)
			return Grant{}, ErrInvalidCredential
		}
	} else {
		cred, err = s.WebAuthn.ValidateDiscoverableLogin(handler, session, parsed)
		if err != nil {
			s.Logger.Debug("passkey sign-in refused", "err", err)
			return Grant{}, ErrInvalidCredential
		}
	}
	if user.Disabled || cred.Authenticator.CloneWarning {
		return Grant{}, ErrInvalidCredential
	}
	if err := s.recordPasskeyUse(ctx, cred); err != nil {
		return Grant{}, err
	}
	verified := parsed.Response.AuthenticatorData.Flags.HasUserVerified()
	var amr []string
	if in.MFAToken != "" {
		if _, err := s.Secrets.UseSecret(ctx, gatehouse.SecretMFA, mfaRef.id, mfaRef.mac, s.now(), maxSecretAttempts+1); err != nil {
			return Grant{}, ErrInvalidCredential
		}
		amr = append(strings.Fields(mfaRef.sec.Data), MethodHardwareKey, MethodMFA)
		s.refund(ctx, accountKey, s.cfg.LoginRate)
	} else {
		amr = []string{MethodHardwareKey}
		if verified {
			// A passkey that verified its user (PIN, biometrics) is two
			// factors in one: something held and something known or been.
			amr = append(amr, MethodMFA)
		}
	}
	return s.startSession(ctx, user, c, amr, nil)
}

// recordPasskeyUse stores the credential's new sign count and flags, as a
// compare-and-swap so that one assertion cannot be used twice at once.
func (s *Service) recordPasskeyUse(ctx context.Context, cred *webauthn.Credential) error {
	pk, err := s.Passkeys.PasskeyByCredentialID(ctx, cred.ID)
	if errors.Is(err, gatehouse.ErrNotFound) {
		return ErrInvalidCredential
	}
	if err != nil {
		return fmt.Errorf("passkey sign-in: %w", err)
	}
	raw, err := json.Marshal(cred)
	if err != nil {
		return fmt.Errorf("passkey sign-in: %w", err)
	}
	err = s.Passkeys.UpdatePasskeyUse(ctx, pk.ID, pk.Credential, raw, s.now())
	if errors.Is(err, gatehouse.ErrStale) || errors.Is(err, gatehouse.ErrNotFound) {
		return ErrInvalidCredential
	}
	if err != nil {
		return fmt.Errorf("passkey sign-in: %w", err)
	}
	return nil
}

// ListPasskeys returns the caller's passkeys.
func (s *Service) ListPasskeys(ctx context.Context, p Principal) ([]gatehouse.Passkey, error) {
	if err := s.passkeysOn(); err != nil {
		return nil, err
	}
	keys, err := s.Passkeys.Passkeys(ctx, p.UserID)
	if err != nil {
		return nil, fmt.Errorf("passkeys: %w", err)
	}
	return keys, nil
}

// DeletePasskey removes one of the caller's passkeys, unless it is the only
// way left to sign in (no password, no other passkey).
func (s *Service) DeletePasskey(ctx context.Context, p Principal, id string) error {
	if err := s.passkeysOn(); err != nil {
		return err
	}
	u, err := s.Store.UserByID(ctx, p.UserID)
	if err != nil {
		return fmt.Errorf("delete passkey: %w", err)
	}
	n, err := s.Passkeys.CountPasskeys(ctx, u.ID)
	if err != nil {
		return fmt.Errorf("delete passkey: %w", err)
	}
	keys, err := s.Passkeys.Passkeys(ctx, u.ID)
	if err != nil {
		return fmt.Errorf("delete passkey: %w", err)
	}
	owned := false
	for _, k := range keys {
		owned = owned || k.ID == id
	}
	if !owned {
		return gatehouse.ErrNotFound
	}
	if u.PasswordHash == "" && n <= 1 {
		linked, err := s.hasIdentities(ctx, u.ID)
		if err != nil {
			return fmt.Errorf("delete passkey: %w", err)
		}
		if !linked {
			return ErrLastLoginMethod
		}
	}
	if err := s.Passkeys.DeletePasskey(ctx, u.ID, id); err != nil {
		return fmt.Errorf("delete passkey: %w", err)
	}
	s.users.forget(u.ID)
	s.recordAudit(ctx, audit.Event{Type: audit.TypePasskeyRemoved, UserID: u.ID, SessionID: p.SessionID,
		Detail: audit.Detail{audit.KeyPasskeyID: id}})
	return nil
}

// PasskeyCount is how many passkeys a user has (for /auth/me).
func (s *Service) PasskeyCount(ctx context.Context, userID string) (int, error) {
	if s.Passkeys == nil {
		return 0, nil
	}
	n, err := s.Passkeys.CountPasskeys(ctx, userID)
	if err != nil {
		return 0, fmt.Errorf("passkeys: %w", err)
	}
	return n, nil
}
