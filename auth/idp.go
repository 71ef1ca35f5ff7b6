package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/audit"
	"github.com/gatehouse/gatehouse/idp"
	"github.com/gatehouse/gatehouse/sealbox"
)

// Sign-in with external identity providers (API.md part 2, "External
// identity providers"). A provider proves who the user is; the session
// code (session.go) issues the tokens, with amr ["fed"].
//
// The browser's round trip: AuthorizeIdP stores the state as a one-time
// secret (so a callback cannot be replayed, on any instance) and returns
// the provider's URL and a sealed flow (state, nonce, PKCE verifier,
// redirect_to) for a __Host- cookie; IdPCallback checks the callback's
// state against that cookie, spends the stored state, redeems the code with
// the verifier, verifies the ID token and matches or links the identity.

// MethodFederated is the amr of a sign-in through an external provider.
const MethodFederated = "fed"

// loginCodeTTL is how long a login_code handed to a native app lives.
const loginCodeTTL = 60 * time.Second

// Errors of the provider flows that reach a client as a problem.
var (
	// ErrInvalidRedirect: redirect_to is not allowed (400 invalid_redirect).
	ErrInvalidRedirect = errors.New("redirect_to not allowed")
	// ErrAccountExists: the identity matches an account it may not be
	// linked to automatically (409 account_exists).
	ErrAccountExists = errors.New("account exists")
)

// Codes a callback puts in the fragment of redirect_to as #error=<code>.
const (
	IdPErrInvalidState      = "invalid_state"      // missing, wrong, replayed or expired state or cookie
	IdPErrAccessDenied      = "access_denied"      // the user cancelled at the provider
	IdPErrProvider          = "provider_error"     // the provider refused the code or answered nonsense
	IdPErrInvalidIDToken    = "invalid_id_token"   // signature, iss, aud, exp or nonce wrong
	IdPErrUnavailable       = "unavailable"        // the provider is down or slow
	IdPErrAccountExists     = "account_exists"     // sign in and link from the account page
	IdPErrSignupDisabled    = "signup_disabled"    // no account, and this provider creates none
	IdPErrEmailNotVerified  = "email_not_verified" // the provider vouches for no address
	IdPErrLoginRequired     = "login_required"     // link=1 without a signed-in session
	IdPErrInvalidCredential = "invalid_credentials"
	IdPErrMFARequired       = "mfa_required" // with mfa_token and methods
	IdPErrRateLimited       = "rate_limited"
	IdPErrNotConfigured     = "not_configured"
)

// IdPDeps are what the provider flows need beyond the service's Deps.
type IdPDeps struct {
	Store    gatehouse.IdPStore
	Registry *idp.Registry
	// FlowBox seals the flow cookie (a key derived from the master secret).
	FlowBox   *sealbox.Box
	Redirects idp.RedirectPolicy
}

func (s *Service) idpOn() error {
	if s.IdP.Store == nil || s.IdP.Registry == nil || s.IdP.FlowBox == nil {
		return ErrNotConfigured
	}
	return nil
}

// SignInProviders lists the providers for sign-in buttons.
func (s *Service) SignInProviders(ctx context.Context) ([]gatehouse.IdentityProvider, error) {
	if s.IdP.Store == nil {
		return nil, nil
	}
	list, err := s.IdP.Store.IdentityProviders(ctx)
	if err != nil {
		return nil, fmt.Errorf("identity providers: %w", err)
	}
	return list, nil
}

// IdPRedirectURI is the callback URL to register at provider name.
func (s *Service) IdPRedirectURI(name string) string {
	return strings.TrimRight(s.cfg.PublicURL, "/") + "/auth/idps/" + name + "/callback"
}

// AuthorizeInput starts a sign-in (or a link) at a provider.
type AuthorizeInput struct {
	Provider   string
	RedirectTo string
	Transport  gatehouse.Transport
	// Link asks to link the identity to the signed-in user whose session
	// LinkSession is (found from the refresh cookie by the HTTP layer).
	Link        bool
	LinkSession *gatehouse.Session
}

// Authorization is where to send the browser, and the sealed flow for the
// cookie. When Error is set, the browser goes to RedirectTo with that
// code instead (redirect_to was valid, so the answer can go there).
type Authorization struct {
	URL        string
	FlowCookie string
	RedirectTo string
	Error      string
}

// AuthorizeIdP validates the request and prepares the redirect. An
// unknown provider or a redirect_to that is not allowed are errors (no
// redirect can be trusted yet); later failures are answered in the
// fragment of redirect_to.
func (s *Service) AuthorizeIdP(ctx context.Context, in AuthorizeInput, c Client) (Authorization, error) {
	if err := s.idpOn(); err != nil {
		return Authorization{}, err
	}
	if !idp.ValidName(in.Provider) {
		return Authorization{}, gatehouse.ErrNotFound
	}
	p, err := s.IdP.Store.IdentityProvider(ctx, in.Provider)
	if err != nil {
		return Authorization{}, fmt.Errorf("authorize %s: %w", in.Provider, err)
	}
	back, err := s.IdP.Redirects.Check(in.RedirectTo)
	if err != nil {
		return Authorization{}, ErrInvalidRedirect
	}
	fail := func(code string) (Authorization, error) {
		return Authorization{RedirectTo: back, Error: code}, nil
	}
	// Each authorize stores a state row; a flood from one address is
	// limited like logins.
	if err := s.limit(ctx, "idp:ip:"+ipLimitKey(c.IP), s.cfg.LoginRate); err != nil {
		return fail(IdPErrRateLimited)
	}
	linkUser := ""
	if in.Link {
		if in.LinkSession == nil {
			return fail(IdPErrLoginRequired)
		}
		linkUser = in.LinkSession.UserID
	}
	up, err := s.IdP.Registry.Upstream(p)
	if err != nil {
		s.Logger.Error("identity provider", "provider", p.Name, "err", err)
		return fail(IdPErrNotConfigured)
	}
	state, id, mac := s.SecretCodec.New(gatehouse.SecretIdPState)
	now := s.now()
	flow := idp.NewFlow(p.Name, state, back, string(in.Transport), linkUser, now)
	authURL, err := up.AuthCodeURL(ctx, state, flow.Nonce, flow.Verifier, s.IdPRedirectURI(p.Name))
	if err != nil {
		s.Logger.Warn("identity provider unavailable", "provider", p.Name, "err", err)
		return fail(IdPErrUnavailable)
	}
	// Its own subject, so concurrent sign-ins (two tabs) do not void each
	// other's state.
	err = s.Secrets.CreateSecret(ctx, gatehouse.OneTimeSecret{
		ID: id, Kind: gatehouse.SecretIdPState, Subject: "flow:" + id, MAC: mac, Data: p.Name,
		CreatedAt: now, ExpiresAt: now.Add(idp.FlowTTL),
	})
	if err != nil {
		return Authorization{}, fmt.Errorf("authorize %s: store state: %w", p.Name, err)
	}
	return Authorization{URL: authURL, FlowCookie: flow.Seal(s.IdP.FlowBox), RedirectTo: back}, nil
}

// CallbackInput is what the provider sent back, with the flow cookie.
type CallbackInput struct {
	Provider   string
	Code       string
	State      string
	Error      string // the provider's error parameter
	FlowCookie string
}

// CallbackResult is how a callback ends: the browser goes to RedirectTo,
// with Error (and MFA) in the fragment, or LoginCode in the fragment (body
// transport), or with Grant's refresh cookie (cookie transport), or after a
// link with nothing added.
type CallbackResult struct {
	RedirectTo string
	Error      string
	MFA        *MFARequiredError
	Grant      *Grant
	LoginCode  string
	Linked     bool
}

// IdPCallback finishes a flow. It never returns an error: every failure
// is a code for the fragment of the flow's redirect_to (or of the default
// one when the flow cookie cannot be read), and no session exists.
func (s *Service) IdPCallback(ctx context.Context, in CallbackInput, c Client) CallbackResult {
	res := CallbackResult{RedirectTo: s.IdP.Redirects.Default()}
	if err := s.idpOn(); err != nil {
		res.Error = IdPErrNotConfigured
		return res
	}
	now := s.now()
	flow, err := idp.OpenFlow(s.IdP.FlowBox, in.FlowCookie, now)
	if err != nil {
		// No cookie (login CSRF: a callback planted in another browser),
		// a forged or expired one.
		res.Error = IdPErrInvalidState
		return res
	}
	res.RedirectTo = flow.RedirectTo
	if flow.Provider != in.Provider || in.State == "" ||
		subtle.ConstantTimeCompare([]byte(in.State), []byte(flow.State)) != 1 {
		res.Error = IdPErrInvalidState
		return res
	}
	// Single use on every instance: a replayed callback finds it spent.
	id, mac, ok := s.SecretCodec.Parse(gatehouse.SecretIdPState, in.State)
	if !ok {
		res.Error = IdPErrInvalidState
		return res
	}
	if _, err := s.Secrets.UseSecret(ctx, gatehouse.SecretIdPState, id, mac, now, 1); err != nil {
		if !errors.Is(err, gatehouse.ErrNotFound) {
			s.Logger.Error("idp callback: spend state", "err", err)
			res.Error = IdPErrUnavailable
			return res
		}
		res.Error = IdPErrInvalidState
		return res
	}
	if in.Error != "" {
		if in.Error == "access_denied" {
			res.Error = IdPErrAccessDenied
		} else {
			res.Error = IdPErrProvider
		}
		return res
	}
	if in.Code == "" {
		res.Error = IdPErrProvider
		return res
	}
	p, err := s.IdP.Store.IdentityProvider(ctx, flow.Provider)
	if err != nil {
		res.Error = IdPErrNotConfigured
		if !errors.Is(err, gatehouse.ErrNotFound) {
			res.Error = IdPErrUnavailable
		}
		return res
	}
	up, err := s.IdP.Registry.Upstream(p)
	if err != nil {
		s.Logger.Error("identity provider", "provider", p.Name, "err", err)
		res.Error = IdPErrNotConfigured
		return res
	}
	claims, err := up.Exchange(ctx, in.Code, flow.Verifier, flow.Nonce, s.IdPRedirectURI(p.Name))
	if err != nil {
		s.Logger.Info("idp sign-in refused", "provider", p.Name, "err", err)
		switch {
		case errors.Is(err, idp.ErrInvalidToken):
			res.Error = IdPErrInvalidIDToken
		case errors.Is(err, idp.ErrUnavailable):
			res.Error = IdPErrUnavailable
		default:
			res.Error = IdPErrProvider
		}
		return res
	}
	if flow.LinkUser != "" {
		if code := s.linkIdentity(ctx, p, flow.LinkUser, claims); code != "" {
			res.Error = code
			return res
		}
		res.Linked = true
		return res
	}
	u, code := s.matchIdentity(ctx, p, claims)
	if code != "" {
		res.Error = code
		return res
	}
	amr := []string{MethodFederated}
	if err := s.requireSecondFactor(ctx, u, amr); err != nil {
		var mfa *MFARequiredError
		if errors.As(err, &mfa) {
			res.Error, res.MFA = IdPErrMFARequired, mfa
			return res
		}
		s.Logger.Error("idp sign-in: second factor", "err", err)
		res.Error = IdPErrUnavailable
		return res
	}
	if flow.Transport == string(gatehouse.TransportBody) {
		// The native app gets a one-time code in its redirect and trades
		// it for tokens in a request body (ExchangeLoginCode), so no
		// refresh token travels in a URL.
		tok, err := s.newSecret(ctx, gatehouse.SecretIdPLogin, u.ID, strings.Join(amr, " "), loginCodeTTL)
		if err != nil {
			s.Logger.Error("idp sign-in: login code", "err", err)
			res.Error = IdPErrUnavailable
			return res
		}
		res.LoginCode = tok
		return res
	}
	c.Transport = gatehouse.TransportCookie
	g, err := s.startSession(ctx, u, c, amr, nil)
	if err != nil {
		if errors.Is(err, ErrInvalidCredentials) {
			res.Error = IdPErrInvalidCredential
		} else {
			s.Logger.Error("idp sign-in: start session", "err", err)
			res.Error = IdPErrUnavailable
		}
		return res
	}
	res.Grant = &g
	return res
}

// maxMatchAttempts bounds the retries of matchIdentity when a concurrent
// sign-in of the same identity or address wins a race.
const maxMatchAttempts = 3

// matchIdentity finds or creates the user of a provider identity (API.md:
// by (provider, subject) first; a new identity whose verified email
// matches an account with a verified email is linked to it; any other
// match is refused; no match creates a user unless signup is off). It
// returns the user, or a fragment error code.
//
// Pre-hijacking: an address is trusted only when both sides proved it. An
// unverified provider address never links and never creates an account
// (that account would hold an address its owner could later claim by a
// password reset while the attacker's identity stays linked); a local
// account whose address is unverified (anyone could have signed up with
// it) is never linked to.
func (s *Service) matchIdentity(ctx context.Context, p gatehouse.IdentityProvider, cl idp.Claims) (gatehouse.User, string) {
	for attempt := 0; attempt < maxMatchAttempts; attempt++ {
		ident, err := s.IdP.Store.IdentityBySubject(ctx, p.Name, cl.Subject)
		if err == nil {
			u, err := s.Store.UserByID(ctx, ident.UserID)
			if err != nil || u.Disabled {
				return gatehouse.User{}, IdPErrInvalidCredential
			}
			return u, ""
		}
		if !errors.Is(err, gatehouse.ErrNotFound) {
			s.Logger.Error("idp sign-in: identity", "err", err)
			return gatehouse.User{}, IdPErrUnavailable
		}
		if cl.Email == "" || checkEmail(cl.Email) != "" {
			return gatehouse.User{}, IdPErrEmailNotVerified
		}
		now := s.now()
		newIdent := gatehouse.Identity{
			ID: uuid.Must(uuid.NewV7()).String(), Provider: p.Name, Subject: cl.Subject,
			Email: cl.Email, CreatedAt: now,
		}
		existing, err := s.Store.UserByEmail(ctx, cl.Email)
		switch {
		case err == nil:
			if !cl.EmailVerified || !existing.EmailVerified {
				return gatehouse.User{}, IdPErrAccountExists
			}
			if existing.Disabled {
				return gatehouse.User{}, IdPErrInvalidCredential
			}
			newIdent.UserID = existing.ID
			err := s.IdP.Store.CreateIdentity(ctx, newIdent)
			if errors.Is(err, gatehouse.ErrStale) {
				continue // linked meanwhile by a concurrent sign-in
			}
			if err != nil {
				s.Logger.Error("idp sign-in: link", "err", err)
				return gatehouse.User{}, IdPErrUnavailable
			}
			s.Logger.Info("identity linked", "provider", p.Name, "user_id", existing.ID, "by", "verified email")
			s.recordAudit(ctx, audit.Event{Type: audit.TypeIdentityLinked, UserID: existing.ID,
				Detail: audit.Detail{audit.KeyProvider: p.Name, audit.KeyIdentityID: newIdent.ID}})
			return existing, ""
		case !errors.Is(err, gatehouse.ErrNotFound):
			s.Logger.Error("idp sign-in: user by email", "err", err)
			return gatehouse.User{}, IdPErrUnavailable
		}
		if p.NoSignup {
			return gatehouse.User{}, IdPErrSignupDisabled
		}
		if !cl.EmailVerified {
			return gatehouse.User{}, IdPErrEmailNotVerified
		}
		u := gatehouse.User{
			ID: uuid.Must(uuid.NewV7()).String(), Email: cl.Email, Name: providerName(cl.Name),
			Role: gatehouse.RoleUser, CreatedAt: now, Version: 1, EmailVerified: true,
			// No password: one can be set with a reset link.
		}
		newIdent.UserID = u.ID
		err = s.IdP.Store.CreateUserWithIdentity(ctx, u, newIdent)
		if errors.Is(err, gatehouse.ErrEmailTaken) || errors.Is(err, gatehouse.ErrStale) {
			continue // signed up or linked meanwhile: match again
		}
		if err != nil {
			s.Logger.Error("idp sign-up", "err", err)
			return gatehouse.User{}, IdPErrUnavailable
		}
		s.recordAudit(ctx, audit.Event{Type: audit.TypeSignup, UserID: u.ID,
			Detail: audit.Detail{audit.KeyMethod: MethodFederated, audit.KeyProvider: p.Name}})
		s.recordAudit(ctx, audit.Event{Type: audit.TypeIdentityLinked, UserID: u.ID,
			Detail: audit.Detail{audit.KeyProvider: p.Name, audit.KeyIdentityID: newIdent.ID}})
		return u, ""
	}
	return gatehouse.User{}, IdPErrUnavailable
}

// providerName keeps a provider's display name only when it is one
// Gatehouse would accept from a user.
func providerName(name string) string {
	name = strings.TrimSpace(name)
	if checkName(name) != "" || !utf8.ValidString(name) {
		return ""
	}
	return name
}

// linkIdentity links a provider identity to the signed-in user who asked
// (link=1). The provider's address does not matter here: the user proved
// both accounts are theirs. An identity linked to another user stays
// there (account_exists).
func (s *Service) linkIdentity(ctx context.Context, p gatehouse.IdentityProvider, userID string, cl idp.Claims) string {
	u, err := s.Store.UserByID(ctx, userID)
	if err != nil || u.Disabled {
		return IdPErrLoginRequired
	}
	ident, err := s.IdP.Store.IdentityBySubject(ctx, p.Name, cl.Subject)
	if err == nil {
		if ident.UserID == userID {
			return "" // already linked
		}
		return IdPErrAccountExists
	}
	if !errors.Is(err, gatehouse.ErrNotFound) {
		return IdPErrUnavailable
	}
	identID := uuid.Must(uuid.NewV7()).String()
	err = s.IdP.Store.CreateIdentity(ctx, gatehouse.Identity{
		ID: identID, Provider: p.Name, Subject: cl.Subject, UserID: userID,
		Email: cl.Email, CreatedAt: s.now(),
	})
	switch {
	case errors.Is(err, gatehouse.ErrStale):
		return IdPErrAccountExists
	case err != nil:
		s.Logger.Error("idp link", "err", err)
		return IdPErrUnavailable
	}
	s.Logger.Info("identity linked", "provider", p.Name, "user_id", userID, "by", "signed-in user")
	s.recordAudit(ctx, audit.Event{Type: audit.TypeIdentityLinked, UserID: userID,
		Detail: audit.Detail{audit.KeyProvider: p.Name, audit.KeyIdentityID: identID}})
	return ""
}

// ExchangeLoginCode trades a login_code (single use, 60 s) for a session
// whose refresh token travels in the body.
func (s *Service) ExchangeLoginCode(ctx context.Context, code string, c Client) (Grant, error) {
	if err := s.idpOn(); err != nil {
		return Grant{}, err
	}
	id, mac, ok := s.SecretCodec.Parse(gatehouse.SecretIdPLogin, code)
	if !ok {
		return Grant{}, ErrInvalidCode
	}
	sec, err := s.Secrets.UseSecret(ctx, gatehouse.SecretIdPLogin, id, mac, s.now(), maxSecretAttempts)
	if errors.Is(err, gatehouse.ErrNotFound) {
		return Grant{}, ErrInvalidCode
	}
	if err != nil {
		return Grant{}, fmt.Errorf("login code: %w", err)
	}
	u, err := s.Store.UserByID(ctx, sec.Subject)
	if errors.Is(err, gatehouse.ErrNotFound) || (err == nil && u.Disabled) {
		return Grant{}, ErrInvalidCode
	}
	if err != nil {
		return Grant{}, fmt.Errorf("login code: %w", err)
	}
	c.Transport = gatehouse.TransportBody
	return s.startSession(ctx, u, c, strings.Fields(sec.Data), nil)
}

// Identities lists the caller's linked identities.
func (s *Service) Identities(ctx context.Context, p Principal) ([]gatehouse.Identity, error) {
	if s.IdP.Store == nil {
		return nil, nil
	}
	list, err := s.IdP.Store.Identities(ctx, p.UserID)
	if err != nil {
		return nil, fmt.Errorf("identities: %w", err)
	}
	return list, nil
}

// DeleteIdentity unlinks one of the caller's identities, unless it is the
// only way left to sign in (checked by the store in the same step as the
// delete).
func (s *Service) DeleteIdentity(ctx context.Context, p Principal, id string) error {
	if s.IdP.Store == nil {
		return gatehouse.ErrNotFound
	}
	err := s.IdP.Store.DeleteIdentity(ctx, p.UserID, id)
	switch {
	case errors.Is(err, gatehouse.ErrStale):
		return ErrLastLoginMethod
	case err != nil:
		return fmt.Errorf("delete identity: %w", err)
	}
	s.users.forget(p.UserID)
	s.Logger.Info("identity unlinked", "user_id", p.UserID, "identity_id", id)
	s.recordAudit(ctx, audit.Event{Type: audit.TypeIdentityUnlinked, UserID: p.UserID, SessionID: p.SessionID,
		Detail: audit.Detail{audit.KeyIdentityID: id}})
	return nil
}

// hasIdentities reports whether the user has a linked identity (another
// way in when a passkey is removed).
func (s *Service) hasIdentities(ctx context.Context, userID string) (bool, error) {
	if s.IdP.Store == nil {
		return false, nil
	}
	list, err := s.IdP.Store.Identities(ctx, userID)
	if err != nil {
		return false, fmt.Errorf("identities: %w", err)
	}
	return len(list) > 0, nil
}

// PeekFlowState returns the state inside a flow cookie, or "" when it does
// not open (to pick the right one of several cookies).
func (s *Service) PeekFlowState(cookie string) string {
	if s.IdP.FlowBox == nil {
		return ""
	}
	f, err := idp.OpenFlow(s.IdP.FlowBox, cookie, s.now())
	if err != nil {
		return ""
	}
	return f.State
}
