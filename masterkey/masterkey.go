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
	"path/filepath"
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
	// PurposeSecrets keys the MACs of one-time secrets (mail links and codes).
	PurposeSecrets = "gatehouse one-time secret mac v1"
	// PurposeMail seals queued mail, whose bodies carry live tokens.
	PurposeMail = "gatehouse mail seal v1"
	// PurposeTOTP seals authenticator-app secrets.
	PurposeTOTP = "gatehouse totp seal v1"
	// PurposeRecovery keys the MACs of recovery codes.
	PurposeRecovery = "gatehouse recovery-code mac v1"
	// PurposeIdPSecret seals the client secrets of identity providers.
	PurposeIdPSecret = "gatehouse idp client-secret seal v1"
	// PurposeIdPFlow seals the cookie of a redirect to a provider.
	PurposeIdPFlow = "gatehouse idp flow seal v1"
	// PurposeAPIKeys keys the MACs of API keys.
	PurposeAPIKeys = "gatehouse api-key mac v1"
	// PurposeOAuthClients keys the MACs of OAuth client secrets.
	PurposeOAuthClients = "gatehouse oauth client-secret mac v1"
	// PurposeOAuthRefresh keys the refresh tokens of sessions authorized
	// for OAuth clients.
	PurposeOAuthRefresh = "gatehouse oauth refresh-token mac v1"
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
// secret (mode 0600) when it does not exist.
//
// The file appears at path only complete and on disk: the secret is written
// to a temporary file in the same directory, fsynced, then hard-linked to
// path. link(2) fails when path exists, so of several processes starting at
// once exactly one installs its secret and the others read that one; none
// can read a half-written file (as with O_EXCL on path itself), and a crash
// never leaves an empty key file that would stop the next start.
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
	dir := filepath.Dir(path)
	tmp, err := writeTemp(dir, filepath.Base(path), base64.StdEncoding.EncodeToString(key)+"\n")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp) //nolint:errcheck // path keeps its own link to the data
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Another process won the race; its file is complete.
			return ReadFile(path)
		}
		return nil, fmt.Errorf("install master key file %s: %w", path, err)
	}
	// The new directory entry must survive a crash too, or the next start
	// would make a different secret and every token and sealed key made
	// under this one would be lost.
	if err := syncDir(dir); err != nil {
		return nil, fmt.Errorf("install master key file %s: %w", path, err)
	}
	return key, nil
}

// writeTemp writes data to a new private file in dir and fsyncs it,
// returning its path.
func writeTemp(dir, base, data string) (string, error) {
	f, err := os.CreateTemp(dir, "."+base+".tmp-*") // mode 0600
	if err != nil {
		return "", fmt.Errorf("create master key file: %w", err)
	}
	name := f.Name()
	_, err = f.WriteString(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name) //nolint:errcheck // already failing
		return "", fmt.Errorf("write master key file: %w", err)
	}
	return name, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	return nil
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
