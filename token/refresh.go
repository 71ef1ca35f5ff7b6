// Package token issues and checks Gatehouse's two kinds of token: signed
// access tokens (JWS/JWT, with the signing-key set and its JWKS) and the
// stateless refresh-token codec.
package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
)

// ErrInvalidRefresh is returned for any refresh token that is malformed,
// tampered with or minted under another key. Callers must not distinguish
// the cases to clients: a forged token must reveal nothing and revoke nothing.
var ErrInvalidRefresh = errors.New("invalid refresh token")

const (
	// maxRefreshLen bounds input before any work is done on it. A real
	// token is at most 64 (sid) + 1 + 54 (secret) = 119 bytes.
	maxRefreshLen = 200
	maxSIDLen     = 64
	genLen        = 8
	macLen        = sha256.Size
	// secretLen is the base64url length of gen||mac (40 bytes, unpadded).
	secretLen = (genLen+macLen)*8/6 + 1
	// refreshLabel separates the per-session key derivation from any other
	// use of the master key.
	refreshLabel = "refresh"
)

// RefreshCodec mints and checks refresh tokens of the form "<sid>.<secret>"
// where secret = base64url(gen as 8 bytes big-endian || HMAC-SHA256(K_sid,
// sid || gen)) and K_sid = HMAC-SHA256(key, "refresh" || sid).
//
// Nothing is stored: the token of generation g of a session is a pure
// function of (sid, g) and the key, so a copy of the database lets no one
// mint tokens, and the server can tell an earlier genuine generation (reuse)
// from a forgery (bad MAC). It is safe for concurrent use.
type RefreshCodec struct {
	// b64 is strict so that the 4 unused trailing bits of a 54-character
	// secret must be zero: otherwise several spellings would decode to the
	// same bytes and a mutated token could still be accepted.
	b64 *base64.Encoding
	// master keeps HMAC(key, ·) instances whose pads are already keyed, so
	// the per-token key derivation does not re-hash the master key each time.
	master sync.Pool
}

// NewRefreshCodec returns a codec keyed by key, which must hold at least 256
// bits (the secret part of a token is only as strong as this key).
func NewRefreshCodec(key []byte) (*RefreshCodec, error) {
	if len(key) < 32 {
		return nil, fmt.Errorf("token: refresh key must be at least 32 bytes, got %d", len(key))
	}
	k := append([]byte(nil), key...) // the caller may reuse its slice
	c := &RefreshCodec{b64: base64.RawURLEncoding.Strict()}
	c.master.New = func() any { return hmac.New(sha256.New, k) }
	return c, nil
}

// Encode returns the refresh token of generation gen of session sessionID.
// sessionID must be 1 to 64 characters of [A-Za-z0-9_-] and gen at least 1;
// anything else is a programming error and panics, because a token that
// Decode would reject must never reach a client.
func (c *RefreshCodec) Encode(sessionID string, gen uint64) string {
	if !validSID(sessionID) || gen == 0 {
		panic(fmt.Sprintf("token: Encode called with invalid session id (len %d) or generation %d", len(sessionID), gen))
	}
	var raw [genLen + macLen]byte
	binary.BigEndian.PutUint64(raw[:genLen], gen)
	c.mac(raw[genLen:genLen], sessionID, raw[:genLen])

	var b strings.Builder
	b.Grow(len(sessionID) + 1 + secretLen)
	b.WriteString(sessionID)
	b.WriteByte('.')
	var enc [secretLen]byte
	c.b64.Encode(enc[:], raw[:])
	b.Write(enc[:])
	return b.String()
}

// Decode checks raw and returns its session id and generation. Every
// malformed, truncated, tampered or foreign token yields ErrInvalidRefresh.
// The MAC is checked before the caller looks at any state, so a forged
// token for a real session id cannot be used to end that session.
func (c *RefreshCodec) Decode(raw string) (sessionID string, gen uint64, err error) {
	if len(raw) > maxRefreshLen {
		return "", 0, ErrInvalidRefresh
	}
	sid, secret, ok := strings.Cut(raw, ".")
	if !ok || !validSID(sid) || len(secret) != secretLen {
		return "", 0, ErrInvalidRefresh
	}
	var buf [genLen + macLen + 2]byte // DecodedLen(54) rounds up to 42
	n, err := c.b64.Decode(buf[:], []byte(secret))
	if err != nil || n != genLen+macLen {
		return "", 0, ErrInvalidRefresh
	}
	gen = binary.BigEndian.Uint64(buf[:genLen])
	if gen == 0 {
		return "", 0, ErrInvalidRefresh
	}
	var want [macLen]byte
	c.mac(want[:0], sid, buf[:genLen])
	if !hmac.Equal(want[:], buf[genLen:genLen+macLen]) {
		return "", 0, ErrInvalidRefresh
	}
	return sid, gen, nil
}

// mac appends HMAC-SHA256(K_sid, sid || gen) to dst.
func (c *RefreshCodec) mac(dst []byte, sid string, gen []byte) []byte {
	m := c.master.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(refreshLabel))
	m.Write([]byte(sid))
	var ksid [macLen]byte
	m.Sum(ksid[:0])
	c.master.Put(m)

	h := hmac.New(sha256.New, ksid[:])
	h.Write([]byte(sid))
	h.Write(gen)
	return h.Sum(dst)
}

// validSID reports whether s is 1..64 characters of [A-Za-z0-9_-]. The
// charset excludes '.', so splitting a token at its first dot is unambiguous.
func validSID(s string) bool {
	if len(s) == 0 || len(s) > maxSIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case 'a' <= ch && ch <= 'z', 'A' <= ch && ch <= 'Z', '0' <= ch && ch <= '9', ch == '_', ch == '-':
		default:
			return false
		}
	}
	return true
}
