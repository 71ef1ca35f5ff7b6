package main

import (
	"context"
	"math/bits"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// hist is a log-linear latency histogram: 64 linear sub-buckets per power
// of two of nanoseconds, so any recorded value is known within 1/64 (~1.6%).
// One per worker, merged at the end; no locking on the hot path.
type hist struct {
	counts [(64 - 6 + 1) * 64]uint64
	n      uint64
}

const subBits = 6 // 64 sub-buckets

func bucketOf(v uint64) int {
	if v < 1<<subBits {
		return int(v)
	}
	e := bits.Len64(v) - subBits - 1 // v>>e is in [64,128)
	return (e+1)<<subBits + int(v>>e) - 1<<subBits
}

// lowerBound is the smallest value that falls in bucket i.
func lowerBound(i int) uint64 {
	if i < 1<<subBits {
		return uint64(i)
	}
	e := i>>subBits - 1
	m := uint64(i&(1<<subBits-1)) + 1<<subBits
	return m << e
}

func (h *hist) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	h.n++
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile returns the value at quantile q (0..1), as the middle of its bucket.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n-1)) + 1
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := lowerBound(i), lowerBound(i+1)
			return time.Duration((lo + hi) / 2)
		}
	}
	return 0
}

// result is what one measured scenario produced.
type result struct {
	requests uint64
	errors   uint64
	elapsed  time.Duration
	hist     hist
}

func (r *result) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

// newClient is a keep-alive HTTP/1.1 client with room for one idle
// connection per worker, so every worker keeps its own connection.
func newClient(conns int) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		IdleConnTimeout:     60 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// op is one request of a worker: it returns whether the answer was the
// expected one. Worker-local state lives in the closure the factory builds.
type op func(ctx context.Context) bool

// runLoad runs workers ops in a closed loop: warm-up first (not recorded),
// then dur of measurement. Each worker records latencies into its own
// histogram; requests still in flight when the window closes are not counted.
func runLoad(ctx context.Context, workers int, warmup, dur time.Duration, newOp func(worker int) op) *result {
	var (
		measuring atomic.Bool
		stop      atomic.Bool
		wg        sync.WaitGroup
		mu        sync.Mutex
		total     = &result{}
	)
	var start, end time.Time
	var window atomic.Int64 // unix nanos of window end, 0 until measuring
	for w := 0; w < workers; w++ {
		do := newOp(w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := &result{}
			for !stop.Load() && ctx.Err() == nil {
				t0 := time.Now()
				ok := do(ctx)
				t1 := time.Now()
				if !measuring.Load() {
					continue
				}
				if we := window.Load(); we != 0 && t1.UnixNano() > we {
					continue
				}
				if t0.UnixNano() < window.Load()-int64(dur) {
					continue // began before the window opened
				}
				local.requests++
				if !ok {
					local.errors++
				}
				local.hist.record(t1.Sub(t0))
			}
			mu.Lock()
			total.requests += local.requests
			total.errors += local.errors
			total.hist.merge(&local.hist)
			mu.Unlock()
		}()
	}
	sleepCtx(ctx, warmup)
	start = time.Now()
	window.Store(start.Add(dur).UnixNano())
	measuring.Store(true)
	sleepCtx(ctx, dur)
	end = time.Now()
	stop.Store(true)
	wg.Wait()
	total.elapsed = end.Sub(start)
	return total
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
