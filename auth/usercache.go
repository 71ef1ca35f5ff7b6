package auth

import (
	"sync"
	"time"

	"github.com/gatehouse/gatehouse"
)

// userCache keeps recently read users for GET /auth/me, whose cost was
// mostly the user read (BENCHMARKS.md). For role and enabled state it is
// exact, not merely fresh enough: a role
// change or disabling moves the user's token cutoff forward, so every
// access token issued after such a change has an iat later than the
// change. An entry is served only to tokens issued no later than the
// entry was read; a newer token reads the store again. Email and
// email_verified change without a new token (verification, email change):
// the instance that changed them forgets its entry, others show the old
// values for at most userCacheTTL.
type userCache struct {
	mu      sync.Mutex
	entries map[string]cachedUser
}

type cachedUser struct {
	user     gatehouse.User
	readAt   time.Time
	cachedAt time.Time
}

const (
	userCacheTTL = 30 * time.Second
	userCacheMax = 16384
)

func newUserCache() *userCache { return &userCache{entries: make(map[string]cachedUser)} }

// get returns the cached user if it was read at or after issuedAt and is
// younger than the TTL.
func (c *userCache) get(id string, issuedAt, now time.Time) (gatehouse.User, bool) {
	c.mu.Lock()
	e, ok := c.entries[id]
	c.mu.Unlock()
	if !ok || e.readAt.Before(issuedAt) || now.Sub(e.cachedAt) > userCacheTTL {
		return gatehouse.User{}, false
	}
	return e.user, true
}

// put stores u, read from the store at readAt (taken before the read).
func (c *userCache) put(u gatehouse.User, readAt, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= userCacheMax {
		// Dropping everything is crude but bounded and rare; the cache
		// refills from the store at the cost of one read per user.
		clear(c.entries)
	}
	c.entries[u.ID] = cachedUser{user: u, readAt: readAt, cachedAt: now}
}

// forget drops a user whose role or state this instance just changed.
func (c *userCache) forget(id string) {
	c.mu.Lock()
	delete(c.entries, id)
	c.mu.Unlock()
}
