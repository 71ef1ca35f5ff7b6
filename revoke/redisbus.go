package revoke

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/redis/go-redis/v9"
)

// Timing of the subscription's own health check. A connection that dies
// cleanly (Redis restarted, CLIENT KILL) fails the read at once; one that
// silently stops (a network partition) is noticed when a ping gets no answer
// within another healthCheckEvery, and replaced.
const (
	healthCheckEvery = 5 * time.Second
	minReceiveDelay  = 20 * time.Millisecond
	maxReceiveDelay  = time.Second
)

// RedisBus is a Bus on Redis pub/sub. One RedisBus serves one Subscribe at
// a time (Subscribed reports on it); Publish and Ping may be used freely.
//
// Anyone who can publish on the channel can revoke sessions (never restore
// them): Redis must be as trusted as the database.
type RedisBus struct {
	client     *redis.Client
	channel    string
	subscribed atomic.Bool
}

var (
	_ Bus                  = (*RedisBus)(nil)
	_ subscriptionReporter = (*RedisBus)(nil)
)

// NewRedisBus returns a Bus publishing and subscribing on channel.
func NewRedisBus(client *redis.Client, channel string) *RedisBus {
	return &RedisBus{client: client, channel: channel}
}

// wireRevocation is the compact JSON form of a Revocation on the channel.
// Times are Unix nanoseconds: exact, and shorter than RFC 3339.
type wireRevocation struct {
	Kind      gatehouse.RevocationKind `json:"k"`
	Subject   string                   `json:"s"`
	At        int64                    `json:"a"`
	ExpiresAt int64                    `json:"e"`
}

func encodeRevocation(r gatehouse.Revocation) ([]byte, error) {
	return json.Marshal(wireRevocation{
		Kind:      r.Kind,
		Subject:   r.Subject,
		At:        r.At.UnixNano(),
		ExpiresAt: r.ExpiresAt.UnixNano(),
	})
}

func decodeRevocation(b []byte) (gatehouse.Revocation, error) {
	var w wireRevocation
	if err := json.Unmarshal(b, &w); err != nil {
		return gatehouse.Revocation{}, fmt.Errorf("decode revocation: %w", err)
	}
	switch w.Kind {
	case gatehouse.RevokeSession, gatehouse.RevokeUserBefore, gatehouse.RevokeToken, gatehouse.RevokeAPIKey:
	default:
		w.Subject = "" // not an entry this version writes: junk
	}
	if w.Subject == "" {
		return gatehouse.Revocation{}, fmt.Errorf("decode revocation: kind %q, subject %q", w.Kind, w.Subject)
	}
	return gatehouse.Revocation{
		Kind:      w.Kind,
		Subject:   w.Subject,
		At:        time.Unix(0, w.At).UTC(),
		ExpiresAt: time.Unix(0, w.ExpiresAt).UTC(),
	}, nil
}

// Publish implements Bus.
func (b *RedisBus) Publish(ctx context.Context, r gatehouse.Revocation) error {
	msg, err := encodeRevocation(r)
	if err != nil {
		return fmt.Errorf("publish revocation: %w", err)
	}
	if err := b.client.Publish(ctx, b.channel, msg).Err(); err != nil {
		return fmt.Errorf("publish revocation on %q: %w", b.channel, err)
	}
	return nil
}

// Ping implements Bus.
func (b *RedisBus) Ping(ctx context.Context) error {
	if err := b.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// Subscribed reports whether the subscription is live: confirmed by Redis
// and not failed since.
func (b *RedisBus) Subscribed() bool { return b.subscribed.Load() }

// Subscribe implements Bus. It keeps the subscription up through Redis
// restarts and dropped connections (go-redis reconnects and resubscribes;
// each confirmation calls onSubscribed) and returns ctx.Err() when ctx ends.
// Messages that do not decode are dropped: they cannot be genuine entries,
// and the log poll delivers every genuine one anyway.
func (b *RedisBus) Subscribe(ctx context.Context, deliver func(gatehouse.Revocation), onSubscribed func()) error {
	defer b.subscribed.Store(false)
	for {
		_ = b.subscribeOnce(ctx, deliver, onSubscribed) // a dead connection: start afresh
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// subscribeOnce runs one PubSub until ctx ends or its connection stops
// answering pings.
func (b *RedisBus) subscribeOnce(ctx context.Context, deliver func(gatehouse.Revocation), onSubscribed func()) error {
	ps := b.client.Subscribe(ctx, b.channel)
	defer ps.Close()
	// Receive does not watch ctx while it waits for a message; closing the
	// PubSub is what ends the wait.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()

	delay := minReceiveDelay
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, healthCheckEvery)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			if isTimeout(err) {
				if pinged {
					b.subscribed.Store(false)
					return fmt.Errorf("subscription on %q: no answer to ping within %s", b.channel, healthCheckEvery)
				}
				// A ping that fails to write marks the connection bad, and
				// go-redis reconnects on the next receive.
				_ = ps.Ping(ctx)
				pinged = true
				continue
			}
			// Connection lost (go-redis has already started reconnecting)
			// or Redis unreachable. Retry with backoff rather than spin.
			b.subscribed.Store(false)
			pinged = false
			if !sleep(ctx, delay) {
				return ctx.Err()
			}
			delay = min(2*delay, maxReceiveDelay)
			continue
		}
		pinged = false
		delay = minReceiveDelay
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == b.channel {
				b.subscribed.Store(true)
				onSubscribed()
			}
		case *redis.Message:
			if rev, err := decodeRevocation([]byte(m.Payload)); err == nil {
				deliver(rev)
			}
		case *redis.Pong:
			// The answer to our health-check ping: the connection is alive.
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// sleep waits for d or until ctx ends, reporting whether it waited fully.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
