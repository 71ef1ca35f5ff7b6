package mail

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
)

func testKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// fastConfig has timings short enough for tests.
func fastConfig(t *testing.T, store gatehouse.MailOutbox, s Sender) Config {
	return Config{
		Store: store, Sender: s, Key: testKey(t),
		Lease: 2 * time.Second, Poll: 20 * time.Millisecond, SendTimeout: 300 * time.Millisecond,
		MinBackoff: 30 * time.Millisecond, MaxBackoff: 150 * time.Millisecond,
		PendingEvery: 50 * time.Millisecond,
	}
}

// runWorker runs w until the test ends.
func runWorker(t *testing.T, w *Worker) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer collects log output written from the worker's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// switchable points an SMTP sender at whatever address is current: a dead
// port, a silent listener, or a live server.
func switchable(t *testing.T) (*SMTPSender, *atomic.Value) {
	t.Helper()
	var target atomic.Value
	s, err := NewSMTPSender(SMTPConfig{URL: "smtp://127.0.0.1:25", From: "noreply@example.com", DialTimeout: 200 * time.Millisecond, SendTimeout: 250 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d := &net.Dialer{}
	s.dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, target.Load().(string))
	}
	return s, &target
}

// deadAddr is a loopback port nobody listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestSealedBlobHidesLinkAndToken(t *testing.T) {
	store := newFakeOutbox()
	c := fastConfig(t, store, SenderFunc(func(context.Context, Message) error { return nil }))
	out, _, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	token := "01J9ZK8W3V.q8Vb3nX2rT5yZ7aC9dE1fG3hJ5kL7mN9pQ"
	m := testMessage("alice@example.org")
	m.Text = "Open https://auth.example.com/account/reset-password#token=" + token + "\n"
	m.HTML = `<a href="https://auth.example.com/account/reset-password#token=` + token + `">x</a>`
	if err := out.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if store.pending() != 1 {
		t.Fatal("not stored")
	}
	var row gatehouse.OutboxMessage
	for _, r := range store.rows {
		row = r.m
	}
	for _, secret := range []string{token, "reset-password", "alice@example.org", "auth.example.com"} {
		if bytes.Contains(row.Sealed, []byte(secret)) {
			t.Errorf("sealed blob contains %q", secret)
		}
	}
	if row.Attempts != 0 || row.NextAttemptAt.IsZero() || row.CreatedAt.IsZero() {
		t.Errorf("row %+v", row)
	}
	box, _ := newBox(c.Key)
	got, err := unseal(box, row.ID, row.Sealed)
	if err != nil || got != m {
		t.Fatalf("unseal: %v %+v", err, got)
	}
	// Bound to its id: the blob moved to another row does not open.
	if _, err := unseal(box, row.ID+"x", row.Sealed); err == nil {
		t.Error("blob opened under another id")
	}
	tampered := bytes.Clone(row.Sealed)
	tampered[len(tampered)-1] ^= 1
	if _, err := unseal(box, row.ID, tampered); err == nil {
		t.Error("tampered blob opened")
	}
	other, _ := newBox(testKey(t))
	if _, err := unseal(other, row.ID, row.Sealed); err == nil {
		t.Error("blob opened under another key")
	}
}

func TestEnqueueRefusesInvalidMessage(t *testing.T) {
	store := newFakeOutbox()
	out, _, err := New(fastConfig(t, store, SenderFunc(func(context.Context, Message) error { return nil })))
	if err != nil {
		t.Fatal(err)
	}
	err = out.Enqueue(context.Background(), Message{To: "a@x.org\r\nBcc: e@evil.example", Subject: "s", Text: "t"})
	if !errors.Is(err, ErrInvalidMessage) || store.pending() != 0 {
		t.Fatalf("enqueued an injected recipient: %v", err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	store := newFakeOutbox()
	s := SenderFunc(func(context.Context, Message) error { return nil })
	if _, _, err := New(Config{Store: store, Sender: s, Key: make([]byte, 16)}); err == nil {
		t.Error("16-byte key accepted")
	}
	if _, _, err := New(Config{Store: store, Sender: s, Key: testKey(t), Lease: time.Minute, SendTimeout: time.Minute}); err == nil {
		t.Error("send timeout as long as the lease accepted")
	}
	if _, _, err := New(Config{Sender: s, Key: testKey(t)}); err == nil {
		t.Error("no store accepted")
	}
}

func TestWorkerDeliversAfterServerComesBack(t *testing.T) {
	sender, target := switchable(t)
	target.Store(deadAddr(t))
	store := newFakeOutbox()
	obs := &countingObserver{}
	c := fastConfig(t, store, sender)
	c.Observer = obs
	out, w, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	runWorker(t, w)
	if err := out.Enqueue(context.Background(), testMessage("alice@example.org")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two failed attempts", 5*time.Second, func() bool { _, f, _ := obs.get(); return f >= 2 })
	if store.pending() != 1 {
		t.Fatal("message lost while the server was down")
	}
	srv := startSMTP(t, serverOpts{})
	target.Store(srv.Addr)
	waitFor(t, "delivery", 5*time.Second, func() bool { return store.pending() == 0 })
	time.Sleep(200 * time.Millisecond) // room for a wrong second send
	if msgs := srv.messages(); len(msgs) != 1 {
		t.Fatalf("server got %d messages, want exactly 1", len(msgs))
	}
	if sent, _, gaveUp := obs.get(); sent != 1 || gaveUp != 0 {
		t.Fatalf("sent %d, gave up %d", sent, gaveUp)
	}
}

func TestWorkerHangingServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var heldMu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept() // accept, then never answer
			if err != nil {
				return
			}
			heldMu.Lock()
			held = append(held, c)
			heldMu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		heldMu.Lock()
		for _, c := range held {
			c.Close()
		}
		heldMu.Unlock()
	})
	sender, target := switchable(t)
	target.Store(ln.Addr().String())
	store := newFakeOutbox()
	obs := &countingObserver{}
	c := fastConfig(t, store, sender)
	c.Observer = obs
	out, w, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	runWorker(t, w)
	if err := out.Enqueue(context.Background(), testMessage("alice@example.org")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a timed-out attempt", 5*time.Second, func() bool { _, f, _ := obs.get(); return f >= 1 })
	// The worker is stuck on a silent server; enqueueing stays fast.
	for i := range 20 {
		start := time.Now()
		if err := out.Enqueue(context.Background(), testMessage(fmt.Sprintf("u%d@example.org", i))); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 50*time.Millisecond {
			t.Fatalf("enqueue took %v while the server hangs", d)
		}
	}
	store.mu.Lock()
	retries := store.retries
	store.mu.Unlock()
	if retries < 1 {
		t.Fatal("the timed-out attempt was not rescheduled")
	}
	srv := startSMTP(t, serverOpts{})
	target.Store(srv.Addr)
	waitFor(t, "delivery of all 21", 10*time.Second, func() bool { return store.pending() == 0 })
	time.Sleep(200 * time.Millisecond)
	msgs := srv.messages()
	seen := map[string]int{}
	for _, m := range msgs {
		seen[m.To[0]]++
	}
	if len(msgs) != 21 || len(seen) != 21 {
		t.Fatalf("server got %d messages for %d recipients, want 21 each once", len(msgs), len(seen))
	}
}

func TestTwoWorkersNeverSendTwice(t *testing.T) {
	store := newFakeOutbox()
	var mu sync.Mutex
	delivered := map[string]int{}
	var calls atomic.Int64
	// Slow enough to overlap, and failing now and then so that retries
	// are in the mix.
	sender := SenderFunc(func(ctx context.Context, m Message) error {
		n := calls.Add(1)
		time.Sleep(time.Duration(n%5) * time.Millisecond)
		if n%4 == 0 {
			return errors.New("451 try again later")
		}
		mu.Lock()
		delivered[m.To]++
		mu.Unlock()
		return nil
	})
	key := testKey(t)
	var outs []*Outbox
	for range 2 {
		c := fastConfig(t, store, sender)
		c.Key = key // one master secret across instances
		c.Batch = 3
		out, w, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, out)
		runWorker(t, w)
	}
	const n = 60
	for i := range n {
		if err := outs[i%2].Enqueue(context.Background(), testMessage(fmt.Sprintf("user%d@example.org", i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every message delivered", 20*time.Second, func() bool { return store.pending() == 0 })
	mu.Lock()
	defer mu.Unlock()
	if len(delivered) != n {
		t.Fatalf("%d recipients got mail, want %d", len(delivered), n)
	}
	for to, k := range delivered {
		if k != 1 {
			t.Errorf("%s got %d copies", to, k)
		}
	}
}

func TestWorkerGivesUpAndLogsNoSecrets(t *testing.T) {
	store := newFakeOutbox()
	obs := &countingObserver{}
	var logs syncBuffer
	token := "tok.SECRETsecretSECRETsecret"
	c := fastConfig(t, store, SenderFunc(func(context.Context, Message) error {
		return errors.New("550 mailbox unavailable")
	}))
	c.Observer = obs
	c.MaxAttempts = 3
	c.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	out, w, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	runWorker(t, w)
	m := testMessage("alice.private@example.org")
	m.Text = "https://auth.example.com/account/magic-link#token=" + token + "\n\n123456\n"
	if err := out.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "give up", 5*time.Second, func() bool { _, _, g := obs.get(); return g == 1 })
	if store.pending() != 0 {
		t.Fatal("given-up message still queued")
	}
	if _, failed, _ := obs.get(); failed != 3 {
		t.Fatalf("%d failed attempts counted, want 3", failed)
	}
	waitFor(t, "pending gauge at 0", 2*time.Second, func() bool { obs.mu.Lock(); defer obs.mu.Unlock(); return obs.lastPending == 0 })
	out2 := logs.String()
	if !strings.Contains(out2, `"level":"ERROR","msg":"mail given up, not delivered"`) || !strings.Contains(out2, `"recipient_domain":"example.org"`) || !strings.Contains(out2, `"mail_id":"`) {
		t.Fatalf("no give-up line naming the id and domain:\n%s", out2)
	}
	for _, secret := range []string{token, "magic-link", "123456", "alice.private", "Confirm your email"} {
		if strings.Contains(out2, secret) {
			t.Errorf("log contains %q:\n%s", secret, out2)
		}
	}
}

func TestWorkerGivesUpOnUnreadableMessage(t *testing.T) {
	store := newFakeOutbox()
	obs := &countingObserver{}
	var sends atomic.Int64
	c := fastConfig(t, store, SenderFunc(func(context.Context, Message) error { sends.Add(1); return nil }))
	c.Observer = obs
	_, w, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	// Sealed under another master secret (a key changed by mistake).
	other, _ := newBox(testKey(t))
	blob, _ := seal(other, "m1", testMessage("a@example.org"))
	now := time.Now().UTC()
	if err := store.EnqueueMail(context.Background(), gatehouse.OutboxMessage{ID: "m1", Sealed: blob, CreatedAt: now, NextAttemptAt: now}); err != nil {
		t.Fatal(err)
	}
	runWorker(t, w)
	waitFor(t, "give up", 5*time.Second, func() bool { _, _, g := obs.get(); return g == 1 })
	if store.pending() != 0 || sends.Load() != 0 {
		t.Fatalf("pending %d, sends %d", store.pending(), sends.Load())
	}
}

func TestWorkerGivesUpAfterMaxAge(t *testing.T) {
	store := newFakeOutbox()
	obs := &countingObserver{}
	c := fastConfig(t, store, SenderFunc(func(context.Context, Message) error { return errors.New("down") }))
	c.Observer = obs
	c.MaxAge = time.Hour
	_, w, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	// Queued a day ago (a long outage).
	box, _ := newBox(c.Key)
	blob, _ := seal(box, "m1", testMessage("a@example.org"))
	now := time.Now().UTC()
	old := gatehouse.OutboxMessage{ID: "m1", Sealed: blob, CreatedAt: now.Add(-24 * time.Hour), NextAttemptAt: now}
	if err := store.EnqueueMail(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	if _, err := w.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, failed, gaveUp := obs.get(); failed != 1 || gaveUp != 1 || store.pending() != 0 {
		t.Fatalf("failed %d, gave up %d, pending %d", failed, gaveUp, store.pending())
	}
}

// TestWorkerLeavesClaimsItCannotFinishInTime: the clock jumps past the
// lease between claim and send, as after a long stall: the worker must not
// start a send another instance may be starting too. Both ways a worker
// holds a message: handed over claimed by Enqueue, and claimed from the
// store.
func TestWorkerLeavesClaimsItCannotFinishInTime(t *testing.T) {
	for _, handedOff := range []bool{true, false} {
		t.Run(fmt.Sprintf("handed off %v", handedOff), func(t *testing.T) {
			store := newFakeOutbox()
			var sends atomic.Int64
			c := fastConfig(t, store, SenderFunc(func(context.Context, Message) error { sends.Add(1); return nil }))
			var calls atomic.Int64
			base := time.Now().UTC()
			c.Now = func() time.Time {
				// One reading at base: the enqueue's claim, or the
				// worker's claim from the store. Then a second short of
				// the lease's end: too late to start a send, too early
				// for anyone to claim the message again.
				if calls.Add(1) > 1 {
					return base.Add(c.Lease - time.Second)
				}
				return base
			}
			out, w, err := New(c)
			if err != nil {
				t.Fatal(err)
			}
			if handedOff {
				if err := out.Enqueue(context.Background(), testMessage("a@example.org")); err != nil {
					t.Fatal(err)
				}
			} else {
				box, _ := newBox(c.Key)
				blob, _ := seal(box, "m1", testMessage("a@example.org"))
				if err := store.EnqueueMail(context.Background(), gatehouse.OutboxMessage{ID: "m1", Sealed: blob, CreatedAt: base, NextAttemptAt: base}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := w.RunOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			if sends.Load() != 0 || store.pending() != 1 {
				t.Fatalf("sent %d past the lease", sends.Load())
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	_, w, err := New(Config{Store: newFakeOutbox(), Sender: SenderFunc(nil), Key: testKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	for n, base := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 4: 40 * time.Second, 9: 1280 * time.Second, 11: 30 * time.Minute, 40: 30 * time.Minute} {
		for range 20 {
			d := w.backoff(n)
			if d < base*8/10 || d > base*12/10 {
				t.Fatalf("backoff(%d) = %v, want %v ±20%%", n, d, base)
			}
		}
	}
}

func TestEnqueueWakesWorker(t *testing.T) {
	store := newFakeOutbox()
	got := make(chan struct{}, 1)
	c := fastConfig(t, store, SenderFunc(func(context.Context, Message) error { got <- struct{}{}; return nil }))
	c.Poll = time.Hour // only the wake can start the send
	out, w, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	runWorker(t, w)
	time.Sleep(50 * time.Millisecond) // the worker's first, empty round
	if err := out.Enqueue(context.Background(), testMessage("a@example.org")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(3 * time.Second):
		t.Fatal("enqueue did not wake the worker")
	}
}

// TestWorkerHandsBackOnShutdown: a send cut off by shutdown leaves the
// message claimable at once, not only when its lease (minutes) ends, so a
// restarted or another instance sends it right away.
func TestWorkerHandsBackOnShutdown(t *testing.T) {
	store := newFakeOutbox()
	started := make(chan struct{}, 1)
	c := fastConfig(t, store, SenderFunc(func(ctx context.Context, _ Message) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}))
	c.Lease = time.Hour
	c.SendTimeout = time.Minute
	out, w, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := out.Enqueue(context.Background(), testMessage("a@example.org")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	<-started
	cancel()
	<-done
	claimed, err := store.ClaimMail(context.Background(), time.Now().UTC(), time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed) != 1 {
		t.Fatalf("after a shutdown mid-send %d messages are claimable, want the 1 that was being sent", len(claimed))
	}
}

// TestHandOff: a message queued while the local worker has room is stored
// claimed, with the secrets its body carries, and sent by that worker
// alone: another instance's worker sharing the store does not take it,
// and no claim is needed to send it.
func TestHandOff(t *testing.T) {
	store := newFakeOutbox()
	var sends atomic.Int64
	c := fastConfig(t, store, SenderFunc(func(context.Context, Message) error { sends.Add(1); return nil }))
	out, w, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	_, other, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	sec := gatehouse.OneTimeSecret{ID: "s1", Kind: gatehouse.SecretVerifyEmail, Subject: "u1", MAC: []byte{1}}
	if err := out.Enqueue(context.Background(), testMessage("a@example.org"), sec); err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	for _, r := range store.rows {
		if !r.leaseUntil.After(time.Now()) {
			t.Errorf("stored unclaimed (lease until %v)", r.leaseUntil)
		}
	}
	if len(store.secrets) != 1 || store.secrets[0].ID != "s1" {
		t.Errorf("secrets stored with the message: %+v", store.secrets)
	}
	store.mu.Unlock()
	if _, err := other.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if sends.Load() != 0 {
		t.Fatal("another instance sent a message this one holds")
	}
	if _, err := w.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if sends.Load() != 1 || store.pending() != 0 {
		t.Fatalf("sends %d, pending %d", sends.Load(), store.pending())
	}
}

// TestHandOffIsBounded: with the worker not running, only handoffSlots
// messages are stored claimed; the rest are left free for any worker, so
// a stuck instance holds few messages to their lease.
func TestHandOffIsBounded(t *testing.T) {
	store := newFakeOutbox()
	c := fastConfig(t, store, SenderFunc(func(context.Context, Message) error { return nil }))
	out, _, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	for range handoffSlots + 3 {
		if err := out.Enqueue(context.Background(), testMessage("a@example.org")); err != nil {
			t.Fatal(err)
		}
	}
	claimed := 0
	store.mu.Lock()
	for _, r := range store.rows {
		if !r.leaseUntil.IsZero() {
			claimed++
		}
	}
	store.mu.Unlock()
	if claimed != handoffSlots || store.pending() != handoffSlots+3 {
		t.Fatalf("claimed at enqueue %d of %d, want %d", claimed, store.pending(), handoffSlots)
	}
}

// TestHandOffReleasedOnShutdown: messages handed over but not yet sent when
// the worker stops are handed back due now, not left to their lease.
func TestHandOffReleasedOnShutdown(t *testing.T) {
	store := newFakeOutbox()
	c := fastConfig(t, store, SenderFunc(func(context.Context, Message) error { return nil }))
	out, w, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := out.Enqueue(context.Background(), testMessage("a@example.org")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w.Run(ctx)
	store.mu.Lock()
	defer store.mu.Unlock()
	for _, r := range store.rows {
		if !r.leaseUntil.IsZero() {
			t.Errorf("still held until %v after shutdown", r.leaseUntil)
		}
	}
	if len(store.rows) != 1 {
		t.Fatalf("%d messages left, want 1", len(store.rows))
	}
}

// TestWorkerYieldsWhileBusy: a fresh message waits while Busy reports work
// in progress and goes as soon as it stops; under unending work it goes once
// it has waited YieldFor since it was queued, not later; a shutdown while it
// waits hands it back instead of sending it.
func TestWorkerYieldsWhileBusy(t *testing.T) {
	t.Run("until idle", func(t *testing.T) {
		store := newFakeOutbox()
		var sentAt atomic.Int64
		c := fastConfig(t, store, SenderFunc(func(context.Context, Message) error { sentAt.Store(time.Now().UnixNano()); return nil }))
		var busy atomic.Bool
		busy.Store(true)
		c.Busy = busy.Load
		c.YieldFor = 10 * time.Second
		out, w, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		runWorker(t, w)
		if err := out.Enqueue(context.Background(), testMessage("a@example.org")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
		if sentAt.Load() != 0 {
			t.Fatal("sent while the instance was busy")
		}
		idleAt := time.Now()
		busy.Store(false)
		waitFor(t, "the send once idle", 2*time.Second, func() bool { return sentAt.Load() != 0 })
		if lag := time.Unix(0, sentAt.Load()).Sub(idleAt); lag > time.Second {
			t.Errorf("sent %v after the instance went idle", lag)
		}
	})
	t.Run("at most YieldFor", func(t *testing.T) {
		store := newFakeOutbox()
		var sends atomic.Int64
		c := fastConfig(t, store, SenderFunc(func(context.Context, Message) error { sends.Add(1); return nil }))
		c.Busy = func() bool { return true }
		c.YieldFor = 200 * time.Millisecond
		out, w, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		runWorker(t, w)
		const n = 5
		queued := time.Now()
		for range n {
			if err := out.Enqueue(context.Background(), testMessage("a@example.org")); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond)
		if sends.Load() != 0 {
			t.Fatal("sent before YieldFor while busy")
		}
		// The messages wait side by side, not one YieldFor after another.
		waitFor(t, "the sends after YieldFor", 2*time.Second, func() bool { return sends.Load() == n })
		if took := time.Since(queued); took > time.Second {
			t.Errorf("%d messages took %v under constant load, want about one YieldFor (200ms)", n, took)
		}
	})
	t.Run("shutdown while waiting", func(t *testing.T) {
		store := newFakeOutbox()
		var sends atomic.Int64
		c := fastConfig(t, store, SenderFunc(func(context.Context, Message) error { sends.Add(1); return nil }))
		c.Busy = func() bool { return true }
		c.YieldFor = time.Minute
		out, w, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { w.Run(ctx); close(done) }()
		if err := out.Enqueue(context.Background(), testMessage("a@example.org")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		cancel()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatal("the worker did not stop while holding a message back")
		}
		if sends.Load() != 0 {
			t.Fatal("sent during shutdown")
		}
		store.mu.Lock()
		defer store.mu.Unlock()
		if len(store.rows) != 1 {
			t.Fatalf("%d messages left, want 1", len(store.rows))
		}
		for _, r := range store.rows {
			if !r.leaseUntil.IsZero() {
				t.Errorf("still held until %v after shutdown", r.leaseUntil)
			}
		}
	})
}
