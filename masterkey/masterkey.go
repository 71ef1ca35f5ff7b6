// Package masterkey loads the master secret that keys refresh-token MACs, the
// CSRF HMAC and the sealing of signing keys, and derives one independent
// subkey per purpose from it so that no two mechanisms ever share a key.
package masterkey

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// MinLen is the shortest master secret accepted, in bytes.
const MinLen = 32

// Purposes for Derive. Changing one invalidates every token or sealed key
// made under it, so they are fixed strings.
const (
	PurposeRefresh = "gatehouse refresh-token mac v1"
	PurposeCSRF    = "gatehouse csrf hmac v1"
	PurposeSeal    = "gatehouse signing-key seal v1"
)

// Parse decodes a base64 (standard or URL alphabet, padded or not) master
// secret and checks its length.
func Parse(encoded string) ([]byte, error) {
	s := strings.TrimSpace(encoded)
	var key []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return nil, errors.New("master key is not valid base64")
	}
	if len(key) < MinLen {
		return nil, fmt.Errorf("master key must decode to at least %d bytes, got %d", MinLen, len(key))
	}
	return key, nil
}

// ReadFile reads a base64 master secret from path.
func ReadFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read master key file: %w", err)
	}
	key, err := Parse(string(data))
	if err != nil {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	return key, nil
}

// LoadOrCreate reads the key file at path, creating it with a fresh random
// secret (mode 0600) when it does not exist. O_EXCL makes two processes
// starting at once agree on one secret: the loser reads the winner's file.
func LoadOrCreate(path string) ([]byte, error) {
	key, err := ReadFile(path)
	if err == nil {
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	key = make([]byte, MinLen)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate master key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("create master key file: %w", err)
	}
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
		f.Close()
		return nil, fmt.Errorf("write master key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write master key file: %w", err)
	}
	return key, nil
}

// Derive returns a 32-byte subkey of master for one purpose (HKDF-SHA256).
func Derive(master []byte, purpose string) []byte {
	key, err := hkdf.Key(sha256.New, master, nil, purpose, 32)
	if err != nil {
		// hkdf.Key only fails when the requested length is too large for
		// the hash, which 32 bytes of SHA-256 never is.
		panic(fmt.Sprintf("masterkey: derive: %v", err))
	}
	return key
}
