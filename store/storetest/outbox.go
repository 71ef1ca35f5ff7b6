package storetest

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
)

const mailLease = time.Minute

// newMessage returns a message created at now and due at due, with a random
// sealed body.
func newMessage(now, due time.Time) gatehouse.OutboxMessage {
	return gatehouse.OutboxMessage{ID: newID(), Sealed: randomBytes(200), CreatedAt: now, NextAttemptAt: due}
}

func mustEnqueue(t *testing.T, s gatehouse.Store, m gatehouse.OutboxMessage) gatehouse.OutboxMessage {
	t.Helper()
	if err := s.EnqueueMail(t.Context(), m); err != nil {
		t.Fatalf("EnqueueMail(%s): %v", m.ID, err)
	}
	return m
}

func mustClaim(t *testing.T, s gatehouse.Store, now time.Time, limit int) []gatehouse.OutboxMessage {
	t.Helper()
	ms, err := s.ClaimMail(t.Context(), now, mailLease, limit)
	if err != nil {
		t.Fatalf("ClaimMail(%v): %v", now, err)
	}
	return ms
}

func wantPending(t *testing.T, s gatehouse.Store, want int) {
	t.Helper()
	n, err := s.PendingMail(t.Context())
	if err != nil {
		t.Fatalf("PendingMail: %v", err)
	}
	if n != want {
		t.Errorf("PendingMail = %d, want %d", n, want)
	}
}

func messageIDs(ms []gatehouse.OutboxMessage) []string {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return ids
}

func checkMessages(t *testing.T, what string, got, want []gatehouse.OutboxMessage) {
	t.Helper()
	if !slices.Equal(messageIDs(got), messageIDs(want)) {
		t.Errorf("%s: got messages %q, want %q", what, messageIDs(got), messageIDs(want))
		return
	}
	for i := range got {
		var d diffs
		if !bytes.Equal(got[i].Sealed, want[i].Sealed) {
			d = append(d, "Sealed differs")
		}
		d.time("CreatedAt", got[i].CreatedAt, want[i].CreatedAt)
		d.time("NextAttemptAt", got[i].NextAttemptAt, want[i].NextAttemptAt)
		d.any("Attempts", got[i].Attempts, want[i].Attempts)
		for _, s := range d {
			t.Errorf("%s: message %s: %s", what, got[i].ID, s)
		}
	}
}

// testClaimMail: only due messages are claimed, oldest due first, up to
// the limit, with everything stored.
func testClaimMail(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	wantPending(t, s, 0)
	if ms := mustClaim(t, s, now, 10); len(ms) != 0 {
		t.Errorf("ClaimMail on an empty outbox = %q", messageIDs(ms))
	}
	// Enqueued out of due order.
	second := mustEnqueue(t, s, newMessage(now.Add(-time.Hour), now.Add(-time.Minute)))
	mustEnqueue(t, s, newMessage(now, now.Add(time.Hour))) // not due
	first := mustEnqueue(t, s, newMessage(now, now.Add(-2*time.Minute)))
	exact := newMessage(now, now) // due exactly now: due
	exact.Attempts = 3
	mustEnqueue(t, s, exact)
	wantPending(t, s, 4)

	checkMessages(t, "ClaimMail(limit 2)", mustClaim(t, s, now, 2), []gatehouse.OutboxMessage{first, second})
	checkMessages(t, "ClaimMail(the rest)", mustClaim(t, s, now, 10), []gatehouse.OutboxMessage{exact})
	if ms := mustClaim(t, s, now, 10); len(ms) != 0 {
		t.Errorf("ClaimMail with everything due claimed = %q, want none", messageIDs(ms))
	}
	if ms := mustClaim(t, s, now, 0); len(ms) != 0 {
		t.Errorf("ClaimMail(limit 0) = %q, want none", messageIDs(ms))
	}
	wantPending(t, s, 4) // claimed messages are still pending
}

// testClaimMailLease: a claim holds until its lease ends; after that the
// message is claimable again (its claimer died).
func testClaimMailLease(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	m := mustEnqueue(t, s, newMessage(now, now))
	checkMessages(t, "first claim", mustClaim(t, s, now, 10), []gatehouse.OutboxMessage{m})
	if ms := mustClaim(t, s, now.Add(mailLease-time.Microsecond), 10); len(ms) != 0 {
		t.Errorf("ClaimMail just before the lease ends = %q, want none", messageIDs(ms))
	}
	later := now.Add(mailLease + time.Second)
	checkMessages(t, "claim after the lease ended", mustClaim(t, s, later, 10), []gatehouse.OutboxMessage{m})
	if ms := mustClaim(t, s, later, 10); len(ms) != 0 {
		t.Errorf("ClaimMail under the second lease = %q, want none", messageIDs(ms))
	}
}

// testClaimMailConcurrent: several claimers draining one outbox at once
// never get the same message, and between them get every message.
func testClaimMailConcurrent(t *testing.T, s gatehouse.Store) {
	const (
		rounds   = 25
		messages = 10
		claimers = 3
	)
	for round := range rounds {
		now := baseTime()
		want := map[string]bool{}
		for range messages {
			want[mustEnqueue(t, s, newMessage(now, now)).ID] = true
		}
		got := make([][]string, claimers)
		errs := concurrently(claimers, func(i int) error {
			for {
				ms, err := s.ClaimMail(t.Context(), now, mailLease, 2)
				if err != nil {
					return err
				}
				if len(ms) == 0 {
					return nil
				}
				got[i] = append(got[i], messageIDs(ms)...)
			}
		})
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: claimer %d: %v", round, i, err)
			}
		}
		seen := map[string]int{}
		for i, ids := range got {
			for _, id := range ids {
				if j, dup := seen[id]; dup {
					t.Errorf("round %d: message %s claimed by claimer %d and claimer %d", round, id, j, i)
				}
				seen[id] = i
				if !want[id] {
					t.Errorf("round %d: claimed message %s of another round", round, id)
				}
			}
		}
		if len(seen) != messages {
			t.Errorf("round %d: %d messages claimed, want %d", round, len(seen), messages)
		}
		for id := range seen {
			if err := s.DeleteMail(t.Context(), id); err != nil {
				t.Fatalf("DeleteMail: %v", err)
			}
		}
		if t.Failed() {
			return
		}
	}
	wantPending(t, s, 0)
}

func testRetryMail(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	m := mustEnqueue(t, s, newMessage(now, now))
	mustClaim(t, s, now, 10)

	next := now.Add(5 * time.Minute)
	if err := s.RetryMail(t.Context(), m.ID, next); err != nil {
		t.Fatalf("RetryMail: %v", err)
	}
	if ms := mustClaim(t, s, next.Add(-time.Microsecond), 10); len(ms) != 0 {
		t.Errorf("ClaimMail before the retry is due = %q, want none", messageIDs(ms))
	}
	want := m
	want.NextAttemptAt, want.Attempts = next, 1
	checkMessages(t, "claim of the retry", mustClaim(t, s, next, 10), []gatehouse.OutboxMessage{want})

	// RetryMail releases the lease: retried for right now, the message is
	// claimable at once, inside the lease of the claim before.
	if err := s.RetryMail(t.Context(), m.ID, next); err != nil {
		t.Fatalf("RetryMail: %v", err)
	}
	want.Attempts = 2
	checkMessages(t, "claim right after the second retry", mustClaim(t, s, next, 10), []gatehouse.OutboxMessage{want})
	wantPending(t, s, 1)

	err := s.RetryMail(t.Context(), newID(), next)
	wantNotFound(t, "RetryMail(unknown)", err)
	if err := s.DeleteMail(t.Context(), m.ID); err != nil {
		t.Fatalf("DeleteMail: %v", err)
	}
	err = s.RetryMail(t.Context(), m.ID, next)
	wantNotFound(t, "RetryMail(deleted)", err)
}

func testDeleteMail(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	sent := mustEnqueue(t, s, newMessage(now, now))
	kept := mustEnqueue(t, s, newMessage(now, now.Add(time.Second)))
	wantPending(t, s, 2)
	mustClaim(t, s, now, 1)
	if err := s.DeleteMail(t.Context(), sent.ID); err != nil {
		t.Fatalf("DeleteMail: %v", err)
	}
	wantPending(t, s, 1)
	for _, id := range []string{sent.ID, newID()} {
		if err := s.DeleteMail(t.Context(), id); err != nil {
			t.Errorf("DeleteMail(gone): %v", err)
		}
	}
	later := now.Add(2 * mailLease) // the deleted message's lease has ended too
	checkMessages(t, "ClaimMail after DeleteMail", mustClaim(t, s, later, 10), []gatehouse.OutboxMessage{kept})

	// Several at once, gone ones among them, in one call.
	a := mustEnqueue(t, s, newMessage(now, now))
	b := mustEnqueue(t, s, newMessage(now, now))
	wantPending(t, s, 3)
	if err := s.DeleteMail(t.Context(), a.ID, newID(), b.ID, sent.ID); err != nil {
		t.Fatalf("DeleteMail(several): %v", err)
	}
	wantPending(t, s, 1)
	if err := s.DeleteMail(t.Context()); err != nil {
		t.Fatalf("DeleteMail(none): %v", err)
	}
	wantPending(t, s, 1)
}

// testEnqueueMailWithSecrets: the secrets queued with a message are stored
// with it (voiding older ones of their kind and subject, as CreateSecret
// does), and a message refused by the store takes its secrets with it.
func testEnqueueMailWithSecrets(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	user := newID()
	older := mustCreateSecret(t, s, newSecret(gatehouse.SecretMagicLink, user, now))
	link := newSecret(gatehouse.SecretMagicLink, user, now.Add(time.Second))
	code := newSecret(gatehouse.SecretMagicCode, user, now.Add(time.Second))
	m := newMessage(now, now)
	if err := s.EnqueueMail(t.Context(), m, link, code); err != nil {
		t.Fatalf("EnqueueMail with secrets: %v", err)
	}
	at := now.Add(2 * time.Second)
	if usable(t, s, older, at) {
		t.Error("the older link of the same kind and subject is still usable")
	}
	if !usable(t, s, link, at) || !usable(t, s, code, at) {
		t.Error("a secret queued with the message is not usable")
	}
	checkMessages(t, "claim", mustClaim(t, s, at, 10), []gatehouse.OutboxMessage{m})

	// The same message id again fails, and the secret sent with it must
	// not be left behind.
	orphan := newSecret(gatehouse.SecretVerifyEmail, user, now)
	if err := s.EnqueueMail(t.Context(), m, orphan); err == nil {
		t.Fatal("EnqueueMail accepted a duplicate message id")
	}
	if usable(t, s, orphan, at) {
		t.Error("the secret of a message that was not stored is usable")
	}
	bad := newSecret(gatehouse.SecretVerifyEmail, user, now)
	bad.MAC = nil
	next := newMessage(now, now)
	if err := s.EnqueueMail(t.Context(), next, bad); err == nil {
		t.Fatal("EnqueueMail accepted a secret without a MAC")
	}
	checkMessages(t, "claim after refused enqueues", mustClaim(t, s, at.Add(2*mailLease), 10), []gatehouse.OutboxMessage{m})
}

// testEnqueueMailClaimed: a message queued with a claim (the queuing
// instance sends it itself) is not claimed by anyone else until the claim
// has passed, and then it is.
func testEnqueueMailClaimed(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	m := newMessage(now, now)
	m.ClaimedUntil = now.Add(mailLease)
	mustEnqueue(t, s, m)
	free := mustEnqueue(t, s, newMessage(now, now))
	checkMessages(t, "claim while held", mustClaim(t, s, now.Add(time.Second), 10), []gatehouse.OutboxMessage{free})
	wantPending(t, s, 2)
	if err := s.DeleteMail(t.Context(), free.ID); err != nil {
		t.Fatal(err)
	}
	checkMessages(t, "claim after the hold", mustClaim(t, s, now.Add(mailLease+time.Second), 10), []gatehouse.OutboxMessage{m})
}

// testCreateUserWithMail: the user, its mail and the mail's secret are
// stored together; when the user cannot be (its address is taken), none of
// them is.
func testCreateUserWithMail(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	u := newUser("with-mail-" + newID() + "@example.com")
	link := newSecret(gatehouse.SecretVerifyEmail, u.ID, now)
	m := newMessage(now, now)
	if err := s.CreateUserWithMail(t.Context(), u, m, link); err != nil {
		t.Fatalf("CreateUserWithMail: %v", err)
	}
	got, err := s.UserByID(t.Context(), u.ID)
	if err != nil || got.Email != u.Email {
		t.Fatalf("user after CreateUserWithMail: %v %+v", err, got)
	}
	at := now.Add(time.Second)
	if !usable(t, s, link, at) {
		t.Error("the secret stored with the user and its mail is not usable")
	}
	checkMessages(t, "claim", mustClaim(t, s, at, 10), []gatehouse.OutboxMessage{m})

	taken := newUser(u.Email)
	orphan := newSecret(gatehouse.SecretVerifyEmail, taken.ID, now)
	next := newMessage(now, now)
	if err := s.CreateUserWithMail(t.Context(), taken, next, orphan); !errors.Is(err, gatehouse.ErrEmailTaken) {
		t.Fatalf("CreateUserWithMail with a taken address: %v, want ErrEmailTaken", err)
	}
	if usable(t, s, orphan, at) {
		t.Error("the secret of a sign-up that failed is usable")
	}
	if _, err := s.UserByID(t.Context(), taken.ID); !errors.Is(err, gatehouse.ErrNotFound) {
		t.Errorf("the user of a failed CreateUserWithMail exists: %v", err)
	}
	wantPending(t, s, 1) // only the first message
}
