package revoke

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
)

func tokenRev(jti string, at time.Time) gatehouse.Revocation {
	return gatehouse.Revocation{Kind: gatehouse.RevokeToken, Subject: jti, At: at, ExpiresAt: at.Add(time.Minute)}
}

// TestTokenSet: a jti revocation rejects that token only, whether it was
// recorded here, loaded at start or polled from the log, and is dropped
// once it has expired.
func TestTokenSet(t *testing.T) {
	c := newClock()
	log := &fakeLog{}
	now := c.Now()
	log.add(tokenRev("loaded", now))
	r := started(t, log, nil, Config{Now: c.Now, PollInterval: time.Hour, StaleAfter: time.Hour})

	if err := r.CheckToken("j1"); err != nil {
		t.Fatalf("nothing revoked, yet %v", err)
	}
	if err := r.CheckToken("loaded"); !errors.Is(err, ErrRevoked) {
		t.Errorf("token revoked in the log at start: %v", err)
	}
	r.Record(context.Background(), tokenRev("j1", now))
	if err := r.CheckToken("j1"); !errors.Is(err, ErrRevoked) {
		t.Errorf("recorded token: %v", err)
	}
	if err := r.CheckToken("j2"); err != nil {
		t.Errorf("another token: %v", err)
	}
	if err := r.Check("j1", "u", now); err != nil {
		t.Errorf("a session named like the revoked jti: %v", err)
	}
	log.add(tokenRev("polled", now))
	if err := r.poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.CheckToken("polled"); !errors.Is(err, ErrRevoked) {
		t.Errorf("token revoked in the log later: %v", err)
	}
	r.pruneMemory(now.Add(2 * time.Minute))
	if err := r.CheckToken("j1"); err != nil {
		t.Errorf("expired entry still rejects: %v", err)
	}
}
