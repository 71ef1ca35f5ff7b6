package token

import (
	"hash/maphash"
	"sync"
	"time"
)

// verifiedCache remembers the payloads of access tokens whose signature
// already verified, keyed by the exact token string (issue 6,
// BENCHMARKS.md): an Ed25519 verification is about half the CPU of a
// Bearer-authenticated request, and a client presents the same access
// token on every request for its whole lifetime.
//
// Exactness is kept:
//   - only tokens that passed every check of Verify are cached, and a hit
//     requires the byte-identical token, whose signature would verify
//     again with the same result;
//   - the cache belongs to one immutable keySet snapshot, so any change
//     of the key set (load, rotation, reload) starts with an empty cache;
//   - a hit re-runs checkClaims at the caller's now (exp, iat, nbf,
//     issuer, audience), so expiry is exact, and checks the signing key's
//     retirement at now, so a token of a key that retired while the token
//     sat in the cache is refused like any other;
//   - revocation is not cached at all: auth.Authenticate checks every
//     request against the revocation sets after Verify, hit or miss.
//
// It is bounded (verifiedShards × verifiedPerShard entries, a few MB at
// most) and only valid tokens can enter it.
type verifiedCache struct {
	seed   maphash.Seed
	shards [verifiedShards]verifiedShard
}

const (
	verifiedShards   = 16
	verifiedPerShard = 1024
)

type verifiedShard struct {
	mu sync.RWMutex
	m  map[string]*verifiedToken // read-only once stored
}

// verifiedToken is what a hit needs to repeat Verify's checks that depend
// on the time: the claims, and the key that signed them.
type verifiedToken struct {
	claims *parsedClaims
	key    *slot
}

func newVerifiedCache() *verifiedCache {
	return &verifiedCache{seed: maphash.MakeSeed()}
}

func (c *verifiedCache) shard(raw string) *verifiedShard {
	return &c.shards[maphash.String(c.seed, raw)%verifiedShards]
}

func (c *verifiedCache) get(raw string) (*verifiedToken, bool) {
	if c == nil {
		return nil, false
	}
	s := c.shard(raw)
	s.mu.RLock()
	v, ok := s.m[raw]
	s.mu.RUnlock()
	return v, ok
}

// put stores v (which must not be modified afterwards). A full shard
// first drops its expired entries, then, if still full, an arbitrary
// eighth of them.
func (c *verifiedCache) put(raw string, v *verifiedToken, now time.Time) {
	if c == nil {
		return
	}
	s := c.shard(raw)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]*verifiedToken)
	}
	if len(s.m) >= verifiedPerShard {
		for k, old := range s.m {
			if exp := old.claims.ExpiresAt; exp == nil || !now.Before(exp.Time().Add(MaxLeeway)) || old.key.retired(now) {
				delete(s.m, k)
			}
		}
		for k := range s.m {
			if len(s.m) < verifiedPerShard*7/8 {
				break
			}
			delete(s.m, k)
		}
	}
	s.m[raw] = v
}
