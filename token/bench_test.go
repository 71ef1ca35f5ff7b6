package token

import (
	"context"
	"testing"
)

func benchVerify(b *testing.B, alg string) {
	k := newTestKeys(b, alg, nil)
	tok := mustSign(b, k, testClaims())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Verify(ctx, tok, t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyEdDSA(b *testing.B) { benchVerify(b, AlgEdDSA) }
func BenchmarkVerifyES256(b *testing.B) { benchVerify(b, AlgES256) }
func BenchmarkVerifyHS256(b *testing.B) { benchVerify(b, AlgHS256) }

// BenchmarkVerifyEdDSAParallel is the hot path as a server runs it: every
// core verifying at once against the shared key set.
func BenchmarkVerifyEdDSAParallel(b *testing.B) {
	k := newTestKeys(b, AlgEdDSA, nil)
	tok := mustSign(b, k, testClaims())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := k.Verify(context.Background(), tok, t0); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkVerifyRejectBadSignature is what a flood of forged tokens costs.
func BenchmarkVerifyRejectBadSignature(b *testing.B) {
	k := newTestKeys(b, AlgEdDSA, nil)
	tok := mustSign(b, k, testClaims())
	bad := badSignature(tok)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Verify(context.Background(), bad, t0); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkSign(b *testing.B) {
	for _, alg := range allAlgs {
		b.Run(alg, func(b *testing.B) {
			k := newTestKeys(b, alg, nil)
			c := testClaims()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := k.Sign(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRefreshDecode(b *testing.B) {
	c := newTestCodec(b, 1)
	tok := c.Encode("sess_0123456789abcdef", 42)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.Decode(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRefreshEncode(b *testing.B) {
	c := newTestCodec(b, 1)
	b.ReportAllocs()
	for b.Loop() {
		_ = c.Encode("sess_0123456789abcdef", 42)
	}
}
