package storetest

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
)

// checkRevocations compares RevocationsSince(since, now) with want as sets:
// the contract allows any order.
func checkRevocations(t *testing.T, what string, s gatehouse.Store, since, now time.Time, want []gatehouse.Revocation) {
	t.Helper()
	got, err := s.RevocationsSince(t.Context(), since, now)
	if err != nil {
		t.Fatalf("%s: RevocationsSince: %v", what, err)
	}
	sortRevocations(got)
	want = slices.Clone(want)
	sortRevocations(want)
	if len(got) != len(want) {
		t.Errorf("%s: RevocationsSince returned %d entries, want %d\n got: %s\nwant: %s", what, len(got), len(want), fmtRevocations(got), fmtRevocations(want))
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
		fmt.Fprintf(&b, "{%s %s at %v exp %v} ", r.Kind, r.Subject, r.At, r.ExpiresAt)
	}
	return b.String()
}

func testRevocationsSince(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	since := now.Add(-time.Minute)
	rev := func(kind gatehouse.RevocationKind, at, expires time.Time) gatehouse.Revocation {
		r := gatehouse.Revocation{Kind: kind, Subject: newID(), At: at, ExpiresAt: expires}
		if err := s.AddRevocation(t.Context(), r); err != nil {
			t.Fatalf("AddRevocation: %v", err)
		}
		return r
	}

	checkRevocations(t, "empty log", s, time.Time{}, now, nil)

	atSince := rev(gatehouse.RevokeSession, since, now.Add(time.Hour))                   // At == since: in
	after := rev(gatehouse.RevokeUserBefore, since.Add(time.Second), now.Add(time.Hour)) // in
	justLive := rev(gatehouse.RevokeSession, now, now.Add(time.Microsecond))             // ExpiresAt just after now: in
	before := rev(gatehouse.RevokeSession, since.Add(-time.Microsecond), now.Add(time.Hour))
	rev(gatehouse.RevokeUserBefore, since.Add(time.Second), now)                  // ExpiresAt == now: out
	rev(gatehouse.RevokeSession, since.Add(2*time.Second), now.Add(-time.Second)) // expired: out
	// Two entries for one subject are two entries (a user logged out twice).
	again := gatehouse.Revocation{Kind: gatehouse.RevokeUserBefore, Subject: after.Subject, At: since.Add(2 * time.Second), ExpiresAt: now.Add(2 * time.Hour)}
	if err := s.AddRevocation(t.Context(), again); err != nil {
		t.Fatalf("AddRevocation(same subject again): %v", err)
	}

	checkRevocations(t, "RevocationsSince(since, now)", s, since, now,
		[]gatehouse.Revocation{atSince, after, justLive, again})
	// The start-up load: everything still live, whenever it was written.
	checkRevocations(t, "RevocationsSince(zero, now)", s, time.Time{}, now,
		[]gatehouse.Revocation{atSince, after, justLive, again, before})
	checkRevocations(t, "RevocationsSince(after all, now)", s, now.Add(time.Microsecond), now, nil)
	// Looking from a later "now" drops what has expired by then.
	checkRevocations(t, "RevocationsSince(since, now+1µs)", s, since, now.Add(time.Microsecond),
		[]gatehouse.Revocation{atSince, after, again})
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
