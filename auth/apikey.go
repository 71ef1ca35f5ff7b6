package auth

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/audit"
	"github.com/gatehouse/gatehouse/revoke"
	"github.com/gatehouse/gatehouse/token"
)

// API keys: long-lived Bearer credentials for scripts and machines. A key
// acts as its owner, with the owner's current role, on the endpoints that
// accept keys (/auth/me, /auth/verify, introspection, the revocation feed
// with its scope); every other endpoint wants an access token.
//
// The hot path (/auth/verify) does no database round trip for a key seen
// recently: the key row and its owner are cached per instance. The cache
// is exact where it matters, not merely fresh enough:
//   - a revoked key is refused at once on every instance, because every
//     use also checks the in-memory revocation set (revoke.Revoker), which
//     learns of a revocation through the bus or the log poll like it does
//     for sessions; its entry outlives any cache entry read before it;
//   - a role change or disabling of the owner moves the owner's token cutoff
//     (a RevokeUserBefore entry, recorded before the user row changes); a
//     cached owner older than the cutoff is read again.
//
// Last use is recorded in memory and written in batches (TouchAPIKeys)
// every apiKeyFlushEvery, not once per request.

// Scopes of the fixed vocabulary. Other scopes are free-form (the shape of
// scopeRE) and mean whatever the resource servers checking them decide.
const (
	// ScopeRevocationsRead lets a machine read the revocation feed. Only
	// an admin may give it, and it lapses while the owner is not an admin.
	ScopeRevocationsRead = "revocations:read"
)

// adminOnlyScopes may be put on a key only by an admin, and count only
// while its owner is one.
var adminOnlyScopes = []string{ScopeRevocationsRead}

const (
	maxAPIKeyNameLen = 100 // code points
	maxAPIKeyScopes  = 20
	maxAPIKeyDays    = 3650
	// maxAPIKeysPerUser bounds the unrevoked keys one account can hold.
	// The store counts and inserts in one step, so concurrent creations
	// cannot pass it.
	maxAPIKeysPerUser = 100

	// apiKeyCacheTTL bounds how long a key row and its owner are served
	// from memory; revocation and owner changes do not wait for it (above).
	apiKeyCacheTTL = time.Minute
	apiKeyCacheMax = 16384
	// apiKeyFlushEvery is how often recorded uses are written.
	apiKeyFlushEvery = 5 * time.Second
)

var scopeRE = regexp.MustCompile(`^[a-z][a-z0-9_.:/-]{0,63}$`)

// HasScope reports whether the principal carries scope (API keys only;
// access tokens carry none yet).
func (p Principal) HasScope(scope string) bool { return slices.Contains(p.Scopes, scope) }

// APIKeyInput is a request to create an API key.
type APIKeyInput struct {
	Name          string
	ExpiresInDays *int // nil: never expires
	Scopes        []string
}

// AuthenticateBearer authenticates any Bearer credential: an access token
// (Authenticate) or an API key (recognised by its gh_ prefix). ip is the
// client's address, against which failed API-key attempts are counted.
// Errors: ErrInvalidToken, a *RateLimitError, or one wrapping
// gatehouse.ErrUnavailable when revocation state cannot be vouched for.
func (s *Service) AuthenticateBearer(ctx context.Context, raw, ip string) (Principal, error) {
	if token.LooksLikeAPIKey(raw) {
		return s.authenticateAPIKey(ctx, raw, ip)
	}
	return s.Authenticate(ctx, raw)
}

func (s *Service) authenticateAPIKey(ctx context.Context, raw, ip string) (Principal, error) {
	if s.APIKeyCodec == nil || s.APIKeyStore == nil {
		return Principal{}, ErrInvalidToken
	}
	limitKey := "apikey:ip:" + ipLimitKey(ip)
	if err := s.keyGuard.blocked(limitKey, s.Now()); err != nil {
		return Principal{}, err
	}
	id, mac, ok := s.APIKeyCodec.Parse(raw)
	if !ok {
		return Principal{}, s.apiKeyFailure(ctx, limitKey)
	}
	if err := s.Revoker.CheckAPIKey(id); err != nil {
		if errors.Is(err, revoke.ErrRevoked) {
			s.keys.forget(id)
			return Principal{}, ErrInvalidToken
		}
		return Principal{}, fmt.Errorf("api key revocation check: %w", err)
	}
	now := s.Now()
	e, cached := s.keys.get(id, now)
	if !cached {
		readAt := now
		k, err := s.APIKeyStore.APIKeyByID(ctx, id)
		if errors.Is(err, gatehouse.ErrNotFound) {
			return Principal{}, s.apiKeyFailure(ctx, limitKey)
		}
		if err != nil {
			return Principal{}, fmt.Errorf("api key: %w", err)
		}
		e = &keyEntry{key: k, cachedAt: readAt}
	}
	if !hmac.Equal(mac, e.key.MAC) {
		return Principal{}, s.apiKeyFailure(ctx, limitKey)
	}
	if !e.key.RevokedAt.IsZero() || (!e.key.ExpiresAt.IsZero() && !now.Before(e.key.ExpiresAt)) {
		return Principal{}, ErrInvalidToken
	}
	owner, asOf, err := s.apiKeyOwner(ctx, e)
	if err != nil {
		return Principal{}, err
	}
	if !cached {
		s.keys.put(id, e)
	}
	if owner.Disabled {
		return Principal{}, ErrInvalidToken
	}
	s.keyUses.record(id, now)
	scopes := e.key.Scopes
	if owner.Role != gatehouse.RoleAdmin {
		scopes = slices.DeleteFunc(slices.Clone(scopes), func(sc string) bool { return slices.Contains(adminOnlyScopes, sc) })
	}
	return Principal{UserID: owner.ID, Role: owner.Role, IssuedAt: asOf, APIKeyID: id, Scopes: scopes}, nil
}

// apiKeyOwner returns the key's owner as of a moment no older than the
// owner's latest token cutoff: the cached owner if it is, else a fresh
// read (cached when it is past the cutoff, which it is once the change
// that moved the cutoff has committed). asOf is when the returned state
// was known to be current.
func (s *Service) apiKeyOwner(ctx context.Context, e *keyEntry) (gatehouse.User, time.Time, error) {
	e.mu.Lock()
	owner, readAt := e.owner, e.ownerReadAt
	e.mu.Unlock()
	if !readAt.IsZero() {
		err := s.Revoker.Check("", owner.ID, ownerAsOf(owner, readAt))
		if err == nil {
			return owner, readAt, nil
		}
		if !errors.Is(err, revoke.ErrRevoked) {
			return gatehouse.User{}, time.Time{}, fmt.Errorf("api key owner revocation check: %w", err)
		}
	}
	readAt = s.Now()
	owner, err := s.Store.UserByID(ctx, e.key.UserID)
	if errors.Is(err, gatehouse.ErrNotFound) {
		return gatehouse.User{}, time.Time{}, ErrInvalidToken
	}
	if err != nil {
		return gatehouse.User{}, time.Time{}, fmt.Errorf("api key owner: %w", err)
	}
	err = s.Revoker.Check("", owner.ID, ownerAsOf(owner, readAt))
	switch {
	case err == nil:
		e.mu.Lock()
		if readAt.After(e.ownerReadAt) {
			e.owner, e.ownerReadAt = owner, readAt
		}
		e.mu.Unlock()
	case errors.Is(err, revoke.ErrRevoked):
		// A change of the owner is in flight: its cutoff is recorded but
		// the row not yet updated. This read is the committed state, so it
		// answers this request, but it is not kept.
	default:
		return gatehouse.User{}, time.Time{}, fmt.Errorf("api key owner revocation check: %w", err)
	}
	return owner, readAt, nil
}

// ownerAsOf is the instant a cached owner is known current at: when it
// was read, or its own token cutoff if later (the row carries the cutoff
// of the last change applied to it, so it reflects every change whose
// cutoff is at or before that).
func ownerAsOf(u gatehouse.User, readAt time.Time) time.Time {
	if u.TokensValidAfter.After(readAt) {
		return u.TokensValidAfter
	}
	return readAt
}

// apiKeyFailure counts a failed API-key attempt against the client's
// address and answers ErrInvalidToken, or 429 once the budget is spent
// (and, on this instance, for every attempt until it refills).
func (s *Service) apiKeyFailure(ctx context.Context, limitKey string) error {
	r := s.cfg.APIKeyRate
	if r.Off() {
		return ErrInvalidToken
	}
	res, err := s.Limiter.Allow(ctx, limitKey, r)
	if err != nil {
		s.Logger.Warn("rate limiter", "key_kind", "apikey", "err", err)
		return ErrInvalidToken
	}
	if !res.Allowed {
		s.keyGuard.block(limitKey, s.Now().Add(res.RetryAfter))
		return &RateLimitError{RetryAfter: res.RetryAfter}
	}
	return ErrInvalidToken
}

// CreateAPIKey creates a key for the caller and returns it with the key
// itself, which is shown this once.
func (s *Service) CreateAPIKey(ctx context.Context, p Principal, in APIKeyInput) (gatehouse.APIKey, string, error) {
	if s.APIKeyCodec == nil || s.APIKeyStore == nil {
		return gatehouse.APIKey{}, "", ErrNotConfigured
	}
	scopes, err := validateAPIKeyInput(p, in)
	if err != nil {
		return gatehouse.APIKey{}, "", err
	}
	now := s.now()
	raw, id, mac := s.APIKeyCodec.New()
	k := gatehouse.APIKey{ID: id, UserID: p.UserID, Name: in.Name, MAC: mac, Scopes: scopes, CreatedAt: now}
	if in.ExpiresInDays != nil {
		k.ExpiresAt = now.Add(time.Duration(*in.ExpiresInDays) * 24 * time.Hour)
	}
	if err := s.APIKeyStore.CreateAPIKey(ctx, k, maxAPIKeysPerUser); err != nil {
		if errors.Is(err, gatehouse.ErrNotFound) {
			return gatehouse.APIKey{}, "", ErrInvalidToken // the caller's account is gone
		}
		if errors.Is(err, gatehouse.ErrLimitReached) {
			return gatehouse.APIKey{}, "", invalid("name", fmt.Sprintf("an account may hold at most %d API keys; revoke one first", maxAPIKeysPerUser))
		}
		return gatehouse.APIKey{}, "", fmt.Errorf("create api key: %w", err)
	}
	s.recordAudit(ctx, audit.Event{Type: audit.TypeAPIKeyCreated, UserID: p.UserID, SessionID: p.SessionID,
		Detail: audit.Detail{audit.KeyAPIKeyID: k.ID}})
	return k, raw, nil
}

func validateAPIKeyInput(p Principal, in APIKeyInput) ([]string, error) {
	var fields []FieldError
	switch n := utf8.RuneCountInString(in.Name); {
	case strings.TrimSpace(in.Name) == "":
		fields = append(fields, FieldError{Field: "name", Message: "is required"})
	case !utf8.ValidString(in.Name) || n > maxAPIKeyNameLen:
		fields = append(fields, FieldError{Field: "name", Message: fmt.Sprintf("must be at most %d characters", maxAPIKeyNameLen)})
	case strings.ContainsFunc(in.Name, unicode.IsControl):
		fields = append(fields, FieldError{Field: "name", Message: "must not contain control characters"})
	}
	if d := in.ExpiresInDays; d != nil && (*d < 1 || *d > maxAPIKeyDays) {
		fields = append(fields, FieldError{Field: "expires_in_days", Message: fmt.Sprintf("must be between 1 and %d", maxAPIKeyDays)})
	}
	var scopes []string
	if len(in.Scopes) > maxAPIKeyScopes {
		fields = append(fields, FieldError{Field: "scopes", Message: fmt.Sprintf("at most %d scopes", maxAPIKeyScopes)})
	} else {
		for _, sc := range in.Scopes {
			msg := ""
			switch {
			case !scopeRE.MatchString(sc):
				msg = "each scope is a lower-case word of letters, digits and _ . : / - (at most 64)"
			case slices.Contains(adminOnlyScopes, sc) && p.Role != gatehouse.RoleAdmin:
				msg = "the scope " + sc + " may be given only by an admin"
			}
			if msg != "" {
				fields = append(fields, FieldError{Field: "scopes", Message: msg})
				break
			}
			if !slices.Contains(scopes, sc) { // a duplicate is kept once
				scopes = append(scopes, sc)
			}
		}
	}
	if len(fields) > 0 {
		return nil, &ValidationError{Fields: fields}
	}
	return scopes, nil
}

// APIKeys lists a user's keys that are not revoked; uses recorded on this
// instance and not yet written show in LastUsedAt.
func (s *Service) APIKeys(ctx context.Context, userID string) ([]gatehouse.APIKey, error) {
	if s.APIKeyStore == nil {
		return nil, ErrNotConfigured
	}
	ks, err := s.APIKeyStore.APIKeys(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	for i := range ks {
		if at, ok := s.keyUses.pending(ks[i].ID); ok && at.After(ks[i].LastUsedAt) {
			ks[i].LastUsedAt = at.UTC().Truncate(time.Microsecond)
		}
	}
	return ks, nil
}

// AdminUserAPIKeys lists any user's keys; ErrNotFound without the user.
func (s *Service) AdminUserAPIKeys(ctx context.Context, userID string) ([]gatehouse.APIKey, error) {
	if _, err := s.Store.UserByID(ctx, userID); err != nil {
		return nil, fmt.Errorf("user api keys: %w", err)
	}
	return s.APIKeys(ctx, userID)
}

// RevokeOwnAPIKey revokes one of the caller's keys; another user's key is
// reported as not found so that ids cannot be probed.
func (s *Service) RevokeOwnAPIKey(ctx context.Context, p Principal, id string) error {
	if err := s.revokeAPIKey(ctx, p.UserID, id); err != nil {
		return err
	}
	s.recordAudit(ctx, audit.Event{Type: audit.TypeAPIKeyRevoked, UserID: p.UserID, SessionID: p.SessionID,
		Detail: audit.Detail{audit.KeyAPIKeyID: id}})
	return nil
}

// AdminRevokeAPIKey revokes any key.
func (s *Service) AdminRevokeAPIKey(ctx context.Context, id string) error {
	if err := s.revokeAPIKey(ctx, "", id); err != nil {
		return err
	}
	// The owner, for the record; the key is revoked whatever this finds.
	if k, err := s.APIKeyStore.APIKeyByID(ctx, id); err == nil {
		s.recordAudit(ctx, audit.Event{Type: audit.TypeAPIKeyRevoked, UserID: k.UserID, Detail: audit.Detail{audit.KeyAPIKeyID: id}})
		s.recordAdmin(ctx, k.UserID, audit.ActionAPIKeyRevoke, audit.Detail{audit.KeyAPIKeyID: id})
	}
	return nil
}

func (s *Service) revokeAPIKey(ctx context.Context, userID, id string) error {
	if s.APIKeyStore == nil {
		return ErrNotConfigured
	}
	if !token.ValidAPIKeyID(id) {
		return fmt.Errorf("revoke api key: %w", gatehouse.ErrNotFound)
	}
	ctx, cancel := detach(ctx)
	defer cancel()
	now := s.now()
	exp := s.revocationExpiry(now)
	// The entry must outlive every cache entry read before it (above).
	if floor := now.Add(apiKeyCacheTTL + 10*time.Second); exp.Before(floor) {
		exp = floor
	}
	if err := s.APIKeyStore.RevokeAPIKey(ctx, userID, id, now, exp); err != nil {
		return fmt.Errorf("revoke api key: %w", err)
	}
	s.Revoker.Record(ctx, gatehouse.Revocation{Kind: gatehouse.RevokeAPIKey, Subject: id, At: now, ExpiresAt: exp})
	s.keys.forget(id)
	s.Observer.Revoked("api_key", 1)
	return nil
}

// RunAPIKeyUsage writes recorded key uses every few seconds until ctx
// ends, then once more.
func (s *Service) RunAPIKeyUsage(ctx context.Context) {
	t := time.NewTicker(apiKeyFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			s.FlushAPIKeyUsage(fctx)
			cancel()
			return
		case <-t.C:
			s.FlushAPIKeyUsage(ctx)
		}
	}
}

// FlushAPIKeyUsage writes the uses recorded since the last flush. A failed
// write puts them back, so the next flush tries again.
func (s *Service) FlushAPIKeyUsage(ctx context.Context) {
	if s.APIKeyStore == nil {
		return
	}
	batch := s.keyUses.take()
	if len(batch) == 0 {
		return
	}
	if err := s.APIKeyStore.TouchAPIKeys(ctx, batch); err != nil {
		s.Logger.Warn("recording api key use", "keys", len(batch), "err", err)
		s.keyUses.restore(batch)
	}
}

// --- in-memory state ----------------------------------------------------------

// keyEntry is a cached key row and its owner as last read.
type keyEntry struct {
	key      gatehouse.APIKey
	cachedAt time.Time

	mu          sync.Mutex
	owner       gatehouse.User
	ownerReadAt time.Time // zero: not read yet
}

type keyCache struct {
	mu      sync.RWMutex
	entries map[string]*keyEntry
}

func newKeyCache() *keyCache { return &keyCache{entries: make(map[string]*keyEntry)} }

func (c *keyCache) get(id string, now time.Time) (*keyEntry, bool) {
	c.mu.RLock()
	e, ok := c.entries[id]
	c.mu.RUnlock()
	if !ok || now.Sub(e.cachedAt) > apiKeyCacheTTL {
		return nil, false
	}
	return e, true
}

func (c *keyCache) put(id string, e *keyEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= apiKeyCacheMax {
		// Crude but bounded and rare: entries refill at one read each.
		clear(c.entries)
	}
	c.entries[id] = e
}

func (c *keyCache) forget(id string) {
	c.mu.Lock()
	delete(c.entries, id)
	c.mu.Unlock()
}

// keyUsage collects the last use of each key between flushes.
type keyUsage struct {
	mu   sync.Mutex
	uses map[string]time.Time
}

func newKeyUsage() *keyUsage { return &keyUsage{uses: make(map[string]time.Time)} }

func (u *keyUsage) record(id string, at time.Time) {
	u.mu.Lock()
	if old, ok := u.uses[id]; !ok || at.After(old) {
		u.uses[id] = at
	}
	u.mu.Unlock()
}

func (u *keyUsage) pending(id string) (time.Time, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	at, ok := u.uses[id]
	return at, ok
}

func (u *keyUsage) take() map[string]time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.uses) == 0 {
		return nil
	}
	batch := u.uses
	u.uses = make(map[string]time.Time, len(batch))
	for id, at := range batch {
		batch[id] = at.UTC().Truncate(time.Microsecond)
	}
	return batch
}

func (u *keyUsage) restore(batch map[string]time.Time) {
	for id, at := range batch {
		u.record(id, at)
	}
}

// keyGuard remembers client addresses that spent their budget of failed
// API-key attempts, so that until it refills this instance refuses their
// attempts without asking the (possibly remote) limiter on every request.
type keyGuard struct {
	mu    sync.RWMutex
	until map[string]time.Time
}

func newKeyGuard() *keyGuard { return &keyGuard{until: make(map[string]time.Time)} }

func (g *keyGuard) blocked(key string, now time.Time) error {
	g.mu.RLock()
	until, ok := g.until[key]
	g.mu.RUnlock()
	if !ok {
		return nil
	}
	if now.Before(until) {
		return &RateLimitError{RetryAfter: until.Sub(now)}
	}
	g.mu.Lock()
	if u, ok := g.until[key]; ok && !now.Before(u) {
		delete(g.until, key)
	}
	g.mu.Unlock()
	return nil
}

func (g *keyGuard) block(key string, until time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.until) >= apiKeyCacheMax {
		clear(g.until)
	}
	g.until[key] = until
}
