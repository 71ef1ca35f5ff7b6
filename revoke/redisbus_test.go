package revoke

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gatehouse/gatehouse"
	"github.com/redis/go-redis/v9"
)

// redisOptions reads GATEHOUSE_TEST_REDIS_URL. Without it the test is
// skipped locally and fails in CI, so a green CI means Redis was exercised;
// an unreachable Redis fails in CI too.
func redisOptions(t *testing.T) *redis.Options {
	t.Helper()
	url := os.Getenv("GATEHOUSE_TEST_REDIS_URL")
	ci := os.Getenv("CI") == "true"
	if url == "" {
		if ci {
			t.Fatal("GATEHOUSE_TEST_REDIS_URL is not set and CI=true")
		}
		t.Skip("GATEHOUSE_TEST_REDIS_URL is not set")
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("GATEHOUSE_TEST_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		if ci {
			t.Fatalf("redis at GATEHOUSE_TEST_REDIS_URL unreachable: %v", err)
		}
		t.Skipf("redis at GATEHOUSE_TEST_REDIS_URL unreachable: %v", err)
	}
	return opt
}

// newClient returns a client on opt named name (so a test can find its
// connections in CLIENT LIST), closed at the end of the test.
func newClient(t *testing.T, opt *redis.Options, name string) *redis.Client {
	o := *opt
	o.ClientName = name
	c := redis.NewClient(&o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// unique gives each test its own channel and client names on a Redis that
// others share; nothing is ever flushed.
func unique(t *testing.T, what string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "gatehouse-test-" + what + "-" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + hex.EncodeToString(b[:])
}

// countingBus counts (re)subscriptions seen by the Revoker.
type countingBus struct {
	*RedisBus
	subscriptions atomic.Int64
}

func (b *countingBus) Subscribe(ctx context.Context, deliver func(gatehouse.Revocation), onSubscribed func()) error {
	return b.RedisBus.Subscribe(ctx, deliver, func() {
		b.subscriptions.Add(1)
		onSubscribed()
	})
}

func TestRedisBusDeliversAcrossInstances(t *testing.T) {
	opt := redisOptions(t)
	channel := unique(t, "chan")
	log := &fakeLog{}
	// An hour between polls: only the bus can deliver within the test.
	cfg := Config{PollInterval: time.Hour, StaleAfter: 2 * time.Hour}
	a := started(t, log, NewRedisBus(newClient(t, opt, unique(t, "a")), channel), cfg)
	b := started(t, log, NewRedisBus(newClient(t, opt, unique(t, "b")), channel), cfg)
	eventually(t, 3*time.Second, "both ready", func() bool { return a.Ready() == nil && b.Ready() == nil })
	reads := log.readCount()

	now := time.Now()
	a.Record(context.Background(), sessionRev("sess-1", now)) // not in the log: the bus must carry it
	took := eventually(t, time.Second, "B sees A's session revocation", func() bool {
		return errors.Is(b.Check("sess-1", "u", now), ErrRevoked)
	})
	t.Logf("session revocation crossed instances in %s", took)

	before := now.Truncate(time.Second)
	a.Record(context.Background(), userRev("user-1", before))
	eventually(t, time.Second, "B sees A's user revocation", func() bool {
		return errors.Is(b.Check("other", "user-1", before.Add(-time.Second)), ErrRevoked)
	})
	if err := b.Check("other", "user-1", before); err != nil {
		t.Fatalf("token issued at the instant rejected: %v", err)
	}
	if got := log.readCount(); got != reads {
		t.Fatalf("the log was read %d more times; the bus alone should have delivered", got-reads)
	}
}

func TestRedisResyncFromLog(t *testing.T) {
	opt := redisOptions(t)
	log := &fakeLog{}
	b := started(t, log, NewRedisBus(newClient(t, opt, unique(t, "b")), unique(t, "chan")),
		Config{PollInterval: 100 * time.Millisecond})
	eventually(t, 3*time.Second, "ready", func() bool { return b.Ready() == nil })
	// Written to the store by another instance whose publish was lost.
	log.add(sessionRev("only-in-log", time.Now()), userRev("u-log", time.Now()))
	eventually(t, time.Second, "entries read from the log", func() bool {
		return errors.Is(b.Check("only-in-log", "x", time.Now()), ErrRevoked) &&
			errors.Is(b.Check("y", "u-log", time.Now().Add(-time.Minute)), ErrRevoked)
	})
}

// pubsubClientID finds the id of the pub/sub connection named name.
func pubsubClientID(t *testing.T, admin *redis.Client, name string) string {
	t.Helper()
	var id string
	eventually(t, 3*time.Second, "pubsub connection "+name+" listed", func() bool {
		list, err := admin.ClientList(context.Background()).Result()
		if err != nil {
			t.Fatalf("CLIENT LIST: %v", err)
		}
		for _, line := range strings.Split(list, "\n") {
			if !strings.Contains(line, " name="+name+" ") || !strings.Contains(line, " sub=1 ") {
				continue
			}
			for _, f := range strings.Fields(line) {
				if v, ok := strings.CutPrefix(f, "id="); ok {
					id = v
					return true
				}
			}
		}
		return false
	})
	return id
}

func TestRedisReconnectAfterKill(t *testing.T) {
	opt := redisOptions(t)
	channel := unique(t, "chan")
	log := &fakeLog{}
	admin := newClient(t, opt, unique(t, "admin"))
	cfg := Config{PollInterval: time.Hour, StaleAfter: 2 * time.Hour}
	a := started(t, log, NewRedisBus(newClient(t, opt, unique(t, "a")), channel), cfg)
	bName := unique(t, "b")
	bBus := &countingBus{RedisBus: NewRedisBus(newClient(t, opt, bName), channel)}
	b := started(t, log, bBus, cfg)
	eventually(t, 3*time.Second, "both ready", func() bool { return a.Ready() == nil && b.Ready() == nil })
	if n := bBus.subscriptions.Load(); n != 1 {
		t.Fatalf("%d subscriptions before the kill, want 1", n)
	}

	// Published while B's subscription is down it would be lost; it is in
	// the log, and the resync after resubscribing must find it.
	log.add(sessionRev("while-down", time.Now()))

	// CLIENT KILL TYPE pubsub, narrowed to B's connection by ID so that
	// other users of this shared Redis keep theirs.
	id := pubsubClientID(t, admin, bName)
	killed, err := admin.Do(context.Background(), "CLIENT", "KILL", "TYPE", "pubsub", "ID", id).Int()
	if err != nil || killed != 1 {
		t.Fatalf("CLIENT KILL TYPE pubsub ID %s: %d, %v", id, killed, err)
	}
	eventually(t, 5*time.Second, "B resubscribed", func() bool { return bBus.subscriptions.Load() >= 2 })
	eventually(t, 2*time.Second, "resync found the entry", func() bool {
		return errors.Is(b.Check("while-down", "u", time.Now()), ErrRevoked)
	})
	eventually(t, 2*time.Second, "B ready again", func() bool { return b.Ready() == nil })

	// Delivery works on the new subscription.
	a.Record(context.Background(), sessionRev("after-kill", time.Now()))
	eventually(t, time.Second, "delivery after reconnect", func() bool {
		return errors.Is(b.Check("after-kill", "u", time.Now()), ErrRevoked)
	})
}

func TestRedisBusSubscribeReturnsOnCancel(t *testing.T) {
	opt := redisOptions(t)
	bus := NewRedisBus(newClient(t, opt, unique(t, "c")), unique(t, "chan"))
	ctx, cancel := context.WithCancel(context.Background())
	var subs atomic.Int64
	done := make(chan error, 1)
	go func() { done <- bus.Subscribe(ctx, func(gatehouse.Revocation) {}, func() { subs.Add(1) }) }()
	eventually(t, 3*time.Second, "subscribed", func() bool { return subs.Load() == 1 && bus.Subscribed() })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Subscribe returned %v, want context.Canceled", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Subscribe did not return after cancel")
	}
	if bus.Subscribed() {
		t.Fatal("Subscribed after Subscribe returned")
	}
}

// TestRedisServerRestart stops and restarts a private redis-server (the
// shared one must not be touched) and checks that the subscription comes
// back by itself, Ready reports Redis meanwhile, and nothing is lost.
func TestRedisServerRestart(t *testing.T) {
	redisOptions(t) // same skip/fail rules as the other real-Redis tests
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server binary not found; the restart test needs its own server")
	}
	port := freePort(t)
	startServer := func() *exec.Cmd {
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", t.TempDir())
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting redis-server: %v", err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	srv := startServer()
	opt := &redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), DialTimeout: 200 * time.Millisecond}
	probe := newClient(t, opt, "probe")
	eventually(t, 5*time.Second, "private redis up", func() bool { return probe.Ping(context.Background()).Err() == nil })

	channel := unique(t, "chan")
	log := &fakeLog{}
	cfg := Config{PollInterval: 200 * time.Millisecond}
	a := started(t, log, NewRedisBus(newClient(t, opt, "a"), channel), cfg)
	bBus := &countingBus{RedisBus: NewRedisBus(newClient(t, opt, "b"), channel)}
	b := started(t, log, bBus, cfg)
	eventually(t, 3*time.Second, "both ready", func() bool { return a.Ready() == nil && b.Ready() == nil })

	_ = srv.Process.Kill()
	_ = srv.Wait()
	eventually(t, 3*time.Second, "Ready names redis", func() bool {
		err := b.Ready()
		return err != nil && strings.HasPrefix(err.Error(), "redis:")
	})
	// Redis down, database up: revocations still travel through the log
	// and Check keeps answering (not stale).
	now := time.Now()
	rev := sessionRev("during-outage", now)
	log.add(rev)
	a.Record(context.Background(), rev)
	eventually(t, 2*time.Second, "revocation via the log during the outage", func() bool {
		return errors.Is(b.Check("during-outage", "u", time.Now()), ErrRevoked)
	})
	if err := b.Check("live", "u", time.Now()); err != nil {
		t.Fatalf("Check with Redis down but the log fresh: %v", err)
	}

	startServer()
	eventually(t, 10*time.Second, "B resubscribed after restart", func() bool { return bBus.subscriptions.Load() >= 2 })
	eventually(t, 5*time.Second, "both ready after restart", func() bool { return a.Ready() == nil && b.Ready() == nil })
	if err := b.Check("during-outage", "u", time.Now()); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revocation came back after the Redis restart: %v", err)
	}
	a.Record(context.Background(), sessionRev("after-restart", time.Now())) // bus only
	eventually(t, time.Second, "bus delivery after restart", func() bool {
		return errors.Is(b.Check("after-restart", "u", time.Now()), ErrRevoked)
	})
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestRedisBusWireFormat runs on miniredis (no real Redis needed) and checks
// the encoding round-trips and that junk on the channel is dropped.
func TestRedisBusWireFormat(t *testing.T) {
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = client.Close() })
	bus := NewRedisBus(client, "c")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan gatehouse.Revocation, 4)
	subscribed := make(chan struct{}, 4)
	go func() {
		_ = bus.Subscribe(ctx, func(r gatehouse.Revocation) { got <- r }, func() { subscribed <- struct{}{} })
	}()
	<-subscribed

	mr.Publish("c", "not json")
	mr.Publish("c", `{"k":"jti","s":"x","a":1,"e":2}`)
	mr.Publish("c", `{"k":"session","s":"","a":1,"e":2}`)
	want := gatehouse.Revocation{
		Kind: gatehouse.RevokeUserBefore, Subject: "u1",
		At:        time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.UTC),
		ExpiresAt: time.Date(2030, 1, 2, 3, 19, 5, 0, time.UTC),
	}
	if err := bus.Publish(ctx, want); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r != want {
			t.Fatalf("got %+v, want %+v", r, want)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("nothing delivered")
	}
	// API key revocations travel the bus too (every instance drops the key
	// at once, not at its next poll).
	key := gatehouse.Revocation{Kind: gatehouse.RevokeAPIKey, Subject: "k1", At: want.At, ExpiresAt: want.ExpiresAt}
	if err := bus.Publish(ctx, key); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r != key {
			t.Fatalf("got %+v, want %+v", r, key)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("api_key revocation not delivered")
	}
	select {
	case r := <-got:
		t.Fatalf("junk delivered: %+v", r)
	case <-time.After(50 * time.Millisecond):
	}
	b, _ := encodeRevocation(want)
	if len(b) > 80 {
		t.Errorf("encoding is %d bytes: %s", len(b), b)
	}
}
