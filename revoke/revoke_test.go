package revoke

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
)

// fakeLog is an in-memory revocation log shared by the Revokers of a test,
// as one database is shared by instances.
type fakeLog struct {
	mu      sync.Mutex
	entries []gatehouse.Revocation
	seq     int64
	err     error
	reads   int
}

// add appends entries, numbering them as a store does.
func (l *fakeLog) add(revs ...gatehouse.Revocation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range revs {
		l.seq++
		r.Seq = l.seq
		l.entries = append(l.entries, r)
	}
}

func (l *fakeLog) setErr(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.err = err
}

func (l *fakeLog) readCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reads
}

func (l *fakeLog) RevocationsAfter(_ context.Context, after int64, now time.Time, limit int) ([]gatehouse.Revocation, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return nil, l.err
	}
	l.reads++
	var out []gatehouse.Revocation
	for _, r := range l.entries {
		if r.Seq > after && r.ExpiresAt.After(now) && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}

func (l *fakeLog) PruneRevocations(_ context.Context, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	kept := l.entries[:0]
	for _, r := range l.entries {
		if !r.ExpiresAt.Before(now) {
			kept = append(kept, r)
		}
	}
	l.entries = kept
	return nil
}

// clock is a fake, goroutine-safe clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func sessionRev(sid string, at time.Time) gatehouse.Revocation {
	return gatehouse.Revocation{Kind: gatehouse.RevokeSession, Subject: sid, At: at, ExpiresAt: at.Add(15 * time.Minute)}
}

func TestStartLoadsEveryPage(t *testing.T) {
	log := &fakeLog{}
	now := time.Now()
	n := 2*PageSize + 17
	for i := range n {
		log.add(sessionRev("s"+strconv.Itoa(i), now))
	}
	r := started(t, log, nil, Config{PollInterval: time.Hour})
	if sessions, _ := r.counts(); sessions != n {
		t.Fatalf("start loaded %d sessions, want %d", sessions, n)
	}
	if got := r.Cursor(); got != int64(n) {
		t.Fatalf("Cursor() = %d after the load, want %d", got, n)
	}
	if reads := log.readCount(); reads != 3 {
		t.Fatalf("start read %d pages, want 3", reads)
	}
}

func TestTailFollowsTheLog(t *testing.T) {
	log := &fakeLog{}
	now := time.Now()
	log.add(sessionRev("old", now))
	r := started(t, log, nil, Config{PollInterval: 5 * time.Millisecond})
	got, ok := r.Tail(0, now, 10)
	if !ok || len(got) != 1 || got[0].Subject != "old" || got[0].Seq != 1 {
		t.Fatalf("Tail(0) = %v, %v; want the loaded entry", got, ok)
	}
	changed := r.Changed()
	if got, ok := r.Tail(1, now, 10); !ok || len(got) != 0 {
		t.Fatalf("Tail(cursor) = %v, %v; want nothing, ok", got, ok)
	}
	log.add(sessionRev("new", now), userRev("u", now))
	select {
	case <-changed:
	case <-time.After(2 * time.Second):
		t.Fatal("Changed not closed after the poll read new entries")
	}
	got, ok = r.Tail(1, now, 10)
	if !ok || len(got) != 2 || got[0].Subject != "new" || got[1].Subject != "u" || got[1].Seq != 3 {
		t.Fatalf("Tail(1) = %v, %v; want the two new entries in order", got, ok)
	}
	if got, ok := r.Tail(1, now, 1); !ok || len(got) != 1 {
		t.Fatalf("Tail(1, limit 1) = %v, %v", got, ok)
	}
	// Expired entries are not handed out.
	if got, ok := r.Tail(0, now.Add(time.Hour), 10); !ok || len(got) != 0 {
		t.Fatalf("Tail an hour later = %v, %v; want nothing", got, ok)
	}
}

func TestTailIsBounded(t *testing.T) {
	log := &fakeLog{}
	now := time.Now()
	for i := range tailSize + 10 {
		log.add(sessionRev("s"+strconv.Itoa(i), now))
	}
	r := started(t, log, nil, Config{PollInterval: time.Hour})
	if _, ok := r.Tail(5, now, 10); ok {
		t.Fatal("Tail answered from before its floor; the caller must be sent to the store")
	}
	got, ok := r.Tail(10, now, 10)
	if !ok || len(got) != 10 || got[0].Seq != 11 {
		t.Fatalf("Tail(10) = %d entries (first %v), %v; want 10 from Seq 11", len(got), got, ok)
	}
}

func TestListenerGetsLocalRecordAtOnce(t *testing.T) {
	log := &fakeLog{}
	// No poll within the test: only Record's read-back can deliver.
	r := started(t, log, nil, Config{PollInterval: time.Hour, StaleAfter: 2 * time.Hour})
	changed := r.Changed()
	stop := r.Listen()
	defer stop()
	rev := sessionRev("now", time.Now())
	log.add(rev) // the service writes the store, then records
	r.Record(context.Background(), rev)
	select {
	case <-changed:
	case <-time.After(2 * time.Second):
		t.Fatal("a listener was not woken by a local Record")
	}
	if got, ok := r.Tail(0, time.Now(), 10); !ok || len(got) != 1 || got[0].Seq != 1 {
		t.Fatalf("Tail(0) = %v, %v; want the recorded entry with its Seq", got, ok)
	}
	// Without listeners Record reads nothing back.
	stop()
	reads := log.readCount()
	r.Record(context.Background(), sessionRev("later", time.Now()))
	time.Sleep(50 * time.Millisecond)
	if got := log.readCount(); got != reads {
		t.Fatalf("Record read the log %d times with no listener", got-reads)
	}
}

func userRev(uid string, at time.Time) gatehouse.Revocation {
	return gatehouse.Revocation{Kind: gatehouse.RevokeUserBefore, Subject: uid, At: at, ExpiresAt: at.Add(15 * time.Minute)}
}

// started returns a started Revoker stopped at the end of the test.
func started(t *testing.T, log Log, bus Bus, cfg Config) *Revoker {
	t.Helper()
	r := New(log, bus, cfg, nil)
	ctx, cancel := context.WithCancel(context.Background())
	if err := r.Start(ctx); err != nil {
		cancel()
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		r.Wait()
	})
	return r
}

// eventually polls cond every few milliseconds until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

func TestSetSemantics(t *testing.T) {
	c := newClock()
	r := started(t, &fakeLog{}, nil, Config{Now: c.Now, PollInterval: time.Hour})
	now := c.Now()
	iat := now.Add(-time.Minute)

	if err := r.Check("s1", "u1", iat); err != nil {
		t.Fatalf("nothing revoked, yet %v", err)
	}
	r.Record(context.Background(), sessionRev("s1", now))
	if err := r.Check("s1", "u1", iat); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked session: %v", err)
	}
	if err := r.Check("s2", "u1", iat); err != nil {
		t.Fatalf("another session of the same user: %v", err)
	}

	before := now.Truncate(time.Second)
	r.Record(context.Background(), userRev("u2", before))
	for _, tc := range []struct {
		iat  time.Time
		want error
	}{
		{before.Add(-time.Second), ErrRevoked},
		{before.Add(-time.Nanosecond), ErrRevoked},
		{before, nil}, // tokens stamped at the instant (reissued after it) pass
		{before.Add(time.Second), nil},
	} {
		if err := r.Check("s9", "u2", tc.iat); !errors.Is(err, tc.want) && err != tc.want {
			t.Errorf("user revoked before %s, token issued %s: %v, want %v", before, tc.iat, err, tc.want)
		}
	}
	// The latest instant wins whatever order entries arrive in, and applying
	// one again changes nothing.
	r.Record(context.Background(), userRev("u2", before.Add(-time.Hour)), userRev("u2", before))
	if err := r.Check("s9", "u2", before.Add(-time.Second)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("an earlier entry lowered the user's instant: %v", err)
	}
	r.Record(context.Background(), userRev("u2", before.Add(time.Minute)))
	if err := r.Check("s9", "u2", before.Add(30*time.Second)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("a later entry did not raise the user's instant: %v", err)
	}
	// Junk is ignored, not fatal.
	r.Record(context.Background(), gatehouse.Revocation{Kind: "jti", Subject: "x", At: now, ExpiresAt: now.Add(time.Hour)},
		gatehouse.Revocation{Kind: gatehouse.RevokeSession, At: now, ExpiresAt: now.Add(time.Hour)})
	if err := r.Check("", "", now); err != nil {
		t.Fatalf("empty subject recorded: %v", err)
	}
}

func TestStartLoadsLiveLog(t *testing.T) {
	c := newClock()
	now := c.Now()
	log := &fakeLog{}
	log.add(
		sessionRev("live", now.Add(-time.Minute)),
		sessionRev("old", now.Add(-time.Hour)), // expired
		userRev("u", now.Add(-2*time.Minute)),
	)
	r := started(t, log, nil, Config{Now: c.Now, PollInterval: time.Hour})
	if err := r.Check("live", "x", now); !errors.Is(err, ErrRevoked) {
		t.Fatalf("live entry not loaded: %v", err)
	}
	if err := r.Check("s", "u", now.Add(-3*time.Minute)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("user entry not loaded: %v", err)
	}
	if s, u := r.counts(); s != 1 || u != 1 {
		t.Fatalf("holding %d sessions, %d users; want 1, 1 (the expired entry skipped)", s, u)
	}
	if err := r.Ready(); err != nil {
		t.Fatalf("Ready after a good load: %v", err)
	}
}

// TestStartLoadsOldButLiveEntries: an entry made long ago that has not
// expired (it covers tokens issued under a longer access-token lifetime
// than the one configured now) is loaded at start; it was skipped when the
// load went back only one current lifetime.
func TestStartLoadsOldButLiveEntries(t *testing.T) {
	c := newClock()
	now := c.Now()
	log := &fakeLog{}
	old := sessionRev("old-but-live", now.Add(-2*time.Hour))
	old.ExpiresAt = now.Add(time.Hour)
	log.add(old)
	r := started(t, log, nil, Config{Now: c.Now, PollInterval: time.Hour})
	if err := r.Check("old-but-live", "x", now); !errors.Is(err, ErrRevoked) {
		t.Fatalf("an entry made 2h ago and live for another hour was not loaded: Check = %v", err)
	}
}

func TestStartFailsWhenLogFails(t *testing.T) {
	log := &fakeLog{}
	log.setErr(errors.New("connection refused"))
	r := New(log, nil, Config{}, nil)
	err := r.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Start on a failing log: %v", err)
	}
	// Never loaded: fail closed, and say why.
	if err := r.Check("s", "u", time.Now()); !errors.Is(err, gatehouse.ErrUnavailable) {
		t.Fatalf("Check before a successful load: %v", err)
	}
	if err := r.Ready(); err == nil || !strings.HasPrefix(err.Error(), "database:") {
		t.Fatalf("Ready before a successful load: %v", err)
	}
	// Start may be retried once the log is back.
	log.setErr(nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); r.Wait() }()
	if err := r.Start(ctx); err != nil {
		t.Fatalf("Start after the log came back: %v", err)
	}
	if err := r.Check("s", "u", time.Now()); err != nil {
		t.Fatalf("Check after load: %v", err)
	}
}

func TestStalenessFailsClosed(t *testing.T) {
	c := newClock()
	log := &fakeLog{}
	log.add(sessionRev("gone", c.Now()))
	r := started(t, log, nil, Config{Now: c.Now, PollInterval: time.Hour, StaleAfter: 5 * time.Second})

	c.Advance(5 * time.Second)
	if err := r.Check("s", "u", c.Now()); err != nil {
		t.Fatalf("at exactly StaleAfter: %v", err)
	}
	c.Advance(time.Millisecond)
	if err := r.Check("s", "u", c.Now()); !errors.Is(err, gatehouse.ErrUnavailable) {
		t.Fatalf("stale state: %v, want ErrUnavailable", err)
	}
	// What is known revoked stays revoked, stale or not.
	if err := r.Check("gone", "u", c.Now()); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked session on stale state: %v, want ErrRevoked", err)
	}
	if err := r.Ready(); err == nil || !strings.HasPrefix(err.Error(), "database:") || !errors.Is(err, gatehouse.ErrUnavailable) {
		t.Fatalf("Ready on stale state: %v", err)
	}

	// A failing poll keeps it stale and Ready says why.
	log.setErr(errors.New("too many connections"))
	if err := r.poll(context.Background()); err == nil {
		t.Fatal("poll on a failing log succeeded")
	}
	if err := r.Ready(); err == nil || !strings.Contains(err.Error(), "too many connections") {
		t.Fatalf("Ready with the log failing: %v", err)
	}
	// The log comes back: the next poll makes the state fresh again.
	log.setErr(nil)
	if err := r.poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.Check("s", "u", c.Now()); err != nil {
		t.Fatalf("after a successful poll: %v", err)
	}
	if err := r.Ready(); err != nil {
		t.Fatalf("Ready after a successful poll: %v", err)
	}
}

func TestFailOpen(t *testing.T) {
	c := newClock()
	log := &fakeLog{}
	log.add(sessionRev("gone", c.Now()))
	r := started(t, log, nil, Config{Now: c.Now, PollInterval: time.Hour, FailOpen: true})
	c.Advance(time.Hour)
	if err := r.Check("s", "u", c.Now()); err != nil {
		t.Fatalf("FailOpen on stale state: %v", err)
	}
	if err := r.Check("gone", "u", c.Now()); !errors.Is(err, ErrRevoked) {
		t.Fatalf("FailOpen let a known-revoked session through: %v", err)
	}
	if r.Ready() == nil {
		t.Fatal("FailOpen hid staleness from Ready")
	}
}

func TestPollPicksUpLogEntries(t *testing.T) {
	log := &fakeLog{}
	r := started(t, log, nil, Config{PollInterval: 10 * time.Millisecond})
	eventually(t, time.Second, "two polls", func() bool { return log.readCount() >= 3 })
	// Stamped long before the last poll, visible only now (a slow commit
	// or an instance whose clock is far behind): the cursor is a position
	// in the log, not a time, so it is picked up all the same.
	log.add(sessionRev("late", time.Now().Add(-10*time.Minute)))
	eventually(t, time.Second, "late entry picked up", func() bool {
		return errors.Is(r.Check("late", "u", time.Now()), ErrRevoked)
	})
}

func TestExpiryPruning(t *testing.T) {
	c := newClock()
	log := &fakeLog{}
	r := started(t, log, nil, Config{Now: c.Now, PollInterval: time.Hour})
	now := c.Now()
	var revs []gatehouse.Revocation
	for i := range 1000 {
		revs = append(revs, sessionRev("s"+strconv.Itoa(i), now), userRev("u"+strconv.Itoa(i), now))
	}
	long := sessionRev("long", now)
	long.ExpiresAt = now.Add(time.Hour)
	revs = append(revs, long)
	log.add(revs...)
	r.Record(context.Background(), revs...)
	if s, u := r.counts(); s != 1001 || u != 1000 {
		t.Fatalf("holding %d, %d", s, u)
	}
	c.Advance(15 * time.Minute) // the short entries expire exactly now
	r.pruneMemory(c.Now())
	if s, u := r.counts(); s != 1 || u != 0 {
		t.Fatalf("after expiry holding %d sessions, %d users; want 1, 0", s, u)
	}
	if err := r.Check("long", "x", now); !errors.Is(err, ErrRevoked) {
		t.Fatalf("unexpired entry pruned: %v", err)
	}
	// Re-reading the log (overlap) does not bring expired entries back.
	if err := r.poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s, u := r.counts(); s != 1 || u != 0 {
		t.Fatalf("after a poll holding %d sessions, %d users", s, u)
	}
}

func TestPruneLoop(t *testing.T) {
	c := newClock()
	log := &fakeLog{}
	log.add(sessionRev("s", c.Now()))
	r := New(log, nil, Config{Now: c.Now, PollInterval: time.Hour, StaleAfter: time.Hour}, nil)
	r.pruneInterval = 5 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); r.Wait() }()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if s, _ := r.counts(); s != 1 {
		t.Fatalf("holding %d sessions, want 1", s)
	}
	c.Advance(16 * time.Minute)
	eventually(t, time.Second, "log and memory pruned", func() bool {
		log.mu.Lock()
		n := len(log.entries)
		log.mu.Unlock()
		s, _ := r.counts()
		return n == 0 && s == 0
	})
}

// memBus is an in-process Bus, for testing the Revoker's use of a bus
// without Redis.
type memBus struct {
	mu      sync.Mutex
	subs    map[int]func(gatehouse.Revocation)
	next    int
	failPub atomic.Bool
	pubs    atomic.Int64
	// failFirst makes the first Subscribe return at once with an error.
	failFirst atomic.Bool
}

func (b *memBus) Publish(_ context.Context, r gatehouse.Revocation) error {
	b.pubs.Add(1)
	if b.failPub.Load() {
		return errors.New("bus down")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range b.subs {
		f(r)
	}
	return nil
}

func (b *memBus) Subscribe(ctx context.Context, deliver func(gatehouse.Revocation), onSubscribed func()) error {
	if b.failFirst.CompareAndSwap(true, false) {
		return errors.New("first subscribe fails")
	}
	b.mu.Lock()
	if b.subs == nil {
		b.subs = map[int]func(gatehouse.Revocation){}
	}
	id := b.next
	b.next++
	b.subs[id] = deliver
	b.mu.Unlock()
	onSubscribed()
	<-ctx.Done()
	b.mu.Lock()
	delete(b.subs, id)
	b.mu.Unlock()
	return ctx.Err()
}

func (b *memBus) Ping(context.Context) error { return nil }

func TestRecordPropagatesThroughBus(t *testing.T) {
	log, bus := &fakeLog{}, &memBus{}
	bus.failFirst.Store(true) // the Revoker must retry a Subscribe that gives up
	a := started(t, log, bus, Config{PollInterval: time.Hour})
	b := started(t, log, bus, Config{PollInterval: time.Hour})
	eventually(t, 2*time.Second, "both subscribed", func() bool { return a.Ready() == nil && b.Ready() == nil })
	a.Record(context.Background(), sessionRev("s1", time.Now()))
	if err := b.Check("s1", "u", time.Now()); !errors.Is(err, ErrRevoked) {
		t.Fatalf("B did not learn of A's revocation: %v", err)
	}
}

func TestRecordSurvivesBusFailure(t *testing.T) {
	log, bus := &fakeLog{}, &memBus{}
	r := New(log, bus, Config{PollInterval: time.Hour}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); r.Wait() }()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	bus.failPub.Store(true)
	r.Record(ctx, sessionRev("a", time.Now()), sessionRev("b", time.Now()), sessionRev("c", time.Now()))
	for _, sid := range []string{"a", "b", "c"} {
		if err := r.Check(sid, "u", time.Now()); !errors.Is(err, ErrRevoked) {
			t.Fatalf("session %s not applied locally when the bus failed: %v", sid, err)
		}
	}
	if n := bus.pubs.Load(); n != 1 {
		t.Fatalf("%d publishes attempted on a failing bus, want 1 (stop at the first failure)", n)
	}
}

func TestSubscriptionTriggersResync(t *testing.T) {
	log, bus := &fakeLog{}, &memBus{}
	started(t, log, bus, Config{PollInterval: time.Hour})
	// Start loaded once and the subscription asked for one more read.
	eventually(t, time.Second, "resync after subscribing", func() bool { return log.readCount() >= 2 })
}

func TestWaitReturnsAfterCancel(t *testing.T) {
	r := New(&fakeLog{}, &memBus{}, Config{PollInterval: time.Millisecond}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err == nil {
		t.Fatal("second Start accepted")
	}
	cancel()
	done := make(chan struct{})
	go func() { r.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Wait did not return after cancel")
	}
}

func TestConcurrentCheckAndRecord(t *testing.T) {
	r := started(t, &fakeLog{}, nil, Config{PollInterval: 5 * time.Millisecond})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 500 {
				sid := fmt.Sprintf("w%d-s%d", w, i)
				r.Record(context.Background(), sessionRev(sid, time.Now()))
				if err := r.Check(sid, "u", time.Now()); !errors.Is(err, ErrRevoked) {
					t.Errorf("%s: %v", sid, err)
					return
				}
			}
		})
		wg.Go(func() {
			for i := range 2000 {
				_ = r.Check("other"+strconv.Itoa(i), "u", time.Now())
			}
		})
	}
	wg.Wait()
}

func BenchmarkCheck(b *testing.B) {
	log := &fakeLog{}
	now := time.Now()
	var revs []gatehouse.Revocation
	for i := range 100_000 {
		revs = append(revs, sessionRev("s"+strconv.Itoa(i), now))
		if i%10 == 0 {
			revs = append(revs, userRev("u"+strconv.Itoa(i), now.Add(-time.Hour)))
		}
	}
	log.add(revs...)
	r := New(log, nil, Config{PollInterval: time.Hour}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); r.Wait() }()
	if err := r.Start(ctx); err != nil {
		b.Fatal(err)
	}
	sids := make([]string, 1024)
	uids := make([]string, 1024)
	for i := range sids {
		sids[i] = "live-session-" + strconv.Itoa(i)
		uids[i] = "u" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if err := r.Check(sids[i%len(sids)], uids[i%len(uids)], now); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
