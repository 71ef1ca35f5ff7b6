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
)

// Revocation is one entry of the revocation log that every instance replays
// into its in-memory sets. Entries matter only until ExpiresAt, after which
// every access token they could reject has expired by itself.
type Revocation struct {
	Kind      RevocationKind
	Subject   string
	At        time.Time
	ExpiresAt time.Time
}

// SigningKey is one access-token signing key as stored: the private part is
// sealed with a key derived from the master secret before it reaches a Store.
type SigningKey struct {
	ID        string // the JWS "kid"
	Algorithm string // EdDSA, ES256 or HS256
	Sealed    []byte // encrypted private key material
	CreatedAt time.Time
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
)

// Store is the persistence every backend provides. All times are UTC and kept
// to at least microsecond precision. Implementations must be safe for
// concurrent use, including by several processes sharing one database.
type Store interface {
	// CreateUser inserts u. It returns ErrEmailTaken when another user has
	// the same email compared case-insensitively.
	CreateUser(ctx context.Context, u User) error
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

	// AddRevocation appends r to the revocation log.
	AddRevocation(ctx context.Context, r Revocation) error
	// RevocationsSince returns log entries with At at or after since and
	// ExpiresAt after now, in any order.
	RevocationsSince(ctx context.Context, since, now time.Time) ([]Revocation, error)
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
