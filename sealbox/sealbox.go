// Package sealbox encrypts small secrets that Gatehouse must keep but never
// store readable (authenticator-app secrets): AES-256-GCM under a key
// derived from the master secret for one purpose, a random nonce per seal,
// and associated data that binds each sealed value to its owner, so that a
// value copied to another row does not open.
package sealbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// version prefixes every sealed value so the format can change.
const version = 1

// ErrOpen means a sealed value did not open: another key, another owner, or
// tampering.
var ErrOpen = errors.New("sealbox: cannot open")

// Box seals and opens values under one key. It is safe for concurrent use.
type Box struct {
	aead cipher.AEAD
}

// New returns a Box for a 32-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("sealbox: key must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("sealbox: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("sealbox: %w", err)
	}
	return &Box{aead: aead}, nil
}

// Seal encrypts plaintext bound to aad.
func (b *Box) Seal(aad, plaintext []byte) []byte {
	out := make([]byte, 1+b.aead.NonceSize(), 1+b.aead.NonceSize()+len(plaintext)+b.aead.Overhead())
	out[0] = version
	rand.Read(out[1:]) // never fails (Go 1.24+)
	return b.aead.Seal(out, out[1:], plaintext, aad)
}

// Open decrypts a value sealed with the same key and aad.
func (b *Box) Open(aad, sealed []byte) ([]byte, error) {
	n := b.aead.NonceSize()
	if len(sealed) < 1+n+b.aead.Overhead() || sealed[0] != version {
		return nil, ErrOpen
	}
	pt, err := b.aead.Open(nil, sealed[1:1+n], sealed[1+n:], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}
