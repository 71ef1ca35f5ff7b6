package mail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"time"

	"github.com/google/uuid"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/sealbox"
)

// Observer counts what the worker does (metrics.Metrics implements it).
type Observer interface {
	MailSent()
	MailFailed() // one failed attempt, to be retried or given up
	MailGaveUp() // a message dropped undelivered
	MailPending(n int)
}

// Config configures an Outbox and its Worker. Zero durations take the
// defaults in parentheses.
type Config struct {
	Store  gatehouse.MailOutbox
	Sender Sender
	// Renderer, when set, lets Outbox.EnqueueTemplate render and queue in
	// one call.
	Renderer *Renderer
	// Key seals queued messages: 32 bytes, from
	// masterkey.Derive(master, masterkey.PurposeMail).
	Key      []byte
	Logger   *slog.Logger // nil discards
	Observer Observer     // nil counts nothing

	Lease        time.Duration // how long a claim holds a message (2 min)
	Poll         time.Duration // how often to look for due mail (1 s)
	SendTimeout  time.Duration // one delivery attempt (30 s); well under Lease
	MinBackoff   time.Duration // first retry delay (5 s), doubling...
	MaxBackoff   time.Duration // ...up to this (30 min)
	MaxAttempts  int           // give up after this many failed attempts (12)
	MaxAge       time.Duration // or once a message is this old (24 h)
	PendingEvery time.Duration // how often to recount the outbox (15 s)
	Batch        int           // messages claimed at once (10)
	Now          func() time.Time

	// Busy, when set, reports whether the instance is doing work a user is
	// waiting on that the sender would slow down: in Gatehouse, password
	// hashes running or queued, which take whole CPUs. A message is then
	// held back until Busy reports false, for at most YieldFor after it
	// was queued (100 ms). A mail arriving a tenth of a second later goes
	// unnoticed; a sign-in slowed by a send does not, and on a small
	// machine the send's CPU and disk work lands in the tail of the very
	// sign-ups that queued the mail. Counting from the queue time keeps the
	// sending rate whatever the load: under constant load every message is
	// sent YieldFor after it was queued.
	Busy     func() bool
	YieldFor time.Duration
}

// New returns the outbox that requests enqueue into and the worker that
// sends, connected so that an enqueue wakes the local worker at once.
func New(c Config) (*Outbox, *Worker, error) {
	if c.Store == nil || c.Sender == nil {
		return nil, nil, errors.New("mail: store and sender are required")
	}
	box, err := newBox(c.Key)
	if err != nil {
		return nil, nil, err
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Lease, 2*time.Minute)
	def(&c.Poll, time.Second)
	def(&c.SendTimeout, 30*time.Second)
	def(&c.MinBackoff, 5*time.Second)
	def(&c.MaxBackoff, 30*time.Minute)
	def(&c.MaxAge, 24*time.Hour)
	def(&c.PendingEvery, 15*time.Second)
	def(&c.YieldFor, 100*time.Millisecond)
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 12
	}
	if c.Batch <= 0 {
		c.Batch = 10
	}
	if c.SendTimeout >= c.Lease/2 {
		// A send that outlives its lease could be claimed and sent again
		// by another instance while the first is still talking.
		return nil, nil, fmt.Errorf("mail: send timeout %v must be under half the lease %v", c.SendTimeout, c.Lease)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	if c.Now == nil {
		c.Now = func() time.Time { return time.Now().UTC() }
	}
	wake := make(chan struct{}, 1)
	handoff := make(chan gatehouse.OutboxMessage, handoffSlots)
	slots := make(chan struct{}, handoffSlots)
	return &Outbox{store: c.Store, renderer: c.Renderer, box: box, now: c.Now, lease: c.Lease,
			wake: wake, handoff: handoff, slots: slots},
		&Worker{c: c, box: box, wake: wake, handoff: handoff, slots: slots}, nil
}

type nopObserver struct{}

func (nopObserver) MailSent()       {}
func (nopObserver) MailFailed()     {}
func (nopObserver) MailGaveUp()     {}
func (nopObserver) MailPending(int) {}

// newBox returns the sealing box of queued messages (sealbox's format:
// version, random nonce, AES-256-GCM).
func newBox(key []byte) (*sealbox.Box, error) {
	box, err := sealbox.New(key)
	if err != nil {
		return nil, fmt.Errorf("mail: sealing key: %w", err)
	}
	return box, nil
}

// seal encrypts m bound to the message id, so a blob moved to another row
// does not open.
func seal(box *sealbox.Box, id string, m Message) ([]byte, error) {
	plain, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode mail: %w", err)
	}
	return box.Seal([]byte(id), plain), nil
}

func unseal(box *sealbox.Box, id string, blob []byte) (Message, error) {
	plain, err := box.Open([]byte(id), blob)
	if err != nil {
		return Message{}, errors.New("sealed mail does not open (another master key, or tampered)")
	}
	var m Message
	if err := json.Unmarshal(plain, &m); err != nil {
		return Message{}, fmt.Errorf("decode sealed mail: %w", err)
	}
	return m, nil
}

// Outbox queues messages. Enqueue only writes to the store: sending happens
// in the Worker, so a slow or dead mail server never slows a request.
type Outbox struct {
	store    gatehouse.MailOutbox
	renderer *Renderer
	box      *sealbox.Box
	now      func() time.Time
	lease    time.Duration
	wake     chan struct{}
	// handoff carries messages queued with a claim for the local worker;
	// slots bounds them (a token is taken before the insert and given
	// back by the worker), so a send is never blocked on a full channel
	// and at most cap(slots) messages wait for a lease to run out if
	// the instance dies.
	handoff chan gatehouse.OutboxMessage
	slots   chan struct{}
}

// handoffSlots is how many messages the local worker can hold claimed but
// not yet sent. Small on purpose: a claimed message that the worker has
// not reached (a send hanging ahead of it) waits for the lease if the
// instance dies, where an unclaimed one is taken by another at once.
const handoffSlots = 8

// Enqueue validates and seals m and stores it due now, with the one-time
// secrets its body carries in the same transaction. When the local worker
// has room, the message is stored already claimed and handed to it
// directly: no separate claim is written. Otherwise the worker is woken to
// claim it. It returns the error of an invalid message or of the store.
func (o *Outbox) Enqueue(ctx context.Context, m Message, with ...gatehouse.OneTimeSecret) error {
	p, err := o.Prepare(m)
	if err != nil {
		return err
	}
	err = o.store.EnqueueMail(ctx, p.Message, with...)
	p.Done(err == nil)
	if err != nil {
		return fmt.Errorf("queue mail: %w", err)
	}
	return nil
}

// Prepared is a message sealed into its outbox row, not yet stored. The
// caller stores Message (EnqueueMail, or inside a transaction of its own,
// such as a sign-up's) and then calls Done exactly once.
type Prepared struct {
	Message gatehouse.OutboxMessage
	o       *Outbox
	handed  bool
}

// Prepare seals m into an outbox row. When this instance's worker has room,
// the row is claimed for it, to be handed over by Done.
func (o *Outbox) Prepare(m Message) (*Prepared, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("mail id: %w", err)
	}
	sealed, err := seal(o.box, id.String(), m)
	if err != nil {
		return nil, err
	}
	now := o.now()
	p := &Prepared{Message: gatehouse.OutboxMessage{ID: id.String(), Sealed: sealed, CreatedAt: now, NextAttemptAt: now}, o: o}
	select {
	case o.slots <- struct{}{}:
		p.handed = true
		p.Message.ClaimedUntil = now.Add(o.lease)
	default: // the worker is behind: leave the message to its claim
	}
	return p, nil
}

// Done tells the outbox whether the row was committed: the worker gets it
// at once (or is woken to claim it), or the reserved hand-off is given back.
func (p *Prepared) Done(committed bool) {
	o := p.o
	switch {
	case !committed:
		if p.handed {
			<-o.slots
		}
	case p.handed:
		o.handoff <- p.Message // never blocks: the slot reserved its place
	default:
		select {
		case o.wake <- struct{}{}:
		default: // a wake is already pending
		}
	}
}

// PrepareTemplate renders template t for recipient to and prepares it
// (Prepare).
func (o *Outbox) PrepareTemplate(t Template, to string, d Data) (*Prepared, error) {
	m, err := o.render(t, to, d)
	if err != nil {
		return nil, err
	}
	return o.Prepare(m)
}

// render renders template t for recipient to with the configured Renderer.
func (o *Outbox) render(t Template, to string, d Data) (Message, error) {
	if o.renderer == nil {
		return Message{}, errors.New("mail: no renderer configured")
	}
	return o.renderer.Render(t, to, d)
}

// EnqueueTemplate renders template t for recipient to with the configured
// Renderer and enqueues the result with the secrets its link or code
// stands for.
func (o *Outbox) EnqueueTemplate(ctx context.Context, t Template, to string, d Data, with ...gatehouse.OneTimeSecret) error {
	m, err := o.render(t, to, d)
	if err != nil {
		return err
	}
	return o.Enqueue(ctx, m, with...)
}

// Renderer is the configured renderer (nil when none).
func (o *Outbox) Renderer() *Renderer { return o.renderer }

// Worker sends queued mail. Run one per instance; several instances (or
// workers) sharing a store never send a message at the same time, because
// each message is claimed with a lease.
type Worker struct {
	c       Config
	box     *sealbox.Box
	wake    chan struct{}
	handoff <-chan gatehouse.OutboxMessage
	slots   <-chan struct{}
	// sent holds ids of messages sent but not yet deleted: deletes are
	// written in batches (flushSent), at the end of each claim round and
	// at shutdown, so a busy sender commits once per round instead of once
	// per message. Until then the claim keeps other instances off them.
	sent []string
}

// maxUnflushed bounds the sent messages awaiting their batched delete.
const maxUnflushed = 64

// Run sends due mail until ctx ends. It logs the sender once at start
// (naming the folder for the file outbox).
func (w *Worker) Run(ctx context.Context) {
	log := w.c.Logger
	switch s := w.c.Sender.(type) {
	case *FileSender:
		log.Info("mail is written to files, not sent (no --smtp-url)", "mail_dir", s.Dir())
	case fmt.Stringer:
		log.Info("mail is sent through SMTP", "server", s.String())
	}
	poll := time.NewTicker(w.c.Poll)
	defer poll.Stop()
	var nextCount time.Time
	storeDown := false
	claim := true
	for {
		if claim {
			now := w.c.Now()
			if !now.Before(nextCount) {
				nextCount = now.Add(w.c.PendingEvery)
				if n, err := w.c.Store.PendingMail(ctx); err == nil {
					w.c.Observer.MailPending(n)
				}
			}
			more, err := w.RunOnce(ctx)
			switch {
			case err != nil && ctx.Err() == nil && !storeDown:
				// Once per outage, not once per poll.
				storeDown = true
				log.Warn("mail outbox unavailable; will keep trying", "err", err)
			case err == nil && storeDown:
				storeDown = false
				log.Info("mail outbox available again")
			}
			if more && err == nil {
				continue // a full batch: there may be more due now
			}
		}
		claim = true
		select {
		case <-ctx.Done():
			w.releaseHandedOff(ctx)
			w.flushSent(ctx)
			return
		case om := <-w.handoff:
			// Claimed at enqueue: no need to look at the store after it
			// (that costs a write on SQLite); the poll still does.
			w.deliverHandedOff(ctx, om)
			claim = false
		case <-poll.C:
		case <-w.wake:
		}
	}
}

// deliverHandedOff sends a message that Enqueue stored claimed for this
// worker, unless its claim could run out during the send (the worker was
// held up): then it is left for a claim once the lease ends.
func (w *Worker) deliverHandedOff(ctx context.Context, om gatehouse.OutboxMessage) {
	<-w.slots
	w.yield(ctx, om)
	if ctx.Err() != nil {
		w.release(ctx, []gatehouse.OutboxMessage{om})
		return
	}
	if w.c.Now().Add(w.c.SendTimeout + time.Second).After(om.ClaimedUntil) {
		return
	}
	w.deliver(ctx, om)
}

// yieldPoll is how often a held-back message looks again whether the
// instance is still busy: short next to a sign-in, long next to the check.
const yieldPoll = 2 * time.Millisecond

// yield waits while the instance is busy (Config.Busy), until om has waited
// YieldFor since it was queued or ctx ends. Mail claimed from the store
// after a retry, or from another instance, is past that already and goes at
// once.
func (w *Worker) yield(ctx context.Context, om gatehouse.OutboxMessage) {
	if w.c.Busy == nil {
		return
	}
	deadline := om.CreatedAt.Add(w.c.YieldFor)
	var t *time.Timer
	for w.c.Busy() {
		left := deadline.Sub(w.c.Now())
		if left <= 0 {
			return
		}
		if t == nil {
			t = time.NewTimer(min(left, yieldPoll))
			defer t.Stop()
		} else {
			t.Reset(min(left, yieldPoll))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// releaseHandedOff hands back, at shutdown, messages that were queued
// claimed for this worker but not yet sent, so that another instance or
// the next start sends them at once rather than after the lease.
func (w *Worker) releaseHandedOff(ctx context.Context) {
	var left []gatehouse.OutboxMessage
	for {
		select {
		case om := <-w.handoff:
			<-w.slots
			left = append(left, om)
		default:
			if len(left) > 0 {
				w.release(ctx, left)
			}
			return
		}
	}
}

// RunOnce sends what Enqueue handed over, then claims one batch of due
// messages and tries each. more reports a
// full batch (more may be due). The error is the store's claim error.
func (w *Worker) RunOnce(ctx context.Context) (more bool, err error) {
	if ctx.Err() != nil {
		return false, nil
	}
	for handed := true; handed; {
		select {
		case om := <-w.handoff:
			w.deliverHandedOff(ctx, om)
		default:
			handed = false
		}
	}
	// The deletes of what was sent since the last round, in one write.
	w.flushSent(ctx)
	claimedAt := w.c.Now()
	// The claim is not tied to ctx: a claim committed by the database but
	// reported as canceled (shutdown racing the query) would hold its
	// messages for a whole lease with no one to send them.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.c.SendTimeout)
	batch, err := w.c.Store.ClaimMail(cctx, claimedAt, w.c.Lease, w.c.Batch)
	cancel()
	if err != nil {
		return false, fmt.Errorf("claim mail: %w", err)
	}
	leaseEnd := claimedAt.Add(w.c.Lease)
	for i, om := range batch {
		w.yield(ctx, om)
		if ctx.Err() != nil {
			w.release(ctx, batch[i:])
			return false, nil
		}
		// Never start a send that could outlive the claim: another
		// instance may take the message once the lease ends. Leaving it
		// unsent costs a delay, sending it twice would not be undone.
		if w.c.Now().Add(w.c.SendTimeout + time.Second).After(leaseEnd) {
			return false, nil
		}
		w.deliver(ctx, om)
	}
	w.flushSent(ctx)
	return len(batch) == w.c.Batch, nil
}

// flushSent deletes the messages sent since the last flush. A failure
// leaves them to their lease: they are sent again (at least once).
func (w *Worker) flushSent(ctx context.Context) {
	if len(w.sent) == 0 {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.c.SendTimeout)
	defer cancel()
	if err := w.c.Store.DeleteMail(dctx, w.sent...); err != nil {
		w.c.Logger.Warn("mail sent but not removed from the outbox; it may be sent again", "messages", len(w.sent), "err", err)
	}
	w.sent = w.sent[:0]
}

// deliver makes one attempt at om and records the outcome in the store.
func (w *Worker) deliver(ctx context.Context, om gatehouse.OutboxMessage) {
	log := w.c.Logger.With("mail_id", om.ID)
	m, err := unseal(w.box, om.ID, om.Sealed)
	if err != nil {
		// It will never open: retrying only delays the same answer.
		w.giveUp(ctx, om, "", err)
		return
	}
	log = log.With("recipient_domain", recipientDomain(m.To))
	sctx, cancel := context.WithTimeout(ctx, w.c.SendTimeout)
	err = w.c.Sender.Send(sctx, m)
	cancel()
	if err == nil {
		w.c.Observer.MailSent()
		w.sent = append(w.sent, om.ID)
		if len(w.sent) >= maxUnflushed {
			w.flushSent(ctx)
		}
		return
	}
	if ctx.Err() != nil {
		// Shutting down mid-send: hand the message back at once rather
		// than leaving it to the lease (minutes), so a restart or another
		// instance sends it right away.
		w.release(ctx, []gatehouse.OutboxMessage{om})
		return
	}
	w.c.Observer.MailFailed()
	failed := om.Attempts + 1
	now := w.c.Now()
	if failed >= w.c.MaxAttempts || now.Sub(om.CreatedAt) >= w.c.MaxAge || errors.Is(err, ErrInvalidMessage) {
		w.giveUp(ctx, om, m.To, err)
		return
	}
	next := now.Add(w.backoff(failed))
	log.Warn("mail not sent; will retry", "attempt", failed, "retry_at", next, "err", err)
	if rerr := w.c.Store.RetryMail(context.WithoutCancel(ctx), om.ID, next); rerr != nil && !errors.Is(rerr, gatehouse.ErrNotFound) {
		log.Warn("mail retry not recorded; it is tried again when its lease ends", "err", rerr)
	}
}

// release hands claimed messages back, due now, when shutting down. The
// store counts it as an attempt, which only brings the give-up bound
// closer by one per interrupted shutdown.
func (w *Worker) release(ctx context.Context, batch []gatehouse.OutboxMessage) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	for _, om := range batch {
		if err := w.c.Store.RetryMail(ctx, om.ID, w.c.Now()); err != nil && !errors.Is(err, gatehouse.ErrNotFound) {
			w.c.Logger.Warn("mail not handed back on shutdown; it is sent when its lease ends", "mail_id", om.ID, "err", err)
		}
	}
}

func (w *Worker) giveUp(ctx context.Context, om gatehouse.OutboxMessage, to string, cause error) {
	w.c.Observer.MailGaveUp()
	attrs := []any{"mail_id", om.ID, "attempts", om.Attempts + 1, "queued_at", om.CreatedAt, "err", cause}
	if to != "" {
		attrs = append(attrs, "recipient_domain", recipientDomain(to))
	}
	w.c.Logger.Error("mail given up, not delivered", attrs...)
	if err := w.c.Store.DeleteMail(context.WithoutCancel(ctx), om.ID); err != nil {
		w.c.Logger.Warn("mail given up but not removed from the outbox", "mail_id", om.ID, "err", err)
	}
}

// backoff is the delay after the n-th failed attempt: MinBackoff doubling
// to MaxBackoff, each within ±20% so that messages failed together (a
// server outage) do not all come back at the same instant.
func (w *Worker) backoff(n int) time.Duration {
	d := w.c.MinBackoff
	for i := 1; i < n && d < w.c.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, w.c.MaxBackoff)
	return time.Duration(float64(d) * (0.8 + 0.4*mathrand.Float64()))
}
