package revoke

import (
	"slices"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse"
)

// tail keeps the log entries the Revoker has read, in Seq order, so that
// feed listeners catch up from memory instead of each querying the store.
type tail struct {
	mu      sync.Mutex
	entries []gatehouse.Revocation // ascending Seq, at most tailSize
	// floor: every entry with Seq above floor that was live when read is
	// in entries. It starts at 0 (the start-up load reads the whole live
	// log) and rises as old entries are dropped.
	floor int64
	// changed is closed (and replaced) when entries are added.
	changed chan struct{}
}

func (t *tail) add(revs []gatehouse.Revocation) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.entries = append(t.entries, revs...)
	if over := len(t.entries) - tailSize; over > 0 {
		t.floor = t.entries[over-1].Seq
		t.entries = slices.Clone(t.entries[over:])
	}
}

func (t *tail) notify() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.changed != nil {
		close(t.changed)
		t.changed = nil
	}
}

// wait returns a channel closed at the next notify.
func (t *tail) wait() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.changed == nil {
		t.changed = make(chan struct{})
	}
	return t.changed
}

func (t *tail) after(after int64, now time.Time, limit int) ([]gatehouse.Revocation, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if after < t.floor {
		return nil, false
	}
	i, _ := slices.BinarySearchFunc(t.entries, after+1, func(r gatehouse.Revocation, seq int64) int {
		switch {
		case r.Seq < seq:
			return -1
		case r.Seq > seq:
			return 1
		}
		return 0
	})
	var out []gatehouse.Revocation
	for _, r := range t.entries[i:] {
		if len(out) == limit {
			break
		}
		if r.ExpiresAt.After(now) {
			out = append(out, r)
		}
	}
	return out, true
}

// Tail returns up to limit entries with Seq above after that are live at
// now, in Seq order, from memory. ok is false when after is older than what
// memory holds: the caller reads the store instead. An empty answer with ok
// means the caller is up to date with this instance (Cursor).
func (r *Revoker) Tail(after int64, now time.Time, limit int) (revs []gatehouse.Revocation, ok bool) {
	return r.tail.after(after, now, limit)
}

// Changed returns a channel closed when the next entries are read. Take it
// before calling Tail, then wait on it when Tail had nothing new: nothing
// read in between is missed.
func (r *Revoker) Changed() <-chan struct{} { return r.tail.wait() }

// Cursor returns the Seq of the newest entry this instance has read.
func (r *Revoker) Cursor() int64 { return r.cursor.Load() }

// Listen registers a feed listener until stop is called. While any is
// registered, local and bus revocations are read back from the log at once
// (with their Seq) instead of at the next poll.
func (r *Revoker) Listen() (stop func()) {
	r.listeners.Add(1)
	var once sync.Once
	return func() { once.Do(func() { r.listeners.Add(-1) }) }
}
