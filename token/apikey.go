package token

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"
)

// API keys: "gh_<id>_<secret>". The gh_ prefix lets secret scanners spot a
// leaked key; id (128 random bits) names the stored row, so a presented key
// is looked up by primary key and its MAC compared in constant time; secret
// carries 256 more bits. Both parts are lower-case base32 without padding,
// whose alphabet has no "_", so the key splits one way only and survives
// a double click in most terminals. Only HMAC-SHA256(K, key) is stored,
// with K derived from the master secret: a copy of the database yields no
// usable key.
const (
	APIKeyPrefix      = "gh_"
	apiKeyIDBytes     = 16
	apiKeySecretBytes = 32
)

var apiKeyEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

var (
	apiKeyIDLen     = apiKeyEncoding.EncodedLen(apiKeyIDBytes)
	apiKeySecretLen = apiKeyEncoding.EncodedLen(apiKeySecretBytes)
	// APIKeyLen is the length of every key.
	APIKeyLen = len(APIKeyPrefix) + apiKeyIDLen + 1 + apiKeySecretLen
)

// APIKeyCodec mints and checks API keys. It is safe for concurrent use.
type APIKeyCodec struct {
	key []byte
}

// NewAPIKeyCodec returns a codec keyed by key (at least 256 bits).
func NewAPIKeyCodec(key []byte) (*APIKeyCodec, error) {
	if len(key) < 32 {
		return nil, fmt.Errorf("token: api key mac key must be at least 32 bytes, got %d", len(key))
	}
	return &APIKeyCodec{key: key}, nil
}

// New returns a fresh key, its id and the MAC to store.
func (c *APIKeyCodec) New() (key, id string, mac []byte) {
	id = randomB32(apiKeyIDBytes)
	key = APIKeyPrefix + id + "_" + randomB32(apiKeySecretBytes)
	return key, id, c.MAC(key)
}

// Parse splits a presented key into the id to look up and the MAC to
// compare (with hmac.Equal) with the stored one. ok is false for anything
// that cannot be a key; such input touches no state.
func (c *APIKeyCodec) Parse(key string) (id string, mac []byte, ok bool) {
	if len(key) != APIKeyLen || !strings.HasPrefix(key, APIKeyPrefix) {
		return "", nil, false
	}
	rest := key[len(APIKeyPrefix):]
	id, secret, found := strings.Cut(rest, "_")
	if !found || !isB32(id, apiKeyIDBytes) || !isB32(secret, apiKeySecretBytes) {
		return "", nil, false
	}
	return id, c.MAC(key), true
}

// MAC is the stored form of key.
func (c *APIKeyCodec) MAC(key string) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte("api key\x00"))
	m.Write([]byte(key))
	return m.Sum(nil)
}

// LooksLikeAPIKey reports whether a Bearer credential is meant as an API
// key (by its prefix; access tokens are JWTs and never start with it).
func LooksLikeAPIKey(s string) bool { return strings.HasPrefix(s, APIKeyPrefix) }

// ValidAPIKeyID reports whether s has the shape of an API key id, so that
// ids from URLs that cannot exist are refused without a lookup.
func ValidAPIKeyID(s string) bool { return isB32(s, apiKeyIDBytes) }

func randomB32(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (Go 1.24+)
	return apiKeyEncoding.EncodeToString(b)
}

// isB32 reports whether s is the canonical encoding of n bytes: encoding
// the decoded bytes again must give s back (non-zero trailing bits would
// not), so no two spellings of one key exist.
func isB32(s string, n int) bool {
	if len(s) != apiKeyEncoding.EncodedLen(n) {
		return false
	}
	b, err := apiKeyEncoding.DecodeString(s)
	return err == nil && len(b) == n && apiKeyEncoding.EncodeToString(b) == s
}
