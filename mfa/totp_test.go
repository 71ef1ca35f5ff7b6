package mfa

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

// rfc6238 computes a code independently of the library under test.
func rfc6238(t *testing.T, secret string, step int64) string {
	t.Helper()
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	if err != nil {
		t.Fatal(err)
	}
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(step))
	m := hmac.New(sha1.New, key)
	m.Write(msg[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", v%1_000_000)
}

func TestTOTP(t *testing.T) {
	secret, uri, err := NewTOTP("Gatehouse", "ada@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) != 32 || strings.Contains(secret, "=") {
		t.Fatalf("secret %q: want 160 bits in base32 without padding", secret)
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" || u.Query().Get("secret") != secret || u.Query().Get("issuer") != "Gatehouse" {
		t.Fatalf("otpauth URI %q", uri)
	}
	if u.Path != "/Gatehouse:ada@example.com" {
		t.Fatalf("label %q", u.Path)
	}
	now := time.Date(2026, 12, 6, 12, 0, 10, 0, time.UTC)
	cur := Step(now)
	for _, d := range []int64{-1, 0, 1} {
		step, ok := MatchStep(secret, rfc6238(t, secret, cur+d), now)
		if !ok || step != cur+d {
			t.Errorf("code of step %+d: MatchStep = %d, %v; want %d", d, step, ok, cur+d)
		}
	}
	for _, d := range []int64{-2, 2} {
		if _, ok := MatchStep(secret, rfc6238(t, secret, cur+d), now); ok {
			t.Errorf("code two steps away (%+d) accepted", d)
		}
	}
	for _, bad := range []string{"", "12345", "1234567", "abcdef"} {
		if _, ok := MatchStep(secret, bad, now); ok {
			t.Errorf("MatchStep(%q) accepted", bad)
		}
	}
}

func TestRecoveryCodes(t *testing.T) {
	codes := NewRecoveryCodes()
	if len(codes) != RecoveryCodeCount {
		t.Fatalf("%d codes", len(codes))
	}
	seen := map[string]bool{}
	for _, c := range codes {
		if len(c) != 11 || c[5] != '-' || seen[c] {
			t.Fatalf("code %q malformed or repeated", c)
		}
		seen[c] = true
	}
	key := bytes.Repeat([]byte("k"), 32)
	c := codes[0]
	if !bytes.Equal(RecoveryMAC(key, "u1", c), RecoveryMAC(key, "u1", " "+strings.ToUpper(strings.ReplaceAll(c, "-", " ")))) {
		t.Fatal("typing the code in upper case with spaces changes its MAC")
	}
	if bytes.Equal(RecoveryMAC(key, "u1", c), RecoveryMAC(key, "u2", c)) {
		t.Fatal("a recovery code's MAC does not depend on its user")
	}
}
