// Package revoke holds the revocation state every authenticated request is
// checked against: revoked sessions and per-user "revoked before" instants.
//
// The store's revocation log is the source of truth. Each instance loads the
// live part at start, learns new entries from a Bus (Redis pub/sub) within
// milliseconds, and reads the log past its cursor (the store-assigned Seq of
// the last entry seen) on a short poll and after every bus (re)subscription,
// so an entry missed on the bus (Redis down, a message lost in a reconnect)
// arrives anyway and nothing revoked comes back after a restart of the
// server or of Redis. The cursor involves no clock: the store makes entries
// visible in Seq order. Check does no I/O: it reads in-memory sets behind
// sharded read-write locks.
//
// The entries the poll reads are also kept, in Seq order, in a bounded tail
// that the revocation feed streams from (Tail, Listen).
//
// When the log cannot be read for longer than Config.StaleAfter the instance
// can no longer vouch for its state, and Check fails closed with
// gatehouse.ErrUnavailable (unless Config.FailOpen).
package revoke

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse"
)

// Log is the part of gatehouse.Store that revocation reads.
type Log interface {
	RevocationsAfter(ctx context.Context, after int64, now time.Time, limit int) ([]gatehouse.Revocation, error)
	PruneRevocations(ctx context.Context, now time.Time) error
}

// Bus carries revocations between instances as they happen. It is a fast
// path only: an entry lost on the bus still arrives through the log.
type Bus interface {
	// Publish sends r to every subscribed instance.
	Publish(ctx context.Context, r gatehouse.Revocation) error
	// Subscribe delivers entries until ctx ends; onSubscribed is called after
	// every (re)subscription so the caller resyncs from the log.
	Subscribe(ctx context.Context, deliver func(gatehouse.Revocation), onSubscribed func()) error
	// Ping checks that the bus answers.
	Ping(ctx context.Context) error
}

// subscriptionReporter is implemented by buses that know whether their
// subscription is currently live (RedisBus does). For other buses the
// Revoker assumes it is live from onSubscribed until Subscribe returns.
type subscriptionReporter interface {
	Subscribed() bool
}

// Readiness failures, wrapped (with gatehouse.ErrUnavailable) by Ready.
var (
	ErrLogStale = errors.New("revocation log not read recently")
	ErrBusDown  = errors.New("revocation bus not subscribed")
)

// ErrRevoked means the token's session, or every token of its user issued
// before some instant, was revoked.
var ErrRevoked = errors.New("token revoked")

// Config tunes a Revoker. Zero values take the defaults.
type Config struct {
	// PollInterval is how often the log is re-read. Default 1s.
	PollInterval time.Duration
	// StaleAfter: when the log has not been read successfully for longer,
	// Check answers gatehouse.ErrUnavailable and Ready fails. Default 5s.
	StaleAfter time.Duration
	// FailOpen lets Check pass tokens on stale state instead of failing.
	FailOpen bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Defaults and fixed intervals.
const (
	defaultPollInterval = time.Second
	defaultStaleAfter   = 5 * time.Second
	// PageSize is how many entries one read of the log asks for; a read
	// that fills a page is followed by another at once.
	PageSize   = 1000
	pruneEvery = time.Minute
	// tailSize bounds the entries kept for the feed; a listener further
	// behind reads the store instead.
	tailSize    = 4096
	pingTimeout = time.Second
	// publishTimeout bounds the bus publishes of one Record call.
	publishTimeout = time.Second
	// Bounds for retrying a Subscribe that returned before ctx ended.
	minResubscribeDelay = 50 * time.Millisecond
	maxResubscribeDelay = 5 * time.Second
	shardCount          = 64
)

// Revoker is one instance's revocation state. Its methods are safe for
// concurrent use.
type Revoker struct {
	log    Log
	bus    Bus
	cfg    Config
	logger *slog.Logger
	seed   maphash.Seed

	sessions [shardCount]sessionShard
	users    [shardCount]userShard
	// apiKeys holds revoked API key ids (same shape as sessions: id →
	// when the entry stops mattering).
	apiKeys [shardCount]sessionShard
	// tokens holds single access tokens revoked by jti.
	tokens [shardCount]sessionShard

	// lastPoll is the Unix-nanosecond time (this instance's clock) at which
	// the last successful read of the log started (0: never): it says how
	// fresh the state is, not where to read from.
	lastPoll atomic.Int64
	// cursor is the Seq of the last log entry read: the next poll reads
	// entries after it.
	cursor atomic.Int64
	// pollMu serialises polls so the cursor and lastPoll only move forward.
	pollMu sync.Mutex
	// tail holds the entries read since start (bounded), for the feed.
	tail tail
	// listeners counts feed listeners; while there are any, a local Record
	// or a bus delivery triggers an immediate read of the log, so the feed
	// gets the entry (with its Seq) at once rather than at the next tick.
	listeners atomic.Int64
	// pollFailing and lastPollErr drive once-per-transition logging and
	// Ready's message.
	pollFailing atomic.Bool
	lastPollErr atomic.Pointer[error]
	// subscribed is the fallback subscription state for buses that do not
	// report their own.
	subscribed atomic.Bool
	// resync asks the poll loop for an immediate read (after a subscription).
	resync chan struct{}

	// pruneInterval is pruneEvery; a field so tests can shorten it.
	pruneInterval time.Duration

	started atomic.Bool
	wg      sync.WaitGroup
}

type sessionShard struct {
	mu      sync.RWMutex
	expires map[string]time.Time // session id → when the entry stops mattering
}

type userShard struct {
	mu     sync.RWMutex
	before map[string]userEntry
}

// userEntry keeps the latest instant and the latest expiry of a user's
// entries: tokens issued before the latest instant are rejected, and that
// covers every earlier entry too.
type userEntry struct {
	at      time.Time
	expires time.Time
}

// New returns a Revoker over log; bus nil keeps revocations in process (a
// single instance, or instances that learn only through the poll). logger
// nil discards.
func New(log Log, bus Bus, cfg Config, logger *slog.Logger) *Revoker {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = defaultPollInterval
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = defaultStaleAfter
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Revoker{
		log:    log,
		bus:    bus,
		cfg:    cfg,
		logger: logger,
		seed:   maphash.MakeSeed(),
		resync: make(chan struct{}, 1),

		pruneInterval: pruneEvery,
	}
	for i := range shardCount {
		r.sessions[i].expires = make(map[string]time.Time)
		r.users[i].before = make(map[string]userEntry)
		r.apiKeys[i].expires = make(map[string]time.Time)
		r.tokens[i].expires = make(map[string]time.Time)
	}
	return r
}

// Start loads the live part of the log, failing when it cannot (an instance
// that cannot vouch for revocations must not serve). It then polls, prunes
// and subscribes in the background until ctx ends; Wait waits for that.
func (r *Revoker) Start(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("revoke: Start called twice")
	}
	// Every entry that has not expired, however long ago it was made: an
	// entry's ExpiresAt, not the access-token lifetime configured now, says
	// how long it matters (a lifetime lowered across a restart must not
	// drop entries that cover tokens issued under the longer one).
	n, err := r.readLog(ctx)
	if err != nil {
		r.started.Store(false)
		return fmt.Errorf("revoke: initial load of the revocation log: %w", err)
	}
	r.logger.Debug("revocations loaded", "entries", n, "cursor", r.cursor.Load())

	r.wg.Add(2)
	go r.pollLoop(ctx)
	go r.pruneLoop(ctx)
	if r.bus != nil {
		r.wg.Add(1)
		go r.subscribeLoop(ctx)
	}
	return nil
}

// Wait blocks until the background goroutines have returned after the
// context given to Start ended.
func (r *Revoker) Wait() { r.wg.Wait() }

// Record applies revs locally at once, then publishes each on the bus. The
// caller has already written them to the store, so a bus failure is logged,
// not returned: other instances get the entries from their next poll.
func (r *Revoker) Record(ctx context.Context, revs ...gatehouse.Revocation) {
	r.apply(r.cfg.Now(), revs)
	if r.listeners.Load() > 0 {
		r.requestResync() // the feed wants the entries with their Seq now
	}
	if r.bus == nil {
		return
	}
	// A bus that knows its subscription is down (Redis unreachable, or
	// reconnecting) would only make the caller wait out publishTimeout for a
	// publish that fails: the e2e fault test measured every logout taking
	// the full 1 s while Redis was down. Skip it; other instances read the
	// entry from the log on their next poll, as they would after a failure.
	if rep, ok := r.bus.(subscriptionReporter); ok && !rep.Subscribed() {
		r.logger.Debug("revocation not published (bus not subscribed); other instances will read it from the log",
			"unpublished", len(revs))
		return
	}
	// Bounded: a caller (a logout) must not hang on a dead Redis, and past
	// this the poll delivers about as soon anyway.
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	for i, rev := range revs {
		if err := r.bus.Publish(ctx, rev); err != nil {
			// Stop at the first failure: with Redis down every publish would
			// wait for its own timeout, holding up the caller for nothing.
			r.logger.Warn("revocation not published; other instances will read it from the log",
				"error", err, "unpublished", len(revs)-i)
			return
		}
	}
}

// Check reports whether an access token of session sessionID and user
// userID, issued at issuedAt, may be used: nil, ErrRevoked, or (when the
// state is stale and not FailOpen) an error wrapping gatehouse.ErrUnavailable.
// Known revocations are reported even on stale state: exactness first.
func (r *Revoker) Check(sessionID, userID string, issuedAt time.Time) error {
	if r.inSet(&r.sessions, sessionID) {
		return ErrRevoked
	}
	u := &r.users[maphash.String(r.seed, userID)%shardCount]
	u.mu.RLock()
	e, ok := u.before[userID]
	u.mu.RUnlock()
	if ok && issuedAt.Before(e.at) {
		return ErrRevoked
	}
	if r.cfg.FailOpen {
		return nil
	}
	if age, stale := r.staleness(); stale {
		return fmt.Errorf("revocation state not refreshed for %s: %w", age.Round(time.Millisecond), gatehouse.ErrUnavailable)
	}
	return nil
}

// CheckAPIKey reports whether API key id may be used as far as the
// revocation state knows: ErrRevoked once a revocation of it was recorded
// or read from the log, and, like Check, gatehouse.ErrUnavailable on stale
// state (unless FailOpen). The caller checks the key itself (MAC, expiry,
// owner); this catches a revocation made on another instance while this
// one serves the key from its cache.
func (r *Revoker) CheckAPIKey(id string) error {
	if r.inSet(&r.apiKeys, id) {
		return ErrRevoked
	}
	if r.cfg.FailOpen {
		return nil
	}
	if age, stale := r.staleness(); stale {
		return fmt.Errorf("revocation state not refreshed for %s: %w", age.Round(time.Millisecond), gatehouse.ErrUnavailable)
	}
	return nil
}

// CheckToken reports ErrRevoked when the access token with that jti was
// revoked on its own (RFC 7009 revocation of a client_credentials token,
// which belongs to no session). It adds nothing to Check's staleness
// answer, so callers call both.
func (r *Revoker) CheckToken(jti string) error {
	if r.inSet(&r.tokens, jti) {
		return ErrRevoked
	}
	return nil
}

// inSet reports whether id is in one of the id sets (sessions, API keys,
// tokens).
func (r *Revoker) inSet(set *[shardCount]sessionShard, id string) bool {
	sh := &set[maphash.String(r.seed, id)%shardCount]
	sh.mu.RLock()
	_, ok := sh.expires[id]
	sh.mu.RUnlock()
	return ok
}

// addToSet records id in an id set until exp, keeping a later expiry it
// already has.
func (r *Revoker) addToSet(set *[shardCount]sessionShard, id string, exp time.Time) {
	sh := &set[maphash.String(r.seed, id)%shardCount]
	sh.mu.Lock()
	if old, ok := sh.expires[id]; !ok || exp.After(old) {
		sh.expires[id] = exp
	}
	sh.mu.Unlock()
}

// Ready reports whether this instance can vouch for its revocation state:
// the log was read within StaleAfter and, with a bus, it is subscribed and
// answers a ping. The error names the failing dependency first ("database:"
// or "redis:") and wraps gatehouse.ErrUnavailable.
func (r *Revoker) Ready() error {
	if age, stale := r.staleness(); stale {
		cause := "never read"
		if r.lastPoll.Load() != 0 {
			cause = "not read for " + age.Round(time.Millisecond).String()
		}
		if p := r.lastPollErr.Load(); p != nil {
			cause += ": " + (*p).Error()
		}
		return fmt.Errorf("database: revocation log %s: %w: %w", cause, ErrLogStale, gatehouse.ErrUnavailable)
	}
	if r.bus == nil {
		return nil
	}
	if !r.busSubscribed() {
		return fmt.Errorf("redis: %w: %w", ErrBusDown, gatehouse.ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	if err := r.bus.Ping(ctx); err != nil {
		return fmt.Errorf("redis: %w: %w: %w", ErrBusDown, err, gatehouse.ErrUnavailable)
	}
	return nil
}

// staleness returns how old the state is and whether that is past StaleAfter.
func (r *Revoker) staleness() (time.Duration, bool) {
	last := r.lastPoll.Load()
	if last == 0 {
		return 0, true // never loaded: nothing to vouch for
	}
	age := time.Duration(r.cfg.Now().UnixNano() - last)
	return age, age > r.cfg.StaleAfter
}

func (r *Revoker) busSubscribed() bool {
	if rep, ok := r.bus.(subscriptionReporter); ok {
		return rep.Subscribed()
	}
	return r.subscribed.Load()
}

// apply merges entries into the sets. It is idempotent and order-free (a
// session entry keeps the latest expiry, a user entry the latest instant),
// so the poll overlap and bus duplicates are harmless. Entries already
// expired at now are skipped: no token they could reject is still valid.
func (r *Revoker) apply(now time.Time, revs []gatehouse.Revocation) {
	for _, rev := range revs {
		if rev.Subject == "" || !rev.ExpiresAt.After(now) {
			continue
		}
		switch rev.Kind {
		case gatehouse.RevokeSession:
			r.addToSet(&r.sessions, rev.Subject, rev.ExpiresAt)
		case gatehouse.RevokeAPIKey:
			r.addToSet(&r.apiKeys, rev.Subject, rev.ExpiresAt)
		case gatehouse.RevokeToken:
			r.addToSet(&r.tokens, rev.Subject, rev.ExpiresAt)
		case gatehouse.RevokeUserBefore:
			u := &r.users[maphash.String(r.seed, rev.Subject)%shardCount]
			u.mu.Lock()
			e := u.before[rev.Subject]
			if rev.At.After(e.at) {
				e.at = rev.At
			}
			if rev.ExpiresAt.After(e.expires) {
				e.expires = rev.ExpiresAt
			}
			u.before[rev.Subject] = e
			u.mu.Unlock()
		default:
			// A kind this version does not know: ignoring it could let a
			// token through, so say so loudly.
			r.logger.Error("unknown revocation kind ignored", "kind", string(rev.Kind))
		}
	}
}

// pruneMemory drops entries that expired at or before now.
func (r *Revoker) pruneMemory(now time.Time) {
	live := func(exp time.Time) bool { return exp.After(now) }
	for i := range shardCount {
		for _, sh := range []*sessionShard{&r.sessions[i], &r.apiKeys[i], &r.tokens[i]} {
			sh.mu.Lock()
			sh.expires = pruned(sh.expires, live)
			sh.mu.Unlock()
		}
		u := &r.users[i]
		u.mu.Lock()
		u.before = pruned(u.before, func(e userEntry) bool { return e.expires.After(now) })
		u.mu.Unlock()
	}
}

// pruned deletes the entries that keep rejects. When most entries went it
// copies the rest into a new map, because a Go map never gives back the
// memory of deleted entries and a burst of revocations would stay resident.
func pruned[V any](m map[string]V, keep func(V) bool) map[string]V {
	deleted := 0
	for k, v := range m {
		if !keep(v) {
			delete(m, k)
			deleted++
		}
	}
	if deleted <= len(m) {
		return m
	}
	// Not maps.Clone: it may copy the table at its old size.
	fresh := make(map[string]V, len(m))
	for k, v := range m {
		fresh[k] = v
	}
	return fresh
}

// readLog reads every live entry past the cursor, page by page, applies
// them, adds them to the tail and moves the cursor; on success it records
// the time the read started as lastPoll. It returns how many entries it
// read. The caller holds pollMu or is Start.
func (r *Revoker) readLog(ctx context.Context) (int, error) {
	now := r.cfg.Now()
	total := 0
	for {
		after := r.cursor.Load()
		revs, err := r.log.RevocationsAfter(ctx, after, now, PageSize)
		if err != nil {
			return total, fmt.Errorf("read after %d: %w", after, err)
		}
		r.apply(now, revs)
		if len(revs) > 0 {
			r.tail.add(revs)
			r.cursor.Store(revs[len(revs)-1].Seq)
			total += len(revs)
		}
		if len(revs) < PageSize {
			break
		}
	}
	if now.UnixNano() > r.lastPoll.Load() {
		r.lastPoll.Store(now.UnixNano())
	}
	if total > 0 {
		r.tail.notify()
	}
	return total, nil
}

// poll reads the log past the cursor.
func (r *Revoker) poll(ctx context.Context) error {
	r.pollMu.Lock()
	defer r.pollMu.Unlock()
	// Bound the read so a hung database makes the state stale (and visible
	// as such) rather than blocking the loop forever.
	ctx, cancel := context.WithTimeout(ctx, max(r.cfg.StaleAfter, time.Second))
	defer cancel()
	n, err := r.readLog(ctx)
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		return err // shutting down: not a database failure
	}
	if err != nil {
		r.lastPollErr.Store(&err)
		if !r.pollFailing.Swap(true) {
			r.logger.Warn("revocation log poll failing", "error", err)
		}
		return err
	}
	r.lastPollErr.Store(nil)
	if r.pollFailing.Swap(false) {
		r.logger.Info("revocation log poll recovered", "entries", n)
	}
	return nil
}

func (r *Revoker) pollLoop(ctx context.Context) {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.resync:
		}
		_ = r.poll(ctx) // failures are logged by poll and show as staleness
	}
}

func (r *Revoker) pruneLoop(ctx context.Context) {
	defer r.wg.Done()
	t := time.NewTicker(r.pruneInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := r.cfg.Now()
		r.pruneMemory(now)
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		// Every instance prunes; deleting expired rows is idempotent.
		if err := r.log.PruneRevocations(pctx, now); err != nil && ctx.Err() == nil {
			r.logger.Warn("pruning the revocation log failed", "error", err)
		}
		cancel()
	}
}

// requestResync asks the poll loop for an immediate read; one pending
// request is enough, since a read covers everything since the last success.
func (r *Revoker) requestResync() {
	select {
	case r.resync <- struct{}{}:
	default:
	}
}

// subscribeLoop keeps a subscription up until ctx ends. A Bus normally
// retries by itself inside Subscribe; this loop also covers one that gives up.
func (r *Revoker) subscribeLoop(ctx context.Context) {
	defer r.wg.Done()
	delay := minResubscribeDelay
	for {
		err := r.bus.Subscribe(ctx,
			func(rev gatehouse.Revocation) {
				r.apply(r.cfg.Now(), []gatehouse.Revocation{rev})
				if r.listeners.Load() > 0 {
					r.requestResync() // the feed wants it with its Seq
				}
			},
			func() {
				r.subscribed.Store(true)
				// Entries published while we were not subscribed are in
				// the log: read it now rather than at the next tick.
				r.requestResync()
			})
		r.subscribed.Store(false)
		if ctx.Err() != nil {
			return
		}
		r.logger.Warn("revocation bus subscription ended; retrying", "error", err, "in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, maxResubscribeDelay)
	}
}

// counts reports the number of revoked sessions and users held (for tests
// and metrics).
func (r *Revoker) counts() (sessions, users int) {
	for i := range shardCount {
		r.sessions[i].mu.RLock()
		sessions += len(r.sessions[i].expires)
		r.sessions[i].mu.RUnlock()
		r.users[i].mu.RLock()
		users += len(r.users[i].before)
		r.users[i].mu.RUnlock()
	}
	return sessions, users
}
