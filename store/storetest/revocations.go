package storetest

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
)

// liveLog reads every entry of the log live at now, page by page through
// RevocationsAfter, and checks the order the contract promises: Seq set,
// strictly ascending.
func liveLog(t *testing.T, what string, s gatehouse.Store, now time.Time) []gatehouse.Revocation {
	t.Helper()
	var all []gatehouse.Revocation
	var cursor int64
	for {
		page, err := s.RevocationsAfter(t.Context(), cursor, now, 7)
		if err != nil {
			t.Fatalf("%s: RevocationsAfter(%d): %v", what, cursor, err)
		}
		for _, r := range page {
			if r.Seq <= cursor {
				t.Fatalf("%s: RevocationsAfter(%d) returned Seq %d, not after the cursor or not ascending", what, cursor, r.Seq)
			}
			cursor = r.Seq
		}
		all = append(all, page...)
		if len(page) < 7 {
			return all
		}
	}
}

// checkRevocations compares the entries of the log live at now with At at
// or after since to want, as sets (Seq aside).
func checkRevocations(t *testing.T, what string, s gatehouse.Store, since, now time.Time, want []gatehouse.Revocation) {
	t.Helper()
	var got []gatehouse.Revocation
	for _, r := range liveLog(t, what, s, now) {
		if !r.At.Before(since) {
			r.Seq = 0
			got = append(got, r)
		}
	}
	sortRevocations(got)
	want = slices.Clone(want)
	sortRevocations(want)
	if len(got) != len(want) {
		t.Errorf("%s: the log holds %d entries, want %d\n got: %s\nwant: %s", what, len(got), len(want), fmtRevocations(got), fmtRevocations(want))
		return
	}
	for i := range got {
		var d diffs
		d.str("Kind", string(got[i].Kind), string(want[i].Kind))
		d.str("Subject", got[i].Subject, want[i].Subject)
		d.time("At", got[i].At, want[i].At)
		d.time("ExpiresAt", got[i].ExpiresAt, want[i].ExpiresAt)
		for _, s := range d {
			t.Errorf("%s: revocation %d: %s", what, i, s)
		}
	}
}

func sortRevocations(rs []gatehouse.Revocation) {
	slices.SortFunc(rs, func(a, b gatehouse.Revocation) int {
		return cmp.Or(
			strings.Compare(string(a.Kind), string(b.Kind)),
			strings.Compare(a.Subject, b.Subject),
			a.At.Compare(b.At),
			a.ExpiresAt.Compare(b.ExpiresAt),
		)
	})
}

func fmtRevocations(rs []gatehouse.Revocation) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "{#%d %s %s at %v exp %v} ", r.Seq, r.Kind, r.Subject, r.At, r.ExpiresAt)
	}
	return b.String()
}

func subjects(rs []gatehouse.Revocation) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Subject
	}
	return out
}

func testRevocationsAfter(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	add := func(kind gatehouse.RevocationKind, at, expires time.Time) gatehouse.Revocation {
		r := gatehouse.Revocation{Kind: kind, Subject: newID(), At: at, ExpiresAt: expires, Seq: 999999}
		if err := s.AddRevocation(t.Context(), r); err != nil {
			t.Fatalf("AddRevocation: %v", err)
		}
		r.Seq = 0
		return r
	}
	if got, err := s.RevocationsAfter(t.Context(), 0, now, 100); err != nil || len(got) != 0 {
		t.Fatalf("RevocationsAfter(empty log) = %s, %v; want nothing", fmtRevocations(got), err)
	}

	// Appended one after another, entries come back in that order whatever
	// their At: an instance with a slow clock stamps an At in the past, and
	// a reader past an earlier cursor must still get it.
	a := add(gatehouse.RevokeSession, now, now.Add(time.Hour))
	b := add(gatehouse.RevokeUserBefore, now.Add(-time.Hour), now.Add(time.Hour))
	add(gatehouse.RevokeSession, now, now)                                             // ExpiresAt == now: never returned
	c := add(gatehouse.RevokeToken, now.Add(-24*time.Hour), now.Add(time.Microsecond)) // just live
	add(gatehouse.RevokeSession, now, now.Add(-time.Second))                           // expired
	d := add(gatehouse.RevocationKind("api_key"), now, now.Add(2*time.Hour))

	all := liveLog(t, "after six appends", s, now)
	if got, want := subjects(all), subjects([]gatehouse.Revocation{a, b, c, d}); !slices.Equal(got, want) {
		t.Fatalf("RevocationsAfter(0) subjects = %v, want %v in append order", got, want)
	}
	checkRevocations(t, "RevocationsAfter(0)", s, time.Time{}, now, []gatehouse.Revocation{a, b, c, d})

	rest, err := s.RevocationsAfter(t.Context(), all[1].Seq, now, 100)
	if err != nil {
		t.Fatalf("RevocationsAfter(b's seq): %v", err)
	}
	if got, want := subjects(rest), []string{c.Subject, d.Subject}; !slices.Equal(got, want) {
		t.Errorf("RevocationsAfter(b's seq) = %v, want %v", got, want)
	}
	page, err := s.RevocationsAfter(t.Context(), 0, now, 2)
	if err != nil || !slices.Equal(subjects(page), []string{a.Subject, b.Subject}) {
		t.Errorf("RevocationsAfter(0, limit 2) = %s, %v; want a and b", fmtRevocations(page), err)
	}
	if got, err := s.RevocationsAfter(t.Context(), all[3].Seq, now, 100); err != nil || len(got) != 0 {
		t.Errorf("RevocationsAfter(last seq) = %s, %v; want nothing", fmtRevocations(got), err)
	}
	// A later now drops what has expired by then.
	if got := subjects(liveLog(t, "a microsecond later", s, now.Add(time.Microsecond))); !slices.Equal(got, []string{a.Subject, b.Subject, d.Subject}) {
		t.Errorf("entries live a microsecond later = %v, want a, b, d", got)
	}

	// Entries written by the session revocations get their Seq too, after
	// everything before them.
	u := mustCreateUser(t, s, "seq@example.com")
	s1 := mustCreateSession(t, s, newSession(u.ID, now))
	s2 := mustCreateSession(t, s, newSession(u.ID, now))
	s3 := mustCreateSession(t, s, newSession(u.ID, now))
	if err := s.RevokeSession(t.Context(), s1.ID, "logout", now, now.Add(time.Hour)); err != nil {
		t.Fatalf("RevokeSession: %v", err)
	}
	if _, err := s.RevokeUserSessions(t.Context(), u.ID, "", "logout_all", now, now.Add(time.Hour)); err != nil {
		t.Fatalf("RevokeUserSessions: %v", err)
	}
	later, err := s.RevocationsAfter(t.Context(), all[3].Seq, now, 100)
	if err != nil {
		t.Fatalf("RevocationsAfter(d's seq): %v", err)
	}
	got := subjects(later)
	if len(got) != 3 || got[0] != s1.ID || !slices.Contains(got, s2.ID) || !slices.Contains(got, s3.ID) {
		t.Errorf("entries after d = %v, want %s first, then %s and %s", got, s1.ID, s2.ID, s3.ID)
	}
}

// testRevocationSeqNotReused: pruning the newest entry must not let the next
// one take its number, which a reader's cursor may already have passed.
func testRevocationSeqNotReused(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	keep := gatehouse.Revocation{Kind: gatehouse.RevokeSession, Subject: newID(), At: now, ExpiresAt: now.Add(time.Hour)}
	short := gatehouse.Revocation{Kind: gatehouse.RevokeSession, Subject: newID(), At: now, ExpiresAt: now.Add(time.Minute)}
	for _, r := range []gatehouse.Revocation{keep, short} {
		if err := s.AddRevocation(t.Context(), r); err != nil {
			t.Fatalf("AddRevocation: %v", err)
		}
	}
	before := liveLog(t, "before pruning", s, now)
	if len(before) != 2 {
		t.Fatalf("log holds %d entries, want 2", len(before))
	}
	cursor := before[1].Seq // a reader that has seen short
	if err := s.PruneRevocations(t.Context(), now.Add(2*time.Minute)); err != nil {
		t.Fatalf("PruneRevocations: %v", err)
	}
	next := gatehouse.Revocation{Kind: gatehouse.RevokeUserBefore, Subject: newID(), At: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.AddRevocation(t.Context(), next); err != nil {
		t.Fatalf("AddRevocation: %v", err)
	}
	got, err := s.RevocationsAfter(t.Context(), cursor, now, 100)
	if err != nil {
		t.Fatalf("RevocationsAfter: %v", err)
	}
	if !slices.Equal(subjects(got), []string{next.Subject}) {
		t.Errorf("after pruning the newest entry, the next one is not past the old cursor %d: got %s", cursor, fmtRevocations(got))
	}
}

// testRevocationSeqConcurrent appends from many goroutines at once, some in
// multi-row transactions, while a reader follows the log by cursor alone,
// as instances and the feed do. Had a number become visible before a
// smaller one (a sequence taken at insert, transactions committing out of
// order), the reader would move its cursor past the smaller one and never
// see it: every appended entry must reach the reader, exactly once.
func testRevocationSeqConcurrent(t *testing.T, s gatehouse.Store) {
	const (
		writers   = 8
		perWriter = 30
	)
	now := baseTime()
	// A user per writer, for the multi-row writes.
	users := make([]gatehouse.User, writers)
	for w := range writers {
		users[w] = mustCreateUser(t, s, fmt.Sprintf("seq-race-%d@example.com", w))
	}

	var (
		mu      sync.Mutex
		written = map[string]bool{}
		stop    = make(chan struct{})
	)
	readerErr := make(chan error, 1)
	seen := map[string]int{}
	var cursor int64
	read := func() error {
		page, err := s.RevocationsAfter(t.Context(), cursor, now, 5)
		if err != nil {
			return fmt.Errorf("RevocationsAfter(%d): %w", cursor, err)
		}
		for _, r := range page {
			if r.Seq <= cursor {
				return fmt.Errorf("RevocationsAfter(%d) returned Seq %d", cursor, r.Seq)
			}
			cursor = r.Seq
			seen[r.Subject]++
		}
		return nil
	}
	go func() {
		for {
			select {
			case <-stop:
				readerErr <- nil
				return
			default:
			}
			if err := read(); err != nil {
				readerErr <- err
				return
			}
		}
	}()

	errs := concurrently(writers, func(w int) error {
		for i := range perWriter {
			if i%10 == 9 {
				// Three sessions revoked in one transaction.
				for range 3 {
					if err := s.CreateSession(t.Context(), newSession(users[w].ID, now), users[w].Version); err != nil {
						return err
					}
				}
				ids, err := s.RevokeUserSessions(t.Context(), users[w].ID, "", "race", now, now.Add(time.Hour))
				if err != nil {
					return err
				}
				mu.Lock()
				for _, id := range ids {
					written[id] = true
				}
				mu.Unlock()
				continue
			}
			r := gatehouse.Revocation{Kind: gatehouse.RevokeSession, Subject: newID(), At: now, ExpiresAt: now.Add(time.Hour)}
			if err := s.AddRevocation(t.Context(), r); err != nil {
				return err
			}
			mu.Lock()
			written[r.Subject] = true
			mu.Unlock()
		}
		return nil
	})
	close(stop)
	if err := <-readerErr; err != nil {
		t.Fatalf("reader: %v", err)
	}
	for _, err := range errs {
		if err != nil {
			t.Fatalf("writer: %v", err)
		}
	}
	// Everything is committed now: one last catch-up from the cursor.
	for {
		n := len(seen)
		if err := read(); err != nil {
			t.Fatal(err)
		}
		if len(seen) == n {
			break
		}
	}
	missed := 0
	for id := range written {
		if seen[id] != 1 {
			missed++
			if missed <= 5 {
				t.Errorf("entry %s seen %d times by the reader following the cursor, want once", id, seen[id])
			}
		}
	}
	if len(seen) != len(written) {
		t.Errorf("reader saw %d distinct entries, %d were written (%d missed)", len(seen), len(written), missed)
	}
	if len(written) < writers*perWriter {
		t.Fatalf("only %d entries written, want at least %d", len(written), writers*perWriter)
	}
}

func testPruneRevocations(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	long := now.Add(-24 * time.Hour)
	var keep []gatehouse.Revocation
	add := func(expires time.Time, kept bool) {
		r := gatehouse.Revocation{Kind: gatehouse.RevokeSession, Subject: newID(), At: now.Add(-time.Hour), ExpiresAt: expires}
		if err := s.AddRevocation(t.Context(), r); err != nil {
			t.Fatalf("AddRevocation: %v", err)
		}
		if kept {
			keep = append(keep, r)
		}
	}
	add(now.Add(-time.Minute), false)
	add(now.Add(-time.Microsecond), false)
	add(now.Add(time.Microsecond), true)
	add(now.Add(time.Hour), true)

	if err := s.PruneRevocations(t.Context(), now); err != nil {
		t.Fatalf("PruneRevocations: %v", err)
	}
	// Seen from a day earlier every entry would be live, so whatever is
	// missing was deleted, not filtered.
	checkRevocations(t, "after PruneRevocations", s, time.Time{}, long, keep)

	if err := s.PruneRevocations(t.Context(), now); err != nil {
		t.Fatalf("PruneRevocations (again): %v", err)
	}
	checkRevocations(t, "after second PruneRevocations", s, time.Time{}, long, keep)

	if err := s.PruneRevocations(t.Context(), now.Add(2*time.Hour)); err != nil {
		t.Fatalf("PruneRevocations (later): %v", err)
	}
	checkRevocations(t, "after PruneRevocations of everything", s, time.Time{}, long, nil)
}

func testSigningKeys(t *testing.T, s gatehouse.Store) {
	keys, err := s.SigningKeys(t.Context())
	if err != nil {
		t.Fatalf("SigningKeys(empty): %v", err)
	}
	if len(keys) != 0 {
		t.Fatalf("SigningKeys(empty) = %d keys, want 0", len(keys))
	}

	now := baseTime()
	all := make([]byte, 256) // every byte value, NUL and invalid UTF-8 included
	for i := range all {
		all[i] = byte(i)
	}
	oldest := gatehouse.SigningKey{ID: "c-" + newID(), Algorithm: "EdDSA", Sealed: slices.Clone(all), CreatedAt: now.Add(-48 * time.Hour)}
	middle := gatehouse.SigningKey{ID: "a-" + newID(), Algorithm: "ES256", Sealed: []byte{0, 0, 0xff, 0xfe, 0, 1}, CreatedAt: now.Add(-24 * time.Hour)}
	newest := gatehouse.SigningKey{ID: "b-" + newID(), Algorithm: "HS256", Sealed: bytes.Repeat([]byte{0xc3, 0x28, 0x00}, 1000), CreatedAt: now}
	// Neither insertion order nor id order is age order.
	for _, k := range []gatehouse.SigningKey{middle, newest, oldest} {
		if err := s.CreateSigningKey(t.Context(), k); err != nil {
			t.Fatalf("CreateSigningKey(%s): %v", k.ID, err)
		}
	}
	want := []gatehouse.SigningKey{oldest, middle, newest}
	want[0].Sealed = all
	// The store must not keep the caller's buffer.
	oldest.Sealed[1] ^= 0xff
	keys, err = s.SigningKeys(t.Context())
	if err != nil {
		t.Fatalf("SigningKeys: %v", err)
	}
	if len(keys) != len(want) {
		t.Fatalf("SigningKeys = %d keys, want %d", len(keys), len(want))
	}
	for i := range keys {
		var d diffs
		d.str("ID", keys[i].ID, want[i].ID)
		d.str("Algorithm", keys[i].Algorithm, want[i].Algorithm)
		d.time("CreatedAt", keys[i].CreatedAt, want[i].CreatedAt)
		if !bytes.Equal(keys[i].Sealed, want[i].Sealed) {
			d = append(d, fmt.Sprintf("Sealed: got %d bytes %x..., want %d bytes", len(keys[i].Sealed), keys[i].Sealed[:min(len(keys[i].Sealed), 8)], len(want[i].Sealed)))
		}
		for _, s := range d {
			t.Errorf("SigningKeys[%d] (want %s): %s", i, want[i].ID, s)
		}
	}

	// Nor hand out its own.
	keys[0].Sealed[0] ^= 0xff
	again, err := s.SigningKeys(t.Context())
	if err != nil {
		t.Fatalf("SigningKeys: %v", err)
	}
	if !bytes.Equal(again[0].Sealed, all) {
		t.Errorf("SigningKeys returned aliased storage: modifying a result changed the next answer")
	}
}
