package mfa_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/gatehouse/gatehouse/mfa"
)

// BenchmarkMatchStep is one TOTP verification as the service does it: a
// valid code of the current step, with all three candidate steps (current
// and one either side) computed and compared.
func BenchmarkMatchStep(b *testing.B) {
	secret, _, err := mfa.NewTOTP("Gatehouse", "ada@example.com")
	if err != nil {
		b.Fatal(err)
	}
	now := time.Date(2026, 12, 6, 12, 0, 10, 0, time.UTC)
	code, err := totp.GenerateCodeCustom(secret, now, totp.ValidateOpts{
		Period: mfa.Period, Digits: mfa.Digits, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		b.Fatal(err)
	}
	want := mfa.Step(now)
	b.ReportAllocs()
	for b.Loop() {
		step, ok := mfa.MatchStep(secret, code, now)
		if !ok || step != want {
			b.Fatalf("MatchStep = %d, %v; want %d, true", step, ok, want)
		}
	}
}

// BenchmarkHMACSHA1 is the raw primitive under a TOTP code: one HMAC-SHA1
// of an 8-byte counter under a 20-byte key.
func BenchmarkHMACSHA1(b *testing.B) {
	key := bytes.Repeat([]byte{0x5a}, mfa.SecretSize)
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(mfa.Step(time.Date(2026, 12, 6, 12, 0, 10, 0, time.UTC))))
	var sum []byte
	b.ReportAllocs()
	for b.Loop() {
		m := hmac.New(sha1.New, key)
		m.Write(msg[:])
		sum = m.Sum(sum[:0])
	}
	if len(sum) != sha1.Size {
		b.Fatalf("HMAC-SHA1 of %d bytes", len(sum))
	}
}

// BenchmarkRecoveryMAC is the MAC of one recovery code as stored and as
// checked at sign-in (HMAC-SHA256 over user id and normalized code).
func BenchmarkRecoveryMAC(b *testing.B) {
	key := bytes.Repeat([]byte("k"), 32)
	code := mfa.NewRecoveryCodes()[0]
	var sum []byte
	b.ReportAllocs()
	for b.Loop() {
		sum = mfa.RecoveryMAC(key, "0193f7a2-5c1e-7b4d-9a3f-2e8c6d1b0a9f", code)
	}
	if len(sum) != 32 {
		b.Fatalf("recovery MAC of %d bytes", len(sum))
	}
}
