package revoke

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse"
)

func apiKeyRev(id string, at time.Time) gatehouse.Revocation {
	return gatehouse.Revocation{Kind: gatehouse.RevokeAPIKey, Subject: id, At: at, ExpiresAt: at.Add(15 * time.Minute)}
}

// TestAPIKeySet: a revoked API key is refused by CheckAPIKey, through
// Record, the initial load and the poll alike, and only that key; its
// entry goes once expired; stale state fails closed like Check.
func TestAPIKeySet(t *testing.T) {
	c := newClock()
	log := &fakeLog{}
	now := c.Now()
	log.add(apiKeyRev("loaded", now))
	r := started(t, log, nil, Config{Now: c.Now, PollInterval: time.Hour, StaleAfter: time.Hour})

	if err := r.CheckAPIKey("k1"); err != nil {
		t.Fatalf("nothing revoked, yet %v", err)
	}
	if err := r.CheckAPIKey("loaded"); !errors.Is(err, ErrRevoked) {
		t.Errorf("key revoked in the log at start: %v", err)
	}
	r.Record(context.Background(), apiKeyRev("k1", now))
	if err := r.CheckAPIKey("k1"); !errors.Is(err, ErrRevoked) {
		t.Errorf("recorded key: %v", err)
	}
	if err := r.CheckAPIKey("k2"); err != nil {
		t.Errorf("another key: %v", err)
	}
	// A key id is not a session id: the sets are apart.
	if err := r.Check("k1", "u", now); err != nil {
		t.Errorf("a session named like the revoked key: %v", err)
	}
	log.add(apiKeyRev("polled", now))
	if err := r.poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.CheckAPIKey("polled"); !errors.Is(err, ErrRevoked) {
		t.Errorf("key revoked in the log later: %v", err)
	}
	c.Advance(16 * time.Minute)
	r.pruneMemory(c.Now())
	if err := r.CheckAPIKey("k1"); err != nil {
		t.Errorf("expired entry still held: %v", err)
	}
	c.Advance(2 * time.Hour)
	if err := r.CheckAPIKey("k3"); !errors.Is(err, gatehouse.ErrUnavailable) {
		t.Errorf("stale state: %v, want ErrUnavailable", err)
	}
}

// TestRedisBusCarriesAPIKeys: the wire format accepts the api_key kind (a
// bus that dropped it would leave other instances waiting for the poll).
func TestRedisBusCarriesAPIKeys(t *testing.T) {
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = client.Close() })
	bus := NewRedisBus(client, "c")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan gatehouse.Revocation, 1)
	subscribed := make(chan struct{}, 4)
	go func() {
		_ = bus.Subscribe(ctx, func(r gatehouse.Revocation) { got <- r }, func() { subscribed <- struct{}{} })
	}()
	<-subscribed
	want := apiKeyRev("key1", time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	if err := bus.Publish(ctx, want); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r != want {
			t.Fatalf("got %+v, want %+v", r, want)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("api_key revocation not delivered")
	}
}
