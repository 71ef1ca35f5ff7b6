package token

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// A cached token is still checked against the clock on every use.
func TestVerifiedCacheKeepsExpiryExact(t *testing.T) {
	k := newTestKeys(t, AlgEdDSA, nil)
	tok := mustSign(t, k, testClaims())
	if _, err := k.Verify(context.Background(), tok, t0); err != nil {
		t.Fatal(err)
	}
	if _, ok := k.set.Load().verified.get(tok); !ok {
		t.Fatal("verified token not cached")
	}
	if _, err := k.Verify(context.Background(), tok, t0.Add(time.Minute)); err != nil {
		t.Fatalf("cached token rejected: %v", err)
	}
	wantInvalid(t, k, tok, t0.Add(testTTL+testLeeway))      // expired
	wantInvalid(t, k, tok, t0.Add(-testLeeway-time.Second)) // issued in the future
}

// Rejected tokens never enter the cache, and a new key-set snapshot
// starts with an empty one.
func TestVerifiedCacheOnlyValidAndPerSnapshot(t *testing.T) {
	k := newTestKeys(t, AlgEdDSA, nil)
	tok := mustSign(t, k, testClaims())
	wantInvalid(t, k, tok, t0.Add(time.Hour))
	if _, ok := k.set.Load().verified.get(tok); ok {
		t.Fatal("expired token cached")
	}
	bad := badSignature(tok)
	wantInvalid(t, k, bad, t0)
	if _, ok := k.set.Load().verified.get(bad); ok {
		t.Fatal("forged token cached")
	}
	if _, err := k.Verify(context.Background(), tok, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Rotate(context.Background(), t0); err != nil {
		t.Fatal(err)
	}
	if _, ok := k.set.Load().verified.get(tok); ok {
		t.Fatal("cache survived a key-set change")
	}
	if _, err := k.Verify(context.Background(), tok, t0); err != nil {
		t.Fatalf("token of the previous key rejected after rotation: %v", err)
	}
}

// The cache stays bounded however many distinct valid tokens arrive.
func TestVerifiedCacheBounded(t *testing.T) {
	c := newVerifiedCache()
	v := &verifiedToken{claims: &parsedClaims{}, key: &slot{}}
	for i := range verifiedShards * verifiedPerShard * 3 {
		c.put(fmt.Sprintf("token-%d", i), v, t0)
	}
	n := 0
	for i := range c.shards {
		if l := len(c.shards[i].m); l > verifiedPerShard {
			t.Fatalf("shard %d holds %d entries", i, l)
		}
		n += len(c.shards[i].m)
	}
	if n == 0 {
		t.Fatal("nothing cached")
	}
}

// BenchmarkVerifyEdDSAUncached is a token's first verification (the
// signature check); BenchmarkVerifyEdDSA measures the repeat, which the
// verified cache answers.
func BenchmarkVerifyEdDSAUncached(b *testing.B) {
	k := newTestKeys(b, AlgEdDSA, nil)
	s := *k.set.Load()
	s.verified = nil // a nil cache never hits
	k.set.Store(&s)
	tok := mustSign(b, k, testClaims())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Verify(context.Background(), tok, t0); err != nil {
			b.Fatal(err)
		}
	}
}
