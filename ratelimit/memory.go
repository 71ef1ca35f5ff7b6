package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// memShards spreads keys over independent mutexes so concurrent requests
// for different keys rarely contend.
const memShards = 64

// Sweeping: a shard drops keys whose TAT has passed (they carry no state:
// an absent key behaves the same) when it has doubled in size since the
// last sweep, and at least once a minute. Doubling keeps the cost amortised
// O(1) per access and the map within about twice its live keys.
const (
	minSweepLen = 256
	sweepEvery  = time.Minute
)

// Memory is an in-process GCRA limiter. Its memory stays bounded by the keys
// that are currently limited (TAT in the future), without a goroutine.
type Memory struct {
	now    func() time.Time
	seed   maphash.Seed
	shards [memShards]memShard
}

type memShard struct {
	mu        sync.Mutex
	tat       map[string]int64 // key → theoretical arrival time, Unix nanoseconds
	nextSweep int
	lastSweep int64
}

var _ Limiter = (*Memory)(nil)

// NewMemory returns an empty in-process limiter; now nil means time.Now.
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	m := &Memory{now: now, seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].tat = make(map[string]int64)
		m.shards[i].nextSweep = minSweepLen
	}
	return m
}

// Allow implements Limiter. It never fails for a valid Rate.
func (m *Memory) Allow(_ context.Context, key string, r Rate) (Result, error) {
	return m.do(key, r, true)
}

// Peek implements Limiter.
func (m *Memory) Peek(_ context.Context, key string, r Rate) (Result, error) {
	return m.do(key, r, false)
}

// Refund implements Limiter: it moves the key's TAT back by one interval.
func (m *Memory) Refund(_ context.Context, key string, r Rate) error {
	if r.Off() {
		return nil
	}
	if err := check(key, r); err != nil {
		return err
	}
	now := m.now().UnixNano()
	s := &m.shards[maphash.String(m.seed, key)%memShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	tat, ok := s.tat[key]
	if !ok {
		return nil
	}
	if tat -= int64(r.interval()); tat <= now {
		delete(s.tat, key) // a full budget again
	} else {
		s.tat[key] = tat
	}
	return nil
}

func (m *Memory) do(key string, r Rate, consume bool) (Result, error) {
	if r.Off() {
		return unlimited(), nil
	}
	if err := check(key, r); err != nil {
		return Result{}, err
	}
	now := m.now().UnixNano()
	s := &m.shards[maphash.String(m.seed, key)%memShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maybeSweep(now)

	res, newTAT := gcra(now, s.tat[key], r, consume)
	if consume && res.Allowed {
		s.tat[key] = newTAT
	}
	return res, nil
}

// gcra evaluates one event at now against the stored TAT (0 when none),
// with the same arithmetic as redis_rate's scripts so that Memory and Redis
// answer alike: an event is allowed when now >= TAT + interval - burst*interval.
func gcra(now, tat int64, r Rate, consume bool) (Result, int64) {
	interval := int64(r.interval())
	burstOffset := interval * int64(r.Limit)
	tat = max(tat, now)
	allowAt := tat + interval - burstOffset
	if now < allowAt {
		return Result{RetryAfter: time.Duration(allowAt - now)}, 0
	}
	remaining := int((now - allowAt) / interval)
	if !consume {
		remaining++ // Peek counts the event it did not take
	}
	return Result{Allowed: true, Remaining: remaining}, tat + interval
}

// maybeSweep drops expired keys; the caller holds s.mu.
func (s *memShard) maybeSweep(now int64) {
	if len(s.tat) < s.nextSweep && (len(s.tat) == 0 || now-s.lastSweep < int64(sweepEvery)) {
		return
	}
	// Copy the live keys into a fresh map rather than deleting in place: Go
	// maps never give back their buckets, so after a flood of keys only a
	// new map returns the memory.
	live := make(map[string]int64)
	for k, tat := range s.tat {
		if tat > now {
			live[k] = tat
		}
	}
	s.tat = live
	s.lastSweep = now
	s.nextSweep = max(2*len(s.tat), minSweepLen)
}

// len reports how many keys are held (for tests).
func (m *Memory) len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.tat)
		s.mu.Unlock()
	}
	return n
}
