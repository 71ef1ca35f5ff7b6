package sealbox

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealOpen(t *testing.T) {
	b, err := New(bytes.Repeat([]byte("k"), 32))
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("JBSWY3DPEHPK3PXP-secret")
	s1, s2 := b.Seal([]byte("user-1"), secret), b.Seal([]byte("user-1"), secret)
	if bytes.Equal(s1, s2) {
		t.Fatal("two seals of one value are equal: the nonce does not vary")
	}
	if bytes.Contains(s1, secret) {
		t.Fatal("the sealed value contains the plaintext")
	}
	got, err := b.Open([]byte("user-1"), s1)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	other, _ := New(bytes.Repeat([]byte("j"), 32))
	tampered := bytes.Clone(s1)
	tampered[len(tampered)-1] ^= 1
	for name, try := range map[string]func() ([]byte, error){
		"another owner": func() ([]byte, error) { return b.Open([]byte("user-2"), s1) },
		"another key":   func() ([]byte, error) { return other.Open([]byte("user-1"), s1) },
		"tampered":      func() ([]byte, error) { return b.Open([]byte("user-1"), tampered) },
		"truncated":     func() ([]byte, error) { return b.Open([]byte("user-1"), s1[:10]) },
		"empty":         func() ([]byte, error) { return b.Open([]byte("user-1"), nil) },
	} {
		if _, err := try(); !errors.Is(err, ErrOpen) {
			t.Errorf("%s: err = %v, want ErrOpen", name, err)
		}
	}
	if _, err := New([]byte("short")); err == nil {
		t.Error("New accepted a short key")
	}
}
