package token

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/big"
	"strings"

	"github.com/gatehouse/gatehouse"
)

// One-time secrets (mail links, sign-in codes): "<id>.<secret>", where id
// (128 random bits) names the stored row and secret carries 256 more. Only
// HMAC-SHA256(K_kind, id "." secret) is stored, with K_kind derived from the
// codec's key for each kind, so a copy of the database can neither use a
// secret nor turn a token of one kind into another. A 6-digit code is
// MAC'd together with the subject it was sent to, so that a stolen table
// cannot be brute-forced offline (10^6 codes) without the key.
const (
	secretIDBytes    = 16
	secretValueBytes = 32
	maxSecretLen     = 128
	codeDigits       = 6
)

// SecretCodec mints and checks one-time secrets. It is safe for
// concurrent use.
type SecretCodec struct {
	key []byte
}

// NewSecretCodec returns a codec keyed by key (at least 256 bits).
func NewSecretCodec(key []byte) (*SecretCodec, error) {
	if len(key) < 32 {
		return nil, fmt.Errorf("token: secret key must be at least 32 bytes, got %d", len(key))
	}
	return &SecretCodec{key: key}, nil
}

// New returns a fresh token of kind, its id, and the MAC to store.
func (c *SecretCodec) New(kind gatehouse.SecretKind) (tok, id string, mac []byte) {
	id = randomB64(secretIDBytes)
	tok = id + "." + randomB64(secretValueBytes)
	return tok, id, c.mac(kind, tok)
}

// Parse splits a presented token of kind into the id to look up and the
// MAC to compare with the stored one. ok is false for anything that cannot
// be a token (wrong shape, length or alphabet); such input touches no state.
func (c *SecretCodec) Parse(kind gatehouse.SecretKind, tok string) (id string, mac []byte, ok bool) {
	if len(tok) > maxSecretLen {
		return "", nil, false
	}
	id, value, found := strings.Cut(tok, ".")
	if !found || !isB64(id, secretIDBytes) || !isB64(value, secretValueBytes) {
		return "", nil, false
	}
	return id, c.mac(kind, tok), true
}

// NewCode returns a uniformly random 6-digit code for subject and its MAC.
func (c *SecretCodec) NewCode(kind gatehouse.SecretKind, subject string) (code string, mac []byte) {
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		panic(fmt.Sprintf("token: crypto/rand failed: %v", err)) // never happens (Go 1.24+)
	}
	code = fmt.Sprintf("%0*d", codeDigits, n.Int64())
	return code, c.CodeMAC(kind, subject, code)
}

// CodeMAC is the MAC of a code typed for subject (check its shape with
// ValidCode first).
func (c *SecretCodec) CodeMAC(kind gatehouse.SecretKind, subject, code string) []byte {
	return c.mac(kind, subject+"\x00"+code)
}

// ValidCode reports whether s has the shape of a sign-in code.
func ValidCode(s string) bool {
	if len(s) != codeDigits {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (c *SecretCodec) mac(kind gatehouse.SecretKind, msg string) []byte {
	kk := hmac.New(sha256.New, c.key)
	kk.Write([]byte("one-time secret\x00" + string(kind)))
	m := hmac.New(sha256.New, kk.Sum(nil))
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func randomB64(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// isB64 reports whether s is the canonical unpadded base64url encoding of
// n bytes: the strict decoder refuses non-zero trailing bits, so no two
// spellings of one token exist.
func isB64(s string, n int) bool {
	if len(s) != base64.RawURLEncoding.EncodedLen(n) {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return err == nil && len(b) == n
}
