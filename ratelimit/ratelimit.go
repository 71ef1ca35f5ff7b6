// Package ratelimit limits how often something may happen per key (a client
// IP, an account) with GCRA, the generic cell rate algorithm: one timestamp
// per key, no counters to reset, bursts up to the limit and a precise
// Retry-After. Memory keeps the state in process; Redis shares it between
// instances, so N instances do not allow N times the attempts, and falls
// back to memory while Redis is unreachable.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rate allows Limit events per Period, in bursts of up to Limit. The zero
// Rate is off: everything is allowed.
type Rate struct {
	Limit  int
	Period time.Duration
}

// Bounds on a parsed or used Rate. The emission interval (Period/Limit) must
// be at least a microsecond: Redis computes in float seconds, and a finer
// interval would make the two limiters disagree.
const (
	maxLimit    = 1_000_000
	minInterval = time.Microsecond
	maxPeriod   = 366 * 24 * time.Hour
)

// ParseRate parses "N/DURATION" (10/1m, 5/30s, 100/1h; a bare unit such as
// 10/m means one of it) or "off", which gives the zero Rate.
func ParseRate(s string) (Rate, error) {
	t := strings.TrimSpace(s)
	if strings.EqualFold(t, "off") {
		return Rate{}, nil
	}
	n, d, ok := strings.Cut(t, "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q is not of the form N/DURATION (such as 10/1m) or off", s)
	}
	limit, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || limit < 1 || limit > maxLimit {
		return Rate{}, fmt.Errorf("rate %q must start with a whole number of events from 1 to %d", s, maxLimit)
	}
	d = strings.TrimSpace(d)
	if d != "" && (d[0] < '0' || d[0] > '9') && d[0] != '.' {
		d = "1" + d // "10/m" reads as "10/1m"
	}
	period, err := time.ParseDuration(d)
	if err != nil || period <= 0 {
		return Rate{}, fmt.Errorf("rate %q must end with a positive duration such as 30s, 1m or 1h", s)
	}
	r := Rate{Limit: limit, Period: period}
	if err := r.validate(); err != nil {
		return Rate{}, fmt.Errorf("rate %q: %w", s, err)
	}
	return r, nil
}

// Off reports whether r is the zero Rate, which limits nothing.
func (r Rate) Off() bool { return r == Rate{} }

// String formats r the way ParseRate reads it.
func (r Rate) String() string {
	if r.Off() {
		return "off"
	}
	return strconv.Itoa(r.Limit) + "/" + r.Period.String()
}

// validate rejects a Rate that is neither off nor usable, so a bad value built
// in code fails loudly rather than limiting everything or nothing.
func (r Rate) validate() error {
	switch {
	case r.Limit < 1 || r.Limit > maxLimit:
		return fmt.Errorf("limit %d is outside 1 to %d", r.Limit, maxLimit)
	case r.Period <= 0 || r.Period > maxPeriod:
		return fmt.Errorf("period %s is outside (0, %s]", r.Period, maxPeriod)
	case r.Period/time.Duration(r.Limit) < minInterval:
		return fmt.Errorf("%d events per %s is finer than one per %s", r.Limit, r.Period, minInterval)
	}
	return nil
}

// interval is GCRA's emission interval: the time one event costs.
func (r Rate) interval() time.Duration { return r.Period / time.Duration(r.Limit) }

// Result is the outcome of Allow or Peek.
type Result struct {
	// Allowed reports whether the event may happen (for Allow: it was counted).
	Allowed bool
	// RetryAfter is how long until one event will be allowed; zero when Allowed.
	RetryAfter time.Duration
	// Remaining is how many more events would be allowed right now: after
	// this one for Allow, including this one for Peek. It is -1 when the
	// rate is off (unlimited).
	Remaining int
}

// ErrInvalidRate is returned (wrapped) for a Rate that is neither off nor valid.
var ErrInvalidRate = errors.New("invalid rate")

// Limiter is a per-key rate limiter.
type Limiter interface {
	// Allow reports whether one event for key may happen now under r, and
	// counts it when it may.
	Allow(ctx context.Context, key string, r Rate) (Result, error)
	// Peek reports whether one event would be allowed, counting nothing. For
	// limits on failures: Peek before the attempt, Allow after a failure.
	Peek(ctx context.Context, key string, r Rate) (Result, error)
	// Refund gives back one event counted by Allow, for limits on failures
	// that must count every attempt up front (so concurrent attempts
	// cannot outrun the limit) and return the budget of those that
	// succeeded. Best effort: a refund that cannot be applied leaves the
	// key more limited, never less.
	Refund(ctx context.Context, key string, r Rate) error
}

// unlimited is the Result for an off Rate.
func unlimited() Result { return Result{Allowed: true, Remaining: -1} }

// check returns the error for an invalid rate, wrapped with the key.
func check(key string, r Rate) error {
	if err := r.validate(); err != nil {
		return fmt.Errorf("rate limit %q: %w: %w", key, ErrInvalidRate, err)
	}
	return nil
}
