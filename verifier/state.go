package verifier

import (
	"context"
	"sync"
	"time"
)

// state is the revocation state learnt from the feed.
type state struct {
	now    func() time.Time
	retain time.Duration

	mu       sync.RWMutex
	sessions map[string]time.Time // sid → when the entry was made
	tokens   map[string]time.Time // jti → made
	apiKeys  map[string]time.Time // id → made
	users    map[string]userCutoff
	// contact is when the feed last answered (an event, a heartbeat, a
	// page); zero before the first.
	contact time.Time
	cursor  string
}

type userCutoff struct {
	before time.Time // tokens issued before are revoked
	at     time.Time // made
}

func newState(now func() time.Time, retain time.Duration) *state {
	return &state{
		now: now, retain: retain,
		sessions: map[string]time.Time{}, tokens: map[string]time.Time{},
		apiKeys: map[string]time.Time{}, users: map[string]userCutoff{},
	}
}

// item is one revocation of the feed.
type item struct {
	Kind      string     `json:"kind"`
	SessionID string     `json:"session_id"`
	UserID    string     `json:"user_id"`
	Before    *time.Time `json:"before"`
	JTI       string     `json:"jti"`
	ID        string     `json:"id"`
	At        time.Time  `json:"at"`
}

// apply records items and moves the cursor; unknown kinds are skipped.
func (s *state) apply(items []item, cursor string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range items {
		switch it.Kind {
		case "session":
			if it.SessionID != "" {
				s.sessions[it.SessionID] = it.At
			}
		case "token":
			if it.JTI != "" {
				s.tokens[it.JTI] = it.At
			}
		case "api_key":
			if it.ID != "" {
				s.apiKeys[it.ID] = it.At
			}
		case "user":
			if it.UserID == "" || it.Before == nil {
				continue
			}
			u := s.users[it.UserID]
			if it.Before.After(u.before) {
				u.before = *it.Before
			}
			if it.At.After(u.at) {
				u.at = it.At
			}
			s.users[it.UserID] = u
		}
	}
	if cursor != "" {
		s.cursor = cursor
	}
	s.contact = s.now()
}

func (s *state) touch() {
	s.mu.Lock()
	s.contact = s.now()
	s.mu.Unlock()
}

func (s *state) currentCursor() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cursor
}

func (s *state) revoked(c *Claims) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, ok := s.tokens[c.ID]; ok {
		return true
	}
	if c.SessionID != "" {
		if _, ok := s.sessions[c.SessionID]; ok {
			return true
		}
	}
	u, ok := s.users[c.Subject]
	return ok && c.IssuedAt.Before(u.before)
}

func (s *state) apiKeyRevoked(id string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.apiKeys[id]
	return ok
}

func (s *state) staleness(after time.Duration) (time.Duration, bool) {
	s.mu.RLock()
	contact := s.contact
	s.mu.RUnlock()
	if contact.IsZero() {
		return 0, true
	}
	age := s.now().Sub(contact)
	return age, age > after
}

// pruneBefore drops entries made before cutoff: no token they could
// reject is still valid.
func (s *state) pruneBefore(cutoff time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range []map[string]time.Time{s.sessions, s.tokens, s.apiKeys} {
		for k, at := range m {
			if at.Before(cutoff) {
				delete(m, k)
			}
		}
	}
	for k, u := range s.users {
		if u.at.Before(cutoff) {
			delete(s.users, k)
		}
	}
}

func (v *Verifier) prune(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v.state.pruneBefore(v.cfg.Now().Add(-v.cfg.RetainFor))
	}
}

// verifiedCache remembers the claims of tokens whose signature checked
// out, so a token used again costs a map lookup, not a signature
// verification. Times and revocation are checked on every use; the cache
// is emptied whenever the key set changes.
type verifiedCache struct {
	mu sync.RWMutex
	m  map[string]*Claims
}

func newVerifiedCache() *verifiedCache { return &verifiedCache{m: map[string]*Claims{}} }

func (c *verifiedCache) get(raw string) (*Claims, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	cl, ok := c.m[raw]
	return cl, ok
}

func (c *verifiedCache) put(raw string, cl *Claims) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= cacheMax {
		clear(c.m) // crude but bounded; it refills with the tokens in use
	}
	c.m[raw] = cl
}

func (c *verifiedCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
}
