package main

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// openResult is what one open-loop run produced.
type openResult struct {
	result
	scheduled   uint64        // arrivals scheduled inside the measured window
	maxLag      time.Duration // how far the dispatcher ever fell behind the schedule
	maxInFlight int64         // most requests outstanding at once
}

// runOpenLoad sends requests at scheduled arrival times, whatever the
// server's answers are doing: rate per second on average, exponential gaps
// (Poisson arrivals) or even ones, drawn from seed so that every server
// measured with the same seed gets the same arrival pattern. Each request
// runs on its own goroutine, so a slow answer never delays the next
// arrival, and its latency is counted from its scheduled arrival time, not
// from when it was sent: a dispatcher running late, or a request waiting
// for a connection, is counted as waiting (no coordinated omission).
// Arrivals during warmup are sent but not recorded; every arrival scheduled
// in the measured window dur is recorded, and runOpenLoad waits for the
// last of them to be answered, so slow answers at the end are not dropped.
func runOpenLoad(ctx context.Context, rate float64, poisson bool, seed uint64, warmup, dur time.Duration, do op) *openResult {
	res := &openResult{}
	if rate <= 0 {
		return res
	}
	rng := rand.New(rand.NewPCG(seed, 0x6761746568))
	mean := float64(time.Second) / rate
	gap := func() time.Duration {
		if poisson {
			return time.Duration(rng.ExpFloat64() * mean)
		}
		return time.Duration(mean)
	}
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		inFlight atomic.Int64
		peak     atomic.Int64
	)
	t0 := time.Now()
	start := t0.Add(warmup)
	end := start.Add(dur)
	for at := t0.Add(gap()); at.Before(end) && ctx.Err() == nil; at = at.Add(gap()) {
		if d := time.Until(at); d > 0 {
			sleepCtx(ctx, d)
		}
		res.maxLag = max(res.maxLag, time.Since(at))
		measured := !at.Before(start)
		if measured {
			res.scheduled++
		}
		n := inFlight.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok := do(ctx)
			lat := time.Since(at)
			inFlight.Add(-1)
			if !measured {
				return
			}
			mu.Lock()
			res.requests++
			if !ok {
				res.errors++
			}
			res.hist.record(lat)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = dur
	res.maxInFlight = peak.Load()
	return res
}
