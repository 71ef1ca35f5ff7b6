// Package gatehouse holds the domain of the Gatehouse authentication server:
// users, sessions, revocations and signing keys, the error codes clients switch
// on, and the storage interface every backend implements. It imports nothing
// from the rest of the project; every other package depends on it.
package gatehouse

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Role is a user's authorisation level.
type Role string

// The roles Gatehouse knows.
const (
	RoleUser  Role = "user"
	RoleAdmin Role = "admin"
)

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool { return r == RoleUser || r == RoleAdmin }

// Transport is how a session's refresh token travels between client and server.
type Transport string

// The refresh-token transports.
const (
	TransportCookie Transport = "cookie"
	TransportBody   Transport = "body"
)

// User is an account. Email is stored as given and compared case-insensitively.
type User struct {
	ID           string
	Email        string
	Name         string
	Role         Role
	PasswordHash string
	Disabled     bool
	CreatedAt    time.Time
	// TokensValidAfter is the earliest issued-at an access token of this user
	// may carry (a whole second). It moves forward on a role change or when
	// the account is disabled, so tokens issued before are rejected and
	// tokens issued after are stamped no earlier than it. Zero means none.
	TokensValidAfter time.Time
	// Version changes with every change of role, enabled state or password
	// (not with a rehash of the same password). A session is created only
	// against the version its login read (Store.CreateSession), so a login
	// that overlapped such a change cannot outlive it.
	Version uint64
	// EmailVerified is set when the user proved they receive mail at Email
	// (a verification link, a magic link or code, a password reset, an
	// email change confirmed on the new address).
	EmailVerified bool
	// TOTPEnabled is read, not written: whether the user has a confirmed
	// authenticator-app factor (for admin listings and /auth/me).
	TOTPEnabled bool
	// Passkeys is filled by the service for /auth/me (how many passkeys
	// the user has); stores neither read nor write it.
	Passkeys int
}

// Session is one device's login. It holds no token material: the refresh
// token of generation Gen is recomputed from (ID, Gen) and the master secret.
type Session struct {
	ID           string
	UserID       string
	Gen          uint64 // current refresh-token generation, starting at 1
	CreatedAt    time.Time
	RotatedAt    time.Time // when Gen last advanced (CreatedAt at first)
	LastUsedAt   time.Time
	ExpiresAt    time.Time // absolute expiry
	RevokedAt    time.Time // zero while not revoked
	RevokeReason string
	UserAgent    string
	IP           string
	Transport    Transport
	// AMR lists the methods used at this session's sign-in (RFC 8176
	// style: "pwd", "email", ...); every access token of the session
	// carries it, refreshes included.
	AMR []string
	// ClientID is the OAuth client the session was authorized for by an
	// authorization code; empty for Gatehouse's own sign-ins.
	ClientID string
	// Scope is the space-separated scope granted to ClientID; its access
	// tokens carry it, refreshes included.
	Scope string
	// CertThumbprint is the base64url SHA-256 of the client certificate
	// the session's tokens are bound to (RFC 8705 x5t#S256); empty when
	// they are not bound.
	CertThumbprint string
	// ParentID is the Gatehouse session (a browser's sign-in) that a
	// client's session was authorized from; empty for Gatehouse's own
	// sign-ins. RP-initiated logout ends it too.
	ParentID string
}

// Revoked reports whether the session has been revoked.
func (s Session) Revoked() bool { return !s.RevokedAt.IsZero() }

// RevocationKind says what a Revocation applies to.
type RevocationKind string

// The revocation kinds.
const (
	// RevokeSession rejects every access token whose sid is Subject.
	RevokeSession RevocationKind = "session"
	// RevokeUserBefore rejects every access token of user Subject issued before At.
	RevokeUserBefore RevocationKind = "user"
	// RevokeToken rejects the one access token whose jti is Subject.
	RevokeToken RevocationKind = "token"
)

// Revocation is one entry of the revocation log that every instance replays
// into its in-memory sets. Entries matter only until ExpiresAt, after which
// every access token they could reject has expired by itself.
type Revocation struct {
	Kind      RevocationKind
	Subject   string
	At        time.Time
	ExpiresAt time.Time
	// Seq is the position in the log, assigned by the store when the entry
	// is written (0 on an entry not read from the store). Entries become
	// visible to readers in Seq order, so a reader that has seen Seq n has
	// seen every entry before it: "Seq greater than my cursor" is a complete
	// way to catch up, with no clock involved.
	Seq int64
}

// SigningKey is one access-token signing key as stored: the private part is
// sealed with a key derived from the master secret before it reaches a Store.
type SigningKey struct {
	ID        string // the JWS "kid"
	Algorithm string // EdDSA, ES256 or HS256
	Sealed    []byte // encrypted private key material
	CreatedAt time.Time
}

// SecretKind says what a one-time secret is for; a secret of one kind is
// never accepted for another.
type SecretKind string

// The one-time secret kinds of the mail flows.
const (
	SecretVerifyEmail   SecretKind = "verify_email"
	SecretResetPassword SecretKind = "reset_password"
	SecretMagicLink     SecretKind = "magic_link"
	SecretMagicCode     SecretKind = "magic_code"
	SecretChangeEmail   SecretKind = "change_email"
	// SecretMFA is the mfa_token of a sign-in waiting for its second
	// factor; Data holds the first factor's methods, space-separated.
	SecretMFA SecretKind = "mfa"
	// WebAuthn ceremonies begun on one instance and finished on any: Data
	// holds the ceremony's session data (challenge, allowed credentials).
	SecretPasskeyRegister SecretKind = "passkey_register"
	SecretPasskeyLogin    SecretKind = "passkey_login"
)

// Passkey is a WebAuthn credential registered by a user.
type Passkey struct {
	ID           string // Gatehouse's id, used in the API
	UserID       string
	CredentialID []byte // the authenticator's credential id
	// Credential is the go-webauthn credential (public key, sign count,
	// flags, attestation) as JSON; none of it is secret.
	Credential []byte
	Name       string
	CreatedAt  time.Time
	LastUsedAt time.Time // zero until first used
}

// TOTPFactor is a user's authenticator-app factor as stored: the secret is
// sealed under a key derived from the master secret before it reaches a
// Store.
type TOTPFactor struct {
	UserID      string
	Sealed      []byte
	CreatedAt   time.Time
	ConfirmedAt time.Time // zero while enrolment is pending
	// LastStep is the newest RFC 6238 time step accepted, so that a code is
	// accepted once even inside its window.
	LastStep int64
}

// OneTimeSecret is a single-use secret handed out by mail (and, later, other
// flows), as stored: only a MAC of the secret is kept, so a copy of the
// database yields nothing usable.
type OneTimeSecret struct {
	ID   string // public identifier (the part of a token before the dot)
	Kind SecretKind
	// Subject is whom the secret is for: a user id, or "email:" followed
	// by the EmailKey of an address that has no account yet.
	Subject string
	MAC     []byte // HMAC of the secret under a key derived for Kind
	// Data is kind-specific: the address a verification link was sent to,
	// the new address of an email change.
	Data      string
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    time.Time // zero while unused
	Attempts  int       // wrong guesses counted against it
}

// OutboxMessage is one queued mail. Its body carries a live token, so it is
// stored sealed (AES-GCM under a key derived from the master secret) and
// deleted once sent.
type OutboxMessage struct {
	ID            string
	Sealed        []byte
	CreatedAt     time.Time
	NextAttemptAt time.Time
	Attempts      int // delivery attempts that failed so far
	// ClaimedUntil, when set at enqueue, is a claim taken by the instance
	// that queues the message and hands it straight to its own sender,
	// so no separate claim is written. Another instance takes the message
	// only once it has passed (the queuing instance died).
	ClaimedUntil time.Time
}

// EmailKey is the form emails are compared by (case-insensitively,
// API.md): backends index and look up users by it, and the login rate
// limit is keyed by it, so all of them must fold the same way.
func EmailKey(email string) string { return strings.ToLower(email) }

// Storage errors. Backends return these (possibly wrapped) so that callers
// can tell the cases apart without knowing the backend.
var (
	ErrNotFound    = errors.New("not found")
	ErrEmailTaken  = errors.New("email already taken")
	ErrUnavailable = errors.New("service unavailable")
	// ErrStale means a conditional write found the row changed since the
	// caller read it (another version of the user, another password hash).
	ErrStale = errors.New("changed since read")
	// ErrMismatch means a one-time secret exists and is live but the
	// presented value is wrong; the failed attempt was counted.
	ErrMismatch = errors.New("secret does not match")
	// ErrLimitReached means a conditional insert found its owner already
	// at the per-user limit.
	ErrLimitReached = errors.New("limit reached")
)

// Store is the persistence every backend provides. All times are UTC and kept
// to at least microsecond precision. Implementations must be safe for
// concurrent use, including by several processes sharing one database.
type Store interface {
	EmailStore
	SecretStore
	SecretAttempts
	MailOutbox
	MFAStore
	PasskeyStore
	IdPStore
	APIKeyStore
	AdminGuard
	AuditLog
	OAuthStore

	// CreateUser inserts u. It returns ErrEmailTaken when another user has
	// the same email compared case-insensitively.
	CreateUser(ctx context.Context, u User) error
	// CreateUserWithMail is CreateUser and EnqueueMail(m, with...) in one
	// transaction: a sign-up and its verification mail commit together, in
	// one durable write, and neither exists without the other.
	CreateUserWithMail(ctx context.Context, u User, m OutboxMessage, with ...OneTimeSecret) error
	// UserByID returns ErrNotFound when there is no such user.
	UserByID(ctx context.Context, id string) (User, error)
	// UserByEmail finds a user by email, case-insensitively.
	UserByEmail(ctx context.Context, email string) (User, error)
	// ListUsers returns up to limit users with ID greater than after, in
	// ascending ID order.
	ListUsers(ctx context.Context, after string, limit int) ([]User, error)
	// SetPasswordHash replaces a user's password hash and advances its
	// Version, or returns ErrNotFound. With oldHash not empty it is a
	// compare-and-swap: it returns ErrStale unless the stored hash is still
	// oldHash.
	SetPasswordHash(ctx context.Context, userID, oldHash, hash string) error
	// RehashPassword replaces the stored hash oldHash by hash, an encoding of
	// the same password, without advancing Version. It returns ErrStale when
	// the stored hash is no longer oldHash, ErrNotFound without the user.
	RehashPassword(ctx context.Context, userID, oldHash, hash string) error
	// UpdateUser applies the non-nil fields, advances Version and, when
	// tokensValidAfter is not zero, raises TokensValidAfter to it (never
	// lowers it). It returns the updated user, or ErrNotFound.
	UpdateUser(ctx context.Context, userID string, role *Role, disabled *bool, tokensValidAfter time.Time) (User, error)

	// CreateSession inserts s if its user exists, is not disabled and is
	// still at userVersion, checked in the same atomic step as the insert
	// (on PostgreSQL holding the user row, so a concurrent change of the user
	// either waits for the insert or makes it fail). Otherwise it inserts
	// nothing and returns ErrStale.
	CreateSession(ctx context.Context, s Session, userVersion uint64) error
	// SessionByID returns the session whatever its state, or ErrNotFound.
	SessionByID(ctx context.Context, id string) (Session, error)
	// RotateSession advances session id from generation gen to gen+1 and
	// sets RotatedAt and LastUsedAt to now, in one atomic step, only when the
	// session is at generation gen, not revoked, ExpiresAt is after now,
	// LastUsedAt is after idleCutoff and its user is not disabled. It
	// returns the updated session and its user. When any condition fails it
	// changes nothing and returns ErrNotFound.
	RotateSession(ctx context.Context, id string, gen uint64, now, idleCutoff time.Time) (Session, User, error)
	// TouchSession sets LastUsedAt to now on a session that is neither
	// revoked nor past ExpiresAt; otherwise it returns ErrNotFound.
	TouchSession(ctx context.Context, id string, now time.Time) error
	// ListSessions returns the user's live sessions (not revoked, ExpiresAt
	// after now, LastUsedAt after idleCutoff), newest CreatedAt first.
	ListSessions(ctx context.Context, userID string, now, idleCutoff time.Time) ([]Session, error)
	// RevokeSession revokes one session that is not yet revoked and records
	// a RevokeSession revocation (At now, expiring at logExpiry) in the same
	// transaction. It returns ErrNotFound when the session does not exist or
	// was already revoked; an expired but unrevoked session is revoked.
	RevokeSession(ctx context.Context, id, reason string, now, logExpiry time.Time) error
	// RevokeUserSessions revokes every not-yet-revoked session of the user
	// except keep (may be empty), records one revocation per session as
	// RevokeSession does, and returns the ids it revoked.
	RevokeUserSessions(ctx context.Context, userID, keep, reason string, now, logExpiry time.Time) ([]string, error)

	// DeleteEndedSessions deletes up to limit sessions that ended before
	// endedBefore: revoked before it, past ExpiresAt before it, or last used
	// before idleBefore. It returns how many it deleted.
	DeleteEndedSessions(ctx context.Context, endedBefore, idleBefore time.Time, limit int) (int, error)

	// AddRevocation appends r to the revocation log (r.Seq is ignored; the
	// store assigns it).
	AddRevocation(ctx context.Context, r Revocation) error
	// RevocationsAfter returns up to limit log entries with Seq greater
	// than after and ExpiresAt after now, in ascending Seq order, Seq
	// filled in. Entries become visible in Seq order: once a reader has
	// seen an entry, no entry with a smaller Seq can appear later.
	RevocationsAfter(ctx context.Context, after int64, now time.Time, limit int) ([]Revocation, error)
	// PruneRevocations deletes log entries that expired before now (an
	// entry expiring exactly at now may stay or go).
	PruneRevocations(ctx context.Context, now time.Time) error

	// CreateSigningKey stores a new signing key.
	CreateSigningKey(ctx context.Context, k SigningKey) error
	// SigningKeys returns every stored key, oldest first.
	SigningKeys(ctx context.Context) ([]SigningKey, error)

	// Ping checks that the backend answers.
	Ping(ctx context.Context) error
	// Close releases the backend's resources.
	Close() error
}

// EmailStore changes the email state of users.
type EmailStore interface {
	// SetEmailVerified marks the user's email verified, only while the
	// user's email still folds (EmailKey) to the same form as email: a link
	// sent to an old address verifies nothing. ErrStale otherwise,
	// ErrNotFound without the user. It returns the updated user.
	SetEmailVerified(ctx context.Context, userID, email string) (User, error)
	// ChangeEmail replaces the user's email by newEmail (verified), only
	// while the current email still folds to the same form as oldEmail
	// (ErrStale otherwise). ErrEmailTaken when another user has newEmail.
	ChangeEmail(ctx context.Context, userID, oldEmail, newEmail string) (User, error)
}

// SecretStore keeps one-time secrets (DESIGN.md part 2: one table, one
// codec, single use by one conditional UPDATE).
type SecretStore interface {
	// CreateSecret stores s and, in the same transaction, deletes every
	// other unused secret of the same Kind and Subject: a newer secret
	// voids the older ones.
	CreateSecret(ctx context.Context, s OneTimeSecret) error
	// UseSecret marks secret id of kind used, in one conditional UPDATE,
	// when its MAC equals mac, it is unused, ExpiresAt is after now and
	// Attempts is below maxAttempts, and returns it as stored before. Of
	// concurrent uses exactly one succeeds. Anything else changes nothing
	// and returns ErrNotFound.
	UseSecret(ctx context.Context, kind SecretKind, id string, mac []byte, now time.Time, maxAttempts int) (OneTimeSecret, error)
	// UseSecretOf is UseSecret for secrets looked up by (kind, subject),
	// such as a 6-digit code typed with an email: the newest live secret
	// of that kind and subject is used when its MAC equals mac. When it is
	// live but the MAC differs, its Attempts grows by one and ErrMismatch
	// is returned; at maxAttempts it is dead. No live secret: ErrNotFound.
	UseSecretOf(ctx context.Context, kind SecretKind, subject string, mac []byte, now time.Time, maxAttempts int) (OneTimeSecret, error)
	// SecretByID returns the secret of kind with that id whatever its
	// state (used, expired), or ErrNotFound once it is pruned.
	SecretByID(ctx context.Context, kind SecretKind, id string) (OneTimeSecret, error)
	// DeleteSecrets deletes every secret of kind and subject (a password
	// change voids the outstanding reset links).
	DeleteSecrets(ctx context.Context, kind SecretKind, subject string) error
	// PruneSecrets deletes secrets that expired before now.
	PruneSecrets(ctx context.Context, now time.Time) error
}

// MailOutbox is the queue of mail to send. Messages are claimed with a
// lease, so that several instances sharing a database never send one
// message at the same time, and a message claimed by an instance that died
// is sent by another once the lease ends.
type MailOutbox interface {
	// EnqueueMail stores m, due at m.NextAttemptAt and held by the
	// sender until m.ClaimedUntil (zero: free to claim), and in the same
	// transaction the one-time secrets its body carries, each voiding the
	// older unused secrets of its kind and subject as CreateSecret does.
	// One commit for both: a link never exists without its mail, and a
	// sign-up that mails pays for one durable write, not two.
	EnqueueMail(ctx context.Context, m OutboxMessage, with ...OneTimeSecret) error
	// ClaimMail claims up to limit messages due at now (NextAttemptAt at or
	// before now) that no unexpired claim holds, holds them until
	// now+lease, and returns them, oldest due first.
	ClaimMail(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]OutboxMessage, error)
	// DeleteMail removes messages (sent, or given up on) in one write, so
	// a sender can remove a batch for the price of one commit. Deleting a
	// message that is gone is not an error.
	DeleteMail(ctx context.Context, ids ...string) error
	// RetryMail releases a claimed message, counts a failed attempt and
	// makes it due again at next. ErrNotFound when it is gone.
	RetryMail(ctx context.Context, id string, next time.Time) error
	// PendingMail counts the messages in the outbox (for metrics).
	PendingMail(ctx context.Context) (int, error)
}

// MFAStore keeps second factors: one TOTP factor per user and its recovery
// codes (stored only as MACs).
type MFAStore interface {
	// PutPendingTOTP stores f as the user's pending factor, replacing a
	// pending one. ErrStale when the user already has a confirmed factor;
	// ErrNotFound without the user.
	PutPendingTOTP(ctx context.Context, f TOTPFactor) error
	// TOTP returns the user's factor, pending or confirmed, or ErrNotFound.
	TOTP(ctx context.Context, userID string) (TOTPFactor, error)
	// ConfirmTOTP confirms the pending factor at time at, records step as
	// its LastStep and replaces the user's recovery codes by codes, in one
	// transaction. ErrNotFound when no pending factor exists (also when it
	// is already confirmed).
	ConfirmTOTP(ctx context.Context, userID string, step int64, at time.Time, codes [][]byte) error
	// UseTOTPStep accepts step for the confirmed factor only if it is newer
	// than LastStep, in one conditional UPDATE (of concurrent uses of one
	// code exactly one succeeds). ErrStale when the step was already used
	// or an earlier one is newer; ErrNotFound without a confirmed factor.
	UseTOTPStep(ctx context.Context, userID string, step int64) error
	// DeleteTOTP removes the user's factor and recovery codes; deleting
	// nothing is not an error.
	DeleteTOTP(ctx context.Context, userID string) error
	// ReplaceRecoveryCodes replaces every recovery code of the user.
	ReplaceRecoveryCodes(ctx context.Context, userID string, codes [][]byte) error
	// UseRecoveryCode marks the user's unused code whose MAC is code used,
	// in one conditional UPDATE; ErrNotFound when there is none.
	UseRecoveryCode(ctx context.Context, userID string, code []byte, at time.Time) error
	// RecoveryCodesLeft counts the user's unused recovery codes.
	RecoveryCodesLeft(ctx context.Context, userID string) (int, error)
}

// SecretAttempts is the part of the secret store second factors need:
// an attempt is counted before the guess is checked, so that concurrent
// guesses on one mfa_token cannot exceed the limit.
type SecretAttempts interface {
	// SpendSecretAttempt counts one attempt on secret id of kind when its
	// MAC equals mac, it is unused, unexpired at now and below
	// maxAttempts, and returns it (Attempts already counting this one).
	// ErrNotFound otherwise, changing nothing.
	SpendSecretAttempt(ctx context.Context, kind SecretKind, id string, mac []byte, now time.Time, maxAttempts int) (OneTimeSecret, error)
}

// PasskeyStore keeps users' passkeys.
type PasskeyStore interface {
	// CreatePasskey stores p. ErrStale when a passkey with the same
	// CredentialID exists (for any user); ErrNotFound without the user.
	CreatePasskey(ctx context.Context, p Passkey) error
	// Passkeys returns the user's passkeys, oldest first.
	Passkeys(ctx context.Context, userID string) ([]Passkey, error)
	// PasskeyByCredentialID finds a passkey by its credential id, or
	// ErrNotFound.
	PasskeyByCredentialID(ctx context.Context, credentialID []byte) (Passkey, error)
	// UpdatePasskeyUse replaces the stored credential (its sign count and
	// flags move on every use) and sets LastUsedAt, only while the stored
	// credential is still oldCredential (a compare-and-swap, so two
	// concurrent uses of one assertion cannot both pass). ErrStale
	// otherwise, ErrNotFound when the passkey is gone.
	UpdatePasskeyUse(ctx context.Context, id string, oldCredential, credential []byte, at time.Time) error
	// DeletePasskey deletes the user's passkey id; ErrNotFound when the
	// user has no such passkey.
	DeletePasskey(ctx context.Context, userID, id string) error
	// CountPasskeys counts the user's passkeys.
	CountPasskeys(ctx context.Context, userID string) (int, error)
}

// One-time secrets of sign-in with an external identity provider.
const (
	// SecretIdPState is the state of a redirect to a provider: single use,
	// so a callback cannot be replayed on any instance.
	SecretIdPState SecretKind = "idp_state"
	// SecretIdPLogin is a login_code handed to a native app in the
	// fragment of its redirect; Data holds the session's methods.
	SecretIdPLogin SecretKind = "idp_login"
)

// One-time secrets of Gatehouse's OAuth provider.
const (
	// SecretOAuthRequest is a pending authorization request (10 minutes,
	// single use); Subject is unique to the request, Data its parameters.
	SecretOAuthRequest SecretKind = "oauth_request"
	// SecretOAuthCode is an authorization code (1 minute, single use);
	// Subject is unique to the code, Data holds the grant it redeems for,
	// including the id of the session its redemption creates, so a second
	// redemption can revoke what the first issued.
	SecretOAuthCode SecretKind = "oauth_code"
)

// OAuthClient is an application registered with Gatehouse's OAuth 2.1 /
// OpenID provider.
type OAuthClient struct {
	ID   string // client_id
	Name string
	// SecretMAC is an HMAC of the client secret under a key derived from
	// the master secret; nil for public clients and for clients that
	// authenticate only by certificate.
	SecretMAC              []byte
	RedirectURIs           []string // matched exactly
	PostLogoutRedirectURIs []string // matched exactly
	Public                 bool     // no secret; PKCE only (client authentication "none")
	FirstParty             bool     // skips the consent page
	Grants                 []string // authorization_code, refresh_token, client_credentials
	Scopes                 []string // scopes beyond openid, profile, email, offline_access
	Audience               string   // aud of its access tokens; empty: Gatehouse's own
	// TLSSubject is the subject DN of the certificate the client
	// authenticates with (RFC 8705 tls_client_auth); empty when it does not.
	TLSSubject string
	CreatedAt  time.Time
}

// OAuthConsent records that a user allowed a client the listed scopes.
type OAuthConsent struct {
	UserID    string
	ClientID  string
	Scopes    []string
	CreatedAt time.Time // first given
	UpdatedAt time.Time // last widened
}

// OAuthStore keeps OAuth clients and the consents users gave them.
type OAuthStore interface {
	// CreateOAuthClient stores c.
	CreateOAuthClient(ctx context.Context, c OAuthClient) error
	// OAuthClientByID returns the client, or ErrNotFound.
	OAuthClientByID(ctx context.Context, id string) (OAuthClient, error)
	// OAuthClients lists every client, oldest first.
	OAuthClients(ctx context.Context) ([]OAuthClient, error)
	// DeleteOAuthClient deletes the client and every consent given to it,
	// in one transaction; ErrNotFound when there is no such client.
	DeleteOAuthClient(ctx context.Context, id string) error
	// SaveConsent stores c, replacing the user's earlier consent to the
	// same client (keeping its CreatedAt); ErrNotFound without the user or
	// the client.
	SaveConsent(ctx context.Context, c OAuthConsent) error
	// Consent returns the user's consent to the client, or ErrNotFound.
	Consent(ctx context.Context, userID, clientID string) (OAuthConsent, error)
	// Consents lists the user's consents, oldest first.
	Consents(ctx context.Context, userID string) ([]OAuthConsent, error)
	// DeleteConsent deletes the user's consent to the client; ErrNotFound
	// when there is none.
	DeleteConsent(ctx context.Context, userID, clientID string) error
	// ClientSessionIDs returns the ids of the sessions authorized for
	// clientID that are not revoked, of user userID only unless userID is
	// empty.
	ClientSessionIDs(ctx context.Context, userID, clientID string) ([]string, error)
}

// ProviderKind says how Gatehouse speaks to an identity provider.
type ProviderKind string

// The provider kinds.
const (
	// ProviderOIDC is any OpenID provider: discovery, JWKS, ID tokens.
	ProviderOIDC ProviderKind = "oidc"
	// ProviderGitHub speaks OAuth 2.0 with GitHub's user and emails APIs.
	ProviderGitHub ProviderKind = "github"
)

// IdentityProvider is an upstream provider users can sign in with, as
// stored: the client secret is sealed under a key derived from the master
// secret before it reaches a Store.
type IdentityProvider struct {
	Name         string // [a-z0-9-], used in URLs
	Kind         ProviderKind
	DisplayName  string
	Issuer       string // OpenID issuer; for GitHub the site (https://github.com)
	ClientID     string
	SealedSecret []byte
	Scopes       []string
	// Endpoints that replace discovery (GitHub, GitHub Enterprise); empty
	// for OpenID providers, which are discovered.
	AuthURL, TokenURL, UserinfoURL string
	// NoSignup: a sign-in that matches no account is refused instead of
	// creating one.
	NoSignup  bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Identity links a user to an account at an identity provider: the
// provider's subject is unique per provider.
type Identity struct {
	ID        string
	Provider  string // IdentityProvider.Name
	Subject   string
	UserID    string
	Email     string // the address the provider gave when it was linked
	CreatedAt time.Time
}

// IdPStore keeps identity providers and the identities linked to users.
type IdPStore interface {
	// PutIdentityProvider inserts p or replaces the provider of that name
	// (keeping its CreatedAt). Subjects are unique only per issuer, so a
	// replacement with another Kind or Issuer deletes the provider's
	// identities in the same transaction.
	PutIdentityProvider(ctx context.Context, p IdentityProvider) error
	// IdentityProvider returns the provider of that name, or ErrNotFound.
	IdentityProvider(ctx context.Context, name string) (IdentityProvider, error)
	// IdentityProviders returns every provider, by name.
	IdentityProviders(ctx context.Context) ([]IdentityProvider, error)
	// DeleteIdentityProvider deletes the provider and its identities;
	// ErrNotFound when there is none.
	DeleteIdentityProvider(ctx context.Context, name string) error

	// CreateIdentity stores i. ErrStale when the provider's subject is
	// already linked (to anyone); ErrNotFound without the user or the
	// provider.
	CreateIdentity(ctx context.Context, i Identity) error
	// CreateUserWithIdentity inserts u and i (whose UserID is u.ID) in one
	// transaction: ErrEmailTaken or ErrStale as CreateUser and
	// CreateIdentity say, and then neither is stored.
	CreateUserWithIdentity(ctx context.Context, u User, i Identity) error
	// IdentityBySubject finds the identity of a provider's subject, or
	// ErrNotFound.
	IdentityBySubject(ctx context.Context, provider, subject string) (Identity, error)
	// Identities returns the user's identities, oldest first.
	Identities(ctx context.Context, userID string) ([]Identity, error)
	// DeleteIdentity deletes the user's identity id only while the user
	// keeps another way to sign in (a password, a passkey or another
	// identity), checked in the same atomic step as the delete: ErrStale
	// when it is the last; ErrNotFound when the user has no such identity.
	DeleteIdentity(ctx context.Context, userID, id string) error
}

// RevokeAPIKey rejects the API key whose id is Subject. The key's row is
// the source of truth (it carries revoked_at); the log entry lets every
// instance drop the key at once although it caches key lookups.
const RevokeAPIKey RevocationKind = "api_key"

// APIKey is a long-lived credential a user (or an admin for them) creates
// for scripts and machines. Only a MAC of the key is stored, under a key
// derived from the master secret, so a copy of the database yields nothing
// usable. The key acts with its owner's current role and state.
type APIKey struct {
	ID     string // public identifier, also the part of the key after "gh_"
	UserID string
	Name   string
	MAC    []byte
	// Scopes limit what the key is for; empty means none beyond acting as
	// its owner on the endpoints that accept API keys.
	Scopes     []string
	CreatedAt  time.Time
	ExpiresAt  time.Time // zero: never
	LastUsedAt time.Time // zero until first used; written in batches
	RevokedAt  time.Time // zero while not revoked
}

// APIKeyStore keeps API keys.
type APIKeyStore interface {
	// CreateAPIKey stores k unless the user already holds limit keys that
	// are not revoked (ErrLimitReached); the count and the insert are one
	// atomic step, so concurrent creations cannot pass the limit. limit 0
	// sets none. ErrNotFound without the user.
	CreateAPIKey(ctx context.Context, k APIKey, limit int) error
	// APIKeyByID returns the key whatever its state, or ErrNotFound.
	APIKeyByID(ctx context.Context, id string) (APIKey, error)
	// APIKeys returns the user's keys that are not revoked (expired ones
	// included), oldest first.
	APIKeys(ctx context.Context, userID string) ([]APIKey, error)
	// RevokeAPIKey revokes key id, of user userID unless userID is empty,
	// when it is not yet revoked, and records a RevokeAPIKey revocation (At
	// now, expiring at logExpiry) in the same transaction. ErrNotFound when
	// there is no such key (of that user) or it was already revoked.
	RevokeAPIKey(ctx context.Context, userID, id string, now, logExpiry time.Time) error
	// TouchAPIKeys raises LastUsedAt of each key in uses to its time (never
	// lowers it); ids of keys that are gone are ignored. One call writes a
	// whole batch, so use is recorded without a write per request.
	TouchAPIKeys(ctx context.Context, uses map[string]time.Time) error
}

// ErrLastAdmin means a change would leave no enabled admin.
var ErrLastAdmin = errors.New("last enabled admin")

// AdminGuard is the part of the store that keeps at least one enabled
// admin: UpdateUserKeepingAdmin is UpdateUser, except that when the change
// would demote or disable the user and no other enabled admin exists, it
// changes nothing and returns ErrLastAdmin. The check is part of the
// write itself, so two admins demoting each other at once cannot both
// succeed.
type AdminGuard interface {
	// OtherEnabledAdmin reports whether an enabled admin other than userID
	// exists (a cheap early answer; the write above is the guarantee).
	OtherEnabledAdmin(ctx context.Context, userID string) (bool, error)
	UpdateUserKeepingAdmin(ctx context.Context, userID string, role *Role, disabled *bool, tokensValidAfter time.Time) (User, error)
}

// AuditEvent is one entry of the audit log: a security-relevant thing that
// happened to an account (a sign-in, a failed one, a change of password,
// an admin action). Entries are only ever appended, and deleted only by
// retention; nothing updates one.
type AuditEvent struct {
	// ID is assigned by the store when the event is appended: a positive
	// number that grows with every append, so it orders the log and serves
	// as its paging cursor without relying on instances' clocks agreeing.
	ID        int64
	Time      time.Time
	Type      string // signup, login, password_changed, admin, ...
	UserID    string // the account concerned; empty when there is none
	SessionID string
	IP        string
	UserAgent string
	Outcome   string // success or failure
	// Detail holds a few non-secret facts (the sign-in method, what an
	// admin changed); package audit admits only whitelisted keys.
	Detail map[string]string
}

// AuditFilter selects audit events, newest first.
type AuditFilter struct {
	UserID string // only this account's events, when set
	Type   string // only events of this type, when set
	Before int64  // only events with an ID below it (the paging cursor), when positive
	Limit  int
}

// AuditLog is the append-only store of audit events.
type AuditLog interface {
	// AppendAudit stores e (its ID is ignored) and returns the ID given
	// to it.
	AppendAudit(ctx context.Context, e AuditEvent) (int64, error)
	// AuditEvents returns up to f.Limit events matching f, highest ID
	// (newest) first.
	AuditEvents(ctx context.Context, f AuditFilter) ([]AuditEvent, error)
	// PruneAudit deletes up to limit events whose Time is before before,
	// and returns how many it deleted.
	PruneAudit(ctx context.Context, before time.Time, limit int) (int, error)
}
