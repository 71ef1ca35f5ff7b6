// Package password hashes and verifies passwords (argon2id in PHC form, and
// bcrypt for imported users), bounds how many hashes run at once, and holds
// the policy for new passwords.
//
// Hashing is deliberately expensive in memory (19 MiB per argon2id hash by
// default), so an unbounded number of concurrent logins would exhaust the
// machine. A Hasher therefore runs at most `concurrency` hashes at once and
// lets at most `maxWaiting` callers queue; anyone beyond gets ErrBusy at once
// and the API answers 429/503 instead of piling up memory.
package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

var (
	// ErrBusy means the hashing queue is full. Callers answer fast (503 or
	// 429) rather than wait: waiting is what the bound exists to prevent.
	ErrBusy = errors.New("password: hashing queue full")
	// ErrMalformedHash means a stored hash could not be parsed or its
	// parameters are out of bounds. It indicates bad data, not a wrong
	// password.
	ErrMalformedHash = errors.New("password: malformed hash")
)

// Params are argon2id parameters.
type Params struct {
	Memory      uint32 // KiB
	Iterations  uint32
	Parallelism uint8
	SaltLen     uint32 // bytes
	KeyLen      uint32 // bytes
}

// DefaultParams are OWASP's minimum for argon2id: m=19 MiB, t=2, p=1, with a
// 16-byte salt and a 32-byte key.
func DefaultParams() Params {
	return Params{Memory: 19456, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32}
}

// bcrypt cost bounds for imported hashes. Real systems use 10..12; cost 31
// would take days per login, so anything above maxBcryptCost is treated as
// malformed rather than burned through.
const (
	minBcryptCost = bcrypt.MinCost
	maxBcryptCost = 16
	bcryptHashLen = 60
)

// Hasher hashes and verifies passwords with bounded concurrency. It is safe
// for concurrent use.
type Hasher struct {
	params     Params
	sem        chan struct{} // one token per running hash
	maxWaiting int64
	waiting    atomic.Int64
	dummy      string // a hash of a random password, for VerifyDummy
}

// NewHasher returns a Hasher that runs at most concurrency hashes at once
// (callers usually pass runtime.NumCPU()) and lets at most maxWaiting callers
// wait for a slot. Values below 1 (concurrency) or 0 (maxWaiting) are raised
// to those minimums.
//
// It computes one hash to make the dummy used by VerifyDummy, so that an
// unknown user costs exactly what a known one does with the current
// parameters. It panics if p is outside the bounds the parser accepts, since
// such a Hasher would write hashes it cannot read back; that is a
// programming or configuration error to catch at start-up.
func NewHasher(p Params, concurrency, maxWaiting int) *Hasher {
	if err := p.validate(); err != nil {
		panic("password: invalid params: " + err.Error())
	}
	concurrency = max(concurrency, 1)
	maxWaiting = max(maxWaiting, 0)
	h := &Hasher{
		params:     p,
		sem:        make(chan struct{}, concurrency),
		maxWaiting: int64(maxWaiting),
	}
	// The dummy password is random so that no real password can match it.
	h.dummy = h.hashNow(rand.Text())
	return h
}

// acquire takes a hashing slot, waiting in the queue if there is room and
// failing with ErrBusy if there is not. The caller must call release.
func (h *Hasher) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case h.sem <- struct{}{}:
		return nil
	default:
	}
	if h.waiting.Add(1) > h.maxWaiting {
		h.waiting.Add(-1)
		return ErrBusy
	}
	defer h.waiting.Add(-1)
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *Hasher) release() { <-h.sem }

// Stats reports how many hashes are running and how many callers wait, for
// metrics.
func (h *Hasher) Stats() (running, waiting int) {
	return len(h.sem), int(h.waiting.Load())
}

// Hash returns an argon2id PHC string of pw with h's parameters. It does not
// apply the policy; call Check first for new passwords.
func (h *Hasher) Hash(ctx context.Context, pw string) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	defer h.release()
	return h.hashNow(pw), nil
}

// hashNow hashes without taking a slot.
func (h *Hasher) hashNow(pw string) string {
	salt := make([]byte, h.params.SaltLen)
	// crypto/rand.Read never returns an error (it crashes the program
	// instead if the OS cannot supply randomness).
	_, _ = rand.Read(salt)
	key := argon2.IDKey([]byte(pw), salt, h.params.Iterations, h.params.Memory, h.params.Parallelism, h.params.KeyLen)
	return encodePHC(h.params, salt, key)
}

// Verify reports whether pw matches encoded, an argon2id PHC string or a
// bcrypt hash ($2a$, $2b$, $2y$). needsRehash is true when the password
// matched and the hash is bcrypt or uses argon2id parameters weaker than h's,
// so the caller should store a fresh Hash of pw. A wrong password is
// (false, false, nil); err is reserved for a malformed hash (ErrMalformedHash),
// a full queue (ErrBusy) or ctx ending while queued.
//
// bcrypt only reads the first 72 bytes of a password. An imported bcrypt hash
// is verified with that limitation (the source system had it too); the
// rehash after a successful login then covers the whole password.
func (h *Hasher) Verify(ctx context.Context, pw, encoded string) (ok, needsRehash bool, err error) {
	switch {
	case strings.HasPrefix(encoded, phcPrefix):
		ph, err := parsePHC(encoded)
		if err != nil {
			return false, false, fmt.Errorf("verify password: %w", err)
		}
		if err := h.acquire(ctx); err != nil {
			return false, false, fmt.Errorf("verify password: %w", err)
		}
		key := argon2.IDKey([]byte(pw), ph.salt, ph.params.Iterations, ph.params.Memory, ph.params.Parallelism, ph.params.KeyLen)
		h.release()
		if subtle.ConstantTimeCompare(key, ph.key) != 1 {
			return false, false, nil
		}
		return true, h.weaker(ph.params), nil

	case isBcrypt(encoded):
		// A bcrypt hash is exactly 60 bytes; checking that first keeps
		// trailing junk from being read as part of the hash.
		if len(encoded) != bcryptHashLen {
			return false, false, fmt.Errorf("verify password: %w: bad bcrypt hash length", ErrMalformedHash)
		}
		cost, err := bcrypt.Cost([]byte(encoded))
		if err != nil || cost < minBcryptCost || cost > maxBcryptCost {
			return false, false, fmt.Errorf("verify password: %w: bad bcrypt hash or cost", ErrMalformedHash)
		}
		if err := h.acquire(ctx); err != nil {
			return false, false, fmt.Errorf("verify password: %w", err)
		}
		// CompareHashAndPassword compares in constant time itself.
		err = bcrypt.CompareHashAndPassword([]byte(encoded), []byte(pw))
		h.release()
		switch {
		case err == nil:
			return true, true, nil // bcrypt is always upgraded to argon2id
		case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
			return false, false, nil
		default:
			return false, false, fmt.Errorf("verify password: %w: bcrypt", ErrMalformedHash)
		}

	default:
		return false, false, fmt.Errorf("verify password: %w: unknown algorithm", ErrMalformedHash)
	}
}

// VerifyDummy costs the same as Verify of a hash with h's parameters and
// always fails. Login calls it for unknown emails so that timing does not
// reveal which accounts exist. It returns only queue errors (ErrBusy or the
// ctx error), which the caller must handle exactly as for Verify so that a
// busy server looks the same for known and unknown users.
func (h *Hasher) VerifyDummy(ctx context.Context, pw string) error {
	_, _, err := h.Verify(ctx, pw, h.dummy)
	return err
}

// weaker reports whether stored parameters are below h's in any dimension
// that adds cost or entropy. Parallelism is not compared: more lanes do not
// make a hash weaker or stronger at the same memory and time, and comparing
// it would rehash every password after a mere change of lanes.
func (h *Hasher) weaker(p Params) bool {
	return p.Memory < h.params.Memory ||
		p.Iterations < h.params.Iterations ||
		p.SaltLen < h.params.SaltLen ||
		p.KeyLen < h.params.KeyLen
}

// isBcrypt reports whether s has one of the bcrypt prefixes the spec names.
// Older "$2$" and "$2x$" hashes are not accepted: $2x$ marks hashes made by
// a buggy implementation that Go's bcrypt does not reproduce.
func isBcrypt(s string) bool {
	return strings.HasPrefix(s, "$2a$") || strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2y$")
}
