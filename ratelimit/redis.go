package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// retryRedisEvery bounds how often a limiter that lost Redis tries it again:
// in between, requests go straight to the fallback instead of each waiting
// for a dial to fail.
const retryRedisEvery = time.Second

// Redis is a GCRA limiter whose state lives in Redis (redis_rate's scripts,
// timed by the Redis server's clock), so every instance draws on one budget
// per key. While Redis fails it limits in process with the fallback, which
// is per instance but far better than not limiting or failing logins. (The
// fallback starts without Redis's history, so a key may get one fresh burst
// at each switch; that is the price of not depending on Redis for logins.)
type Redis struct {
	client   *redis.Client
	limiter  *redis_rate.Limiter
	refund   *redis.Script
	prefix   string
	fallback *Memory
	logger   *slog.Logger

	// mu orders health transitions so each is logged exactly once.
	mu      sync.Mutex
	healthy atomic.Bool
	// retryAt (Unix nanoseconds) is when, while unhealthy, one caller may
	// try Redis again.
	retryAt atomic.Int64
}

var _ Limiter = (*Redis)(nil)

// NewRedis returns a limiter on client whose keys start with prefix (after
// redis_rate's own "rate:"). fallback nil means a new Memory; logger nil
// discards.
func NewRedis(client *redis.Client, prefix string, fallback *Memory, logger *slog.Logger) *Redis {
	if fallback == nil {
		fallback = NewMemory(nil)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Redis{
		client:   client,
		limiter:  redis_rate.NewLimiter(client),
		refund:   redis.NewScript(refundScript),
		prefix:   prefix,
		fallback: fallback,
		logger:   logger,
	}
	r.healthy.Store(true)
	return r
}

// Allow implements Limiter.
func (r *Redis) Allow(ctx context.Context, key string, rate Rate) (Result, error) {
	return r.do(ctx, key, rate, true)
}

// Peek implements Limiter. It runs redis_rate's AllowAtMost with n=0, which
// changes nothing (it may rewrite the same TAT) and, unlike AllowN with n=0,
// reports the RetryAfter of the next event when none is left.
func (r *Redis) Peek(ctx context.Context, key string, rate Rate) (Result, error) {
	return r.do(ctx, key, rate, false)
}

// refundScript moves a key's GCRA TAT, as redis_rate stores it (seconds
// since 2017-01-01 by Redis's own clock, under "rate:" + key), back by one
// emission interval (ARGV[1], seconds), and deletes the key once that
// reaches the present: a full budget again. redis_rate has no refund, and
// its script run at a cost of -1 skips the write exactly in that last case.
const refundScript = `
local tat = tonumber(redis.call("GET", KEYS[1]))
if not tat then return 0 end
local now = redis.call("TIME")
now = (now[1] - 1483228800) + (now[2] / 1000000)
local new_tat = tat - tonumber(ARGV[1])
if new_tat <= now then
  redis.call("DEL", KEYS[1])
else
  redis.call("SET", KEYS[1], new_tat, "KEEPTTL")
end
return 1
`

// Refund implements Limiter.
func (r *Redis) Refund(ctx context.Context, key string, rate Rate) error {
	if rate.Off() {
		return nil
	}
	if err := check(key, rate); err != nil {
		return err
	}
	if !r.tryRedis() {
		return r.fallback.Refund(ctx, key, rate)
	}
	interval := rate.Period.Seconds() / float64(rate.Limit)
	if err := r.refund.Run(ctx, r.client, []string{"rate:" + r.prefix + key}, interval).Err(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("rate limit refund %q: %w", key, err)
		}
		r.markUnhealthy(err)
		return r.fallback.Refund(ctx, key, rate)
	}
	r.markHealthy()
	return nil
}

func (r *Redis) do(ctx context.Context, key string, rate Rate, consume bool) (Result, error) {
	if rate.Off() {
		return unlimited(), nil
	}
	if err := check(key, rate); err != nil {
		return Result{}, err
	}
	if !r.tryRedis() {
		return r.fallback.do(key, rate, consume)
	}
	lim := redis_rate.Limit{Rate: rate.Limit, Burst: rate.Limit, Period: rate.Period}
	var (
		res *redis_rate.Result
		err error
	)
	if consume {
		res, err = r.limiter.AllowN(ctx, r.prefix+key, lim, 1)
	} else {
		res, err = r.limiter.AllowAtMost(ctx, r.prefix+key, lim, 0)
	}
	if err != nil {
		if ctx.Err() != nil {
			// The caller gave up; that says nothing about Redis.
			return Result{}, fmt.Errorf("rate limit %q: %w", key, err)
		}
		r.markUnhealthy(err)
		return r.fallback.do(key, rate, consume)
	}
	r.markHealthy()

	out := Result{Remaining: res.Remaining}
	if consume {
		out.Allowed = res.Allowed > 0
	} else {
		out.Allowed = res.Remaining >= 1
	}
	if !out.Allowed {
		out.Remaining = 0
		out.RetryAfter = max(res.RetryAfter, time.Millisecond) // never "retry now" when denied
	}
	return out, nil
}

// Healthy reports whether the last use of Redis worked. While unhealthy it
// pings Redis (at most once a second, briefly) so that readiness recovers
// even when no request has come through since Redis returned.
func (r *Redis) Healthy() bool {
	if r.healthy.Load() {
		return true
	}
	if !r.tryRedis() {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := r.client.Ping(ctx).Err(); err != nil {
		r.markUnhealthy(err)
		return false
	}
	r.markHealthy()
	return true
}

// tryRedis reports whether this call should use Redis: always while healthy,
// otherwise for one caller per retry interval.
func (r *Redis) tryRedis() bool {
	if r.healthy.Load() {
		return true
	}
	now := time.Now().UnixNano()
	at := r.retryAt.Load()
	return now >= at && r.retryAt.CompareAndSwap(at, now+int64(retryRedisEvery))
}

func (r *Redis) markUnhealthy(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retryAt.Store(time.Now().Add(retryRedisEvery).UnixNano())
	if r.healthy.Swap(false) {
		r.logger.Warn("rate limiter: redis failed, limiting in process until it is back", "error", err)
	}
}

func (r *Redis) markHealthy() {
	if r.healthy.Load() {
		return // the common case: no lock
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.healthy.Swap(true) {
		r.logger.Info("rate limiter: redis is back")
	}
}
