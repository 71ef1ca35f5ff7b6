package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in      string
		want    Rate
		wantErr bool
	}{
		{"10/1m", Rate{10, time.Minute}, false},
		{"5/30s", Rate{5, 30 * time.Second}, false},
		{"100/1h", Rate{100, time.Hour}, false},
		{" 3 / 1m ", Rate{3, time.Minute}, false},
		{"10/m", Rate{10, time.Minute}, false},
		{"1/500ms", Rate{1, 500 * time.Millisecond}, false},
		{"off", Rate{}, false},
		{"OFF", Rate{}, false},
		{"", Rate{}, true},
		{"10", Rate{}, true},
		{"10/", Rate{}, true},
		{"/1m", Rate{}, true},
		{"0/1m", Rate{}, true},
		{"-1/1m", Rate{}, true},
		{"x/1m", Rate{}, true},
		{"10/0s", Rate{}, true},
		{"10/-1m", Rate{}, true},
		{"10/1parsec", Rate{}, true},
		{"1000000/1ms", Rate{}, true}, // finer than a microsecond per event
		{"10/1m/2", Rate{}, true},
		{"99999999999999999999/1m", Rate{}, true},
	}
	for _, tt := range tests {
		got, err := ParseRate(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && (len(err.Error()) == 0 || containsNewline(err.Error())) {
			t.Errorf("ParseRate(%q) error %q is not one sentence", tt.in, err)
		}
		if err == nil {
			if back, err := ParseRate(got.String()); err != nil || back != got {
				t.Errorf("ParseRate(%q.String() = %q) = %v, %v", tt.in, got.String(), back, err)
			}
		}
	}
	if !(Rate{}).Off() || (Rate{1, time.Second}).Off() {
		t.Error("Off() is wrong")
	}
}

func containsNewline(s string) bool {
	for _, c := range s {
		if c == '\n' {
			return true
		}
	}
	return false
}

// clock is a fake, goroutine-safe clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func (c *clock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func mustAllow(t *testing.T, l Limiter, key string, r Rate) Result {
	t.Helper()
	res, err := l.Allow(context.Background(), key, r)
	if err != nil {
		t.Fatalf("Allow(%q): %v", key, err)
	}
	return res
}

func TestMemoryBurstThenLimited(t *testing.T) {
	c := newClock()
	m := NewMemory(c.Now)
	r := Rate{Limit: 5, Period: time.Minute} // one every 12s, burst 5
	for i := range 5 {
		res := mustAllow(t, m, "ip:1", r)
		if !res.Allowed || res.Remaining != 4-i || res.RetryAfter != 0 {
			t.Fatalf("event %d: %+v, want allowed with %d remaining", i, res, 4-i)
		}
	}
	res := mustAllow(t, m, "ip:1", r)
	if res.Allowed || res.Remaining != 0 || res.RetryAfter != 12*time.Second {
		t.Fatalf("6th event: %+v, want denied with RetryAfter 12s", res)
	}
	// RetryAfter is accurate: a moment before, still denied; at it, allowed.
	c.Advance(12*time.Second - time.Millisecond)
	if res := mustAllow(t, m, "ip:1", r); res.Allowed || res.RetryAfter != time.Millisecond {
		t.Fatalf("just before RetryAfter: %+v", res)
	}
	c.Advance(time.Millisecond)
	if res := mustAllow(t, m, "ip:1", r); !res.Allowed || res.Remaining != 0 {
		t.Fatalf("at RetryAfter: %+v", res)
	}
	if res := mustAllow(t, m, "ip:1", r); res.Allowed {
		t.Fatalf("one refilled slot used twice: %+v", res)
	}
	// A whole period refills the whole burst.
	c.Advance(time.Minute)
	for i := range 5 {
		if res := mustAllow(t, m, "ip:1", r); !res.Allowed {
			t.Fatalf("after refill, event %d denied", i)
		}
	}
	if res := mustAllow(t, m, "ip:1", r); res.Allowed {
		t.Fatal("burst exceeded after refill")
	}
}

func TestMemoryKeysIndependentAndOff(t *testing.T) {
	c := newClock()
	m := NewMemory(c.Now)
	r := Rate{Limit: 1, Period: time.Hour}
	mustAllow(t, m, "a", r)
	if mustAllow(t, m, "a", r).Allowed {
		t.Fatal("a allowed twice")
	}
	if !mustAllow(t, m, "b", r).Allowed {
		t.Fatal("b limited by a")
	}
	for range 100 {
		if res := mustAllow(t, m, "a", Rate{}); !res.Allowed || res.Remaining != -1 {
			t.Fatalf("off rate: %+v", res)
		}
	}
	if _, err := m.Allow(context.Background(), "a", Rate{Limit: -1, Period: time.Second}); err == nil {
		t.Fatal("invalid rate accepted")
	}
}

func TestMemoryPeekConsumesNothing(t *testing.T) {
	c := newClock()
	m := NewMemory(c.Now)
	r := Rate{Limit: 3, Period: time.Minute}
	ctx := context.Background()
	for range 10 {
		res, err := m.Peek(ctx, "acct", r)
		if err != nil || !res.Allowed || res.Remaining != 3 {
			t.Fatalf("Peek on fresh key: %+v, %v", res, err)
		}
	}
	mustAllow(t, m, "acct", r)
	if res, _ := m.Peek(ctx, "acct", r); !res.Allowed || res.Remaining != 2 {
		t.Fatalf("Peek after one: %+v", res)
	}
	mustAllow(t, m, "acct", r)
	mustAllow(t, m, "acct", r)
	res, _ := m.Peek(ctx, "acct", r)
	if res.Allowed || res.RetryAfter != 20*time.Second {
		t.Fatalf("Peek when exhausted: %+v, want denied, RetryAfter 20s", res)
	}
	// Peek's verdict matches Allow's.
	c.Advance(20 * time.Second)
	if res, _ := m.Peek(ctx, "acct", r); !res.Allowed || res.Remaining != 1 {
		t.Fatalf("Peek after refill: %+v", res)
	}
	if !mustAllow(t, m, "acct", r).Allowed {
		t.Fatal("Allow denied what Peek allowed")
	}
}

func TestMemoryEvictionKeepsMapBounded(t *testing.T) {
	c := newClock()
	m := NewMemory(c.Now)
	r := Rate{Limit: 5, Period: time.Second}
	for round := range 20 {
		for i := range 10_000 {
			mustAllow(t, m, fmt.Sprintf("r%d-k%d", round, i), r)
		}
		c.Advance(2 * time.Second) // every key of this round is now stale
	}
	// 200,000 keys were limited; only the last round's (10,000) can be live,
	// and the doubling sweep keeps at most about twice that.
	if n := m.len(); n > 2*10_000+memShards*minSweepLen {
		t.Fatalf("memory holds %d keys after 200000 distinct ones", n)
	}
	// The periodic sweep also clears a quiet limiter.
	c.Advance(2 * sweepEvery)
	// Enough keys to touch every shard (a miss has odds of about e^-20).
	const late = memShards * 20
	for i := range late {
		mustAllow(t, m, "late"+strconv.Itoa(i), r)
	}
	if n := m.len(); n > late {
		t.Fatalf("after the periodic sweep memory holds %d keys, want at most %d", n, late)
	}
}

func TestMemoryConcurrent(t *testing.T) {
	m := NewMemory(nil)
	r := Rate{Limit: 100, Period: time.Hour}
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if mustAllow(t, m, "shared", r).Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != 100 {
		t.Fatalf("%d of 800 concurrent events allowed, want exactly 100", got)
	}
}

func BenchmarkMemoryAllow(b *testing.B) {
	m := NewMemory(nil)
	r := Rate{Limit: 1_000_000, Period: time.Hour}
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "ip:10.0.0." + strconv.Itoa(i)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := m.Allow(ctx, keys[i%len(keys)], r); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// redisClient connects to GATEHOUSE_TEST_REDIS_URL. Without it the test is
// skipped locally and fails in CI, so a green CI means Redis was exercised.
func redisClient(t testing.TB) *redis.Client {
	t.Helper()
	url := os.Getenv("GATEHOUSE_TEST_REDIS_URL")
	if url == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("GATEHOUSE_TEST_REDIS_URL is not set and CI=true")
		}
		t.Skip("GATEHOUSE_TEST_REDIS_URL is not set")
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("GATEHOUSE_TEST_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis at GATEHOUSE_TEST_REDIS_URL unreachable: %v", err)
		}
		t.Skipf("redis at GATEHOUSE_TEST_REDIS_URL unreachable: %v", err)
	}
	return c
}

// uniquePrefix keeps tests (and other people's tests on the same Redis)
// apart without ever flushing anything.
func uniquePrefix(t testing.TB) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "gatehouse-test:" + t.Name() + ":" + hex.EncodeToString(b[:]) + ":"
}

func TestRedisSharedBudget(t *testing.T) {
	c1, c2 := redisClient(t), redisClient(t)
	prefix := uniquePrefix(t)
	l1 := NewRedis(c1, prefix, nil, nil)
	l2 := NewRedis(c2, prefix, nil, nil)
	ctx := context.Background()
	r := Rate{Limit: 5, Period: time.Minute}

	for i := range 5 {
		l := l1
		if i%2 == 1 {
			l = l2
		}
		res, err := l.Allow(ctx, "ip:1", r)
		if err != nil || !res.Allowed || res.Remaining != 4-i {
			t.Fatalf("event %d: %+v, %v; want allowed, %d remaining", i, res, err, 4-i)
		}
	}
	for _, l := range []*Redis{l1, l2} {
		res, err := l.Allow(ctx, "ip:1", r)
		if err != nil || res.Allowed {
			t.Fatalf("limit reached through both, yet %+v, %v", res, err)
		}
		if res.RetryAfter <= 0 || res.RetryAfter > 12*time.Second {
			t.Fatalf("RetryAfter %s, want in (0, 12s]", res.RetryAfter)
		}
		pres, err := l.Peek(ctx, "ip:1", r)
		if err != nil || pres.Allowed || pres.RetryAfter <= 0 || pres.RetryAfter > 12*time.Second {
			t.Fatalf("Peek when exhausted: %+v, %v", pres, err)
		}
	}
	if res, err := l2.Allow(ctx, "ip:2", r); err != nil || !res.Allowed {
		t.Fatalf("another key was limited: %+v, %v", res, err)
	}
	if !l1.Healthy() || !l2.Healthy() {
		t.Fatal("healthy limiters report unhealthy")
	}
}

func TestRedisPeekConsumesNothing(t *testing.T) {
	l := NewRedis(redisClient(t), uniquePrefix(t), nil, nil)
	ctx := context.Background()
	r := Rate{Limit: 2, Period: time.Minute}
	for range 10 {
		res, err := l.Peek(ctx, "acct", r)
		if err != nil || !res.Allowed || res.Remaining != 2 {
			t.Fatalf("Peek on fresh key: %+v, %v", res, err)
		}
	}
	if res, err := l.Allow(ctx, "acct", r); err != nil || !res.Allowed {
		t.Fatalf("Allow: %+v, %v", res, err)
	}
	for range 10 {
		res, err := l.Peek(ctx, "acct", r)
		if err != nil || !res.Allowed || res.Remaining != 1 {
			t.Fatalf("Peek after one Allow: %+v, %v", res, err)
		}
	}
	if res, err := l.Allow(ctx, "acct", r); err != nil || !res.Allowed || res.Remaining != 0 {
		t.Fatalf("second Allow: %+v, %v", res, err)
	}
	res, err := l.Peek(ctx, "acct", r)
	if err != nil || res.Allowed || res.RetryAfter <= 0 || res.RetryAfter > 30*time.Second {
		t.Fatalf("Peek when exhausted: %+v, %v; want denied with RetryAfter in (0, 30s]", res, err)
	}
	if res, _ := l.Allow(ctx, "acct", Rate{}); !res.Allowed {
		t.Fatal("off rate limited")
	}
}

func TestRedisFallbackWhenUnreachable(t *testing.T) {
	// Deliberately not redisClient: this Redis does not exist.
	bad := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = bad.Close() })
	l := NewRedis(bad, "x:", nil, nil)
	ctx := context.Background()
	r := Rate{Limit: 3, Period: time.Minute}
	for i := range 3 {
		res, err := l.Allow(ctx, "ip:1", r)
		if err != nil || !res.Allowed {
			t.Fatalf("event %d through the fallback: %+v, %v", i, res, err)
		}
	}
	res, err := l.Allow(ctx, "ip:1", r)
	if err != nil || res.Allowed || res.RetryAfter <= 0 {
		t.Fatalf("fallback did not limit: %+v, %v", res, err)
	}
	if l.Healthy() {
		t.Fatal("Healthy() with Redis unreachable")
	}
	// A cancelled caller gets an error, not a verdict from nowhere.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	l.retryAt.Store(0) // let this call reach Redis
	if _, err := l.Allow(cctx, "ip:2", r); err == nil {
		t.Fatal("Allow with a cancelled context succeeded against a dead Redis")
	}
}

func TestRedisRecoversAfterFallback(t *testing.T) {
	c := redisClient(t)
	l := NewRedis(c, uniquePrefix(t), nil, nil)
	l.markUnhealthy(fmt.Errorf("simulated"))
	if l.Healthy() {
		t.Fatal("healthy right after failure, before the retry interval")
	}
	l.retryAt.Store(0)
	if !l.Healthy() {
		t.Fatal("Healthy() did not probe Redis and recover")
	}
	res, err := l.Allow(context.Background(), "k", Rate{Limit: 1, Period: time.Minute})
	if err != nil || !res.Allowed {
		t.Fatalf("Allow after recovery: %+v, %v", res, err)
	}
}

func TestMemoryRefund(t *testing.T) {
	c := newClock()
	m := NewMemory(c.Now)
	r := Rate{Limit: 2, Period: time.Minute}
	ctx := context.Background()
	mustAllow(t, m, "acct", r)
	mustAllow(t, m, "acct", r)
	if res, _ := m.Allow(ctx, "acct", r); res.Allowed {
		t.Fatal("third event allowed with a limit of 2")
	}
	if err := m.Refund(ctx, "acct", r); err != nil {
		t.Fatal(err)
	}
	if res, _ := m.Allow(ctx, "acct", r); !res.Allowed {
		t.Fatal("refunded event not available again")
	}
	if res, _ := m.Allow(ctx, "acct", r); res.Allowed {
		t.Fatal("a refund gave back more than one event")
	}
	mustAllow(t, m, "one", r)
	_ = m.Refund(ctx, "one", r)
	mustAllow(t, m, "one", r)
	mustAllow(t, m, "one", r)
	// Refunding an unknown key, or more than was taken, never exceeds the burst.
	for range 5 {
		_ = m.Refund(ctx, "fresh", r)
	}
	mustAllow(t, m, "fresh", r)
	mustAllow(t, m, "fresh", r)
	if res, _ := m.Allow(ctx, "fresh", r); res.Allowed {
		t.Fatal("refunds raised the budget above the burst")
	}
}

func TestRedisRefund(t *testing.T) {
	l := NewRedis(redisClient(t), uniquePrefix(t), nil, nil)
	ctx := context.Background()
	r := Rate{Limit: 2, Period: time.Minute}
	for i := range 2 {
		if res, err := l.Allow(ctx, "acct", r); err != nil || !res.Allowed {
			t.Fatalf("event %d: %+v, %v", i, res, err)
		}
	}
	if res, _ := l.Allow(ctx, "acct", r); res.Allowed {
		t.Fatal("third event allowed with a limit of 2")
	}
	if err := l.Refund(ctx, "acct", r); err != nil {
		t.Fatal(err)
	}
	if res, err := l.Allow(ctx, "acct", r); err != nil || !res.Allowed {
		t.Fatalf("refunded event not available again: %+v, %v", res, err)
	}
	if res, _ := l.Allow(ctx, "acct", r); res.Allowed {
		t.Fatal("a refund gave back more than one event")
	}
	// The common case: one event taken, one refunded, the budget is whole.
	if res, err := l.Allow(ctx, "one", r); err != nil || !res.Allowed {
		t.Fatalf("one: %+v, %v", res, err)
	}
	if err := l.Refund(ctx, "one", r); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if res, _ := l.Allow(ctx, "one", r); !res.Allowed {
			t.Fatalf("after a refund of the only event, event %d denied", i)
		}
	}
	for range 5 {
		if err := l.Refund(ctx, "fresh", r); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		if res, _ := l.Allow(ctx, "fresh", r); !res.Allowed {
			t.Fatalf("fresh key event %d denied", i)
		}
	}
	if res, _ := l.Allow(ctx, "fresh", r); res.Allowed {
		t.Fatal("refunds raised the budget above the burst")
	}
}
