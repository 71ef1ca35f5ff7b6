package storetest

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
)

// --- fixtures ---------------------------------------------------------------

func newAuditEvent(userID, typ string, at time.Time) gatehouse.AuditEvent {
	return gatehouse.AuditEvent{
		Time:      at,
		Type:      typ,
		UserID:    userID,
		SessionID: newID(),
		IP:        "2001:db8::7",
		UserAgent: "storetest/1.0 (X11; Linux) \u00e9",
		Outcome:   "success",
		Detail:    map[string]string{"method": "pwd", "scope": "local"},
	}
}

func mustAppendAudit(t *testing.T, s gatehouse.Store, e gatehouse.AuditEvent) int64 {
	t.Helper()
	id, err := s.AppendAudit(t.Context(), e)
	if err != nil {
		t.Fatalf("AppendAudit(%s): %v", e.Type, err)
	}
	if id <= 0 {
		t.Fatalf("AppendAudit(%s) = id %d, want a positive id", e.Type, id)
	}
	return id
}

func mustAuditEvents(t *testing.T, s gatehouse.Store, f gatehouse.AuditFilter) []gatehouse.AuditEvent {
	t.Helper()
	es, err := s.AuditEvents(t.Context(), f)
	if err != nil {
		t.Fatalf("AuditEvents(%+v): %v", f, err)
	}
	return es
}

func auditIDs(es []gatehouse.AuditEvent) []int64 {
	ids := make([]int64, len(es))
	for i, e := range es {
		ids[i] = e.ID
	}
	return ids
}

func checkAuditEvent(t *testing.T, what string, got, want gatehouse.AuditEvent) {
	t.Helper()
	var d diffs
	d.any("ID", got.ID, want.ID)
	d.time("Time", got.Time, want.Time)
	d.str("Type", got.Type, want.Type)
	d.str("UserID", got.UserID, want.UserID)
	d.str("SessionID", got.SessionID, want.SessionID)
	d.str("IP", got.IP, want.IP)
	d.str("UserAgent", got.UserAgent, want.UserAgent)
	d.str("Outcome", got.Outcome, want.Outcome)
	// nil and empty are the same: no detail.
	if !maps.Equal(got.Detail, want.Detail) && (len(got.Detail) != 0 || len(want.Detail) != 0) {
		d = append(d, fmt.Sprintf("Detail: got %v, want %v", got.Detail, want.Detail))
	}
	for _, s := range d {
		t.Errorf("%s: audit event %s", what, s)
	}
}

// --- tests ------------------------------------------------------------------

func testAuditRoundTrip(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	full := newAuditEvent(newID(), "login", now)
	full.Outcome = "failure"
	full.Detail = map[string]string{"method": "pwd", "reason": "wrong_password"}
	full.ID = 999999 // ignored: the store assigns ids
	bare := gatehouse.AuditEvent{Time: now.Add(time.Millisecond), Type: "login", Outcome: "failure"}

	full.ID = mustAppendAudit(t, s, full)
	bare.ID = mustAppendAudit(t, s, bare)
	if bare.ID <= full.ID {
		t.Errorf("ids %d then %d: want them to grow with every append", full.ID, bare.ID)
	}
	got := mustAuditEvents(t, s, gatehouse.AuditFilter{Limit: 10})
	if len(got) != 2 {
		t.Fatalf("AuditEvents = %d events, want 2", len(got))
	}
	checkAuditEvent(t, "newest", got[0], bare)
	checkAuditEvent(t, "oldest", got[1], full)
}

func testAuditOrderAndPaging(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	var ids []int64
	for i := range 5 {
		// Times deliberately out of order: the order is the ids', not
		// the clocks' (instances' clocks may disagree).
		ids = append(ids, mustAppendAudit(t, s, newAuditEvent(newID(), "logout", now.Add(time.Duration(5-i)*time.Second))))
	}
	slices.Reverse(ids) // newest first
	page1 := mustAuditEvents(t, s, gatehouse.AuditFilter{Limit: 2})
	if got := auditIDs(page1); !slices.Equal(got, ids[:2]) {
		t.Fatalf("first page = %v, want %v", got, ids[:2])
	}
	page2 := mustAuditEvents(t, s, gatehouse.AuditFilter{Limit: 2, Before: page1[1].ID})
	if got := auditIDs(page2); !slices.Equal(got, ids[2:4]) {
		t.Errorf("second page = %v, want %v", got, ids[2:4])
	}
	page3 := mustAuditEvents(t, s, gatehouse.AuditFilter{Limit: 2, Before: ids[3]})
	if got := auditIDs(page3); !slices.Equal(got, ids[4:]) {
		t.Errorf("last page = %v, want %v", got, ids[4:])
	}
	if got := mustAuditEvents(t, s, gatehouse.AuditFilter{Limit: 2, Before: ids[4]}); len(got) != 0 {
		t.Errorf("past the oldest = %v, want nothing", auditIDs(got))
	}
	if got := mustAuditEvents(t, s, gatehouse.AuditFilter{Limit: 0}); len(got) != 0 {
		t.Errorf("limit 0 = %v, want nothing", auditIDs(got))
	}
}

func testAuditFilters(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	alice, bob := newID(), newID()
	a1 := mustAppendAudit(t, s, newAuditEvent(alice, "login", now))
	b1 := mustAppendAudit(t, s, newAuditEvent(bob, "login", now))
	a2 := mustAppendAudit(t, s, newAuditEvent(alice, "password_changed", now))
	n1 := mustAppendAudit(t, s, newAuditEvent("", "login", now))
	a3 := mustAppendAudit(t, s, newAuditEvent(alice, "login", now))

	for _, tc := range []struct {
		f    gatehouse.AuditFilter
		want []int64
	}{
		{gatehouse.AuditFilter{UserID: alice, Limit: 10}, []int64{a3, a2, a1}},
		{gatehouse.AuditFilter{UserID: bob, Limit: 10}, []int64{b1}},
		{gatehouse.AuditFilter{Type: "login", Limit: 10}, []int64{a3, n1, b1, a1}},
		{gatehouse.AuditFilter{UserID: alice, Type: "login", Limit: 10}, []int64{a3, a1}},
		{gatehouse.AuditFilter{UserID: alice, Type: "login", Before: a3, Limit: 10}, []int64{a1}},
		{gatehouse.AuditFilter{UserID: alice, Limit: 1}, []int64{a3}},
		{gatehouse.AuditFilter{UserID: newID(), Limit: 10}, nil},
		{gatehouse.AuditFilter{Type: "logout", Limit: 10}, nil},
		// A user id is matched exactly, not as a pattern.
		{gatehouse.AuditFilter{UserID: "%", Limit: 10}, nil},
	} {
		if got := auditIDs(mustAuditEvents(t, s, tc.f)); !slices.Equal(got, tc.want) && (len(got) != 0 || len(tc.want) != 0) {
			t.Errorf("AuditEvents(%+v) = %v, want %v", tc.f, got, tc.want)
		}
	}
}

func testPruneAudit(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	cutoff := now.Add(-24 * time.Hour)
	var old []int64
	for i := range 5 {
		old = append(old, mustAppendAudit(t, s, newAuditEvent(newID(), "login", cutoff.Add(-time.Duration(i+1)*time.Minute))))
	}
	edge := mustAppendAudit(t, s, newAuditEvent(newID(), "login", cutoff)) // not before the cutoff: kept
	fresh := mustAppendAudit(t, s, newAuditEvent(newID(), "login", now))

	n, err := s.PruneAudit(t.Context(), cutoff, 3)
	if err != nil {
		t.Fatalf("PruneAudit: %v", err)
	}
	if n != 3 {
		t.Errorf("PruneAudit(limit 3) deleted %d, want 3", n)
	}
	n, err = s.PruneAudit(t.Context(), cutoff, 10)
	if err != nil {
		t.Fatalf("PruneAudit: %v", err)
	}
	if n != 2 {
		t.Errorf("second PruneAudit deleted %d, want the 2 old events left", n)
	}
	if n, err := s.PruneAudit(t.Context(), cutoff, 10); err != nil || n != 0 {
		t.Errorf("third PruneAudit = %d, %v; want 0, nil", n, err)
	}
	got := auditIDs(mustAuditEvents(t, s, gatehouse.AuditFilter{Limit: 10}))
	if want := []int64{fresh, edge}; !slices.Equal(got, want) {
		t.Errorf("after pruning: %v, want %v (old were %v)", got, want, old)
	}
	// Ids are never handed out again, even once the newest are pruned:
	// a cursor a client holds keeps meaning what it meant.
	if _, err := s.PruneAudit(t.Context(), now.Add(time.Hour), 10); err != nil {
		t.Fatalf("PruneAudit everything: %v", err)
	}
	if next := mustAppendAudit(t, s, newAuditEvent(newID(), "login", now)); next <= fresh {
		t.Errorf("id after pruning everything = %d, want above %d", next, fresh)
	}
}

func testAuditAppendConcurrent(t *testing.T, s gatehouse.Store) {
	const n = 16
	now := baseTime()
	user := newID()
	ids := make([]int64, n)
	errs := concurrently(n, func(i int) error {
		id, err := s.AppendAudit(t.Context(), newAuditEvent(user, "login", now))
		ids[i] = id
		return err
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	got := auditIDs(mustAuditEvents(t, s, gatehouse.AuditFilter{UserID: user, Limit: 100}))
	slices.Sort(ids)
	if len(slices.Compact(slices.Clone(ids))) != n {
		t.Errorf("concurrent appends got ids %v, want %d distinct", ids, n)
	}
	slices.Reverse(ids)
	if !slices.Equal(got, ids) {
		t.Errorf("listed %v, want every appended id newest first %v", got, ids)
	}
}
