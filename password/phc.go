package password

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// Bounds on parameters read from a stored hash. A hash comes from the
// database, which an attacker or a bad import may have touched; without
// bounds "m=4294967295" would make one login allocate 4 TiB. They are wide
// enough for any sane argon2id configuration.
const (
	maxMemoryKiB   = 1 << 20 // 1 GiB
	maxIterations  = 16
	maxParallelism = 16
	minSaltLen     = 8
	maxSaltLen     = 64
	minKeyLen      = 16
	maxKeyLen      = 64

	// maxPHCLen bounds the whole string before it is split, so parsing
	// allocates nothing proportional to unbounded input. The longest valid
	// string is about 170 bytes.
	maxPHCLen = 256

	phcPrefix = "$argon2id$"
)

// phcHash is a parsed argon2id PHC string.
type phcHash struct {
	params Params
	salt   []byte
	key    []byte
}

// validate checks p against the same bounds as a parsed hash, so that every
// hash this package writes can be read back.
func (p Params) validate() error {
	switch {
	case p.Parallelism < 1 || p.Parallelism > maxParallelism:
		return fmt.Errorf("parallelism %d outside 1..%d", p.Parallelism, maxParallelism)
	case p.Memory < 8*uint32(p.Parallelism) || p.Memory > maxMemoryKiB:
		// argon2 needs at least 8 KiB per lane.
		return fmt.Errorf("memory %d KiB outside %d..%d", p.Memory, 8*uint32(p.Parallelism), maxMemoryKiB)
	case p.Iterations < 1 || p.Iterations > maxIterations:
		return fmt.Errorf("iterations %d outside 1..%d", p.Iterations, maxIterations)
	case p.SaltLen < minSaltLen || p.SaltLen > maxSaltLen:
		return fmt.Errorf("salt length %d outside %d..%d", p.SaltLen, minSaltLen, maxSaltLen)
	case p.KeyLen < minKeyLen || p.KeyLen > maxKeyLen:
		return fmt.Errorf("key length %d outside %d..%d", p.KeyLen, minKeyLen, maxKeyLen)
	}
	return nil
}

// encodePHC formats a hash the way the reference implementation does:
// $argon2id$v=19$m=<m>,t=<t>,p=<p>$<salt>$<key>, unpadded standard base64.
func encodePHC(p Params, salt, key []byte) string {
	return fmt.Sprintf("%sv=19$m=%d,t=%d,p=%d$%s$%s", phcPrefix,
		p.Memory, p.Iterations, p.Parallelism,
		base64.RawStdEncoding.EncodeToString(salt),
		base64.RawStdEncoding.EncodeToString(key))
}

// parsePHC parses an argon2id PHC string, accepting only the canonical form
// encodePHC writes (and libargon2 writes): fixed parameter order, decimal
// numbers without sign or leading zeros, canonical unpadded base64. Every
// error wraps ErrMalformedHash. It never echoes the input, which holds the
// hash.
func parsePHC(s string) (phcHash, error) {
	var h phcHash
	if len(s) > maxPHCLen {
		return h, fmt.Errorf("%w: longer than %d bytes", ErrMalformedHash, maxPHCLen)
	}
	rest, ok := strings.CutPrefix(s, phcPrefix)
	if !ok {
		return h, fmt.Errorf("%w: not an argon2id hash", ErrMalformedHash)
	}
	// rest is "v=19$m=..,t=..,p=..$salt$key": exactly four fields.
	fields := strings.Split(rest, "$")
	if len(fields) != 4 {
		return h, fmt.Errorf("%w: want 4 fields after the algorithm, got %d", ErrMalformedHash, len(fields))
	}
	if fields[0] != "v=19" {
		return h, fmt.Errorf("%w: unsupported version (want v=19)", ErrMalformedHash)
	}
	ps := strings.Split(fields[1], ",")
	if len(ps) != 3 {
		return h, fmt.Errorf("%w: want parameters m,t,p", ErrMalformedHash)
	}
	m, err := parseParam(ps[0], "m=")
	if err != nil {
		return h, err
	}
	t, err := parseParam(ps[1], "t=")
	if err != nil {
		return h, err
	}
	p, err := parseParam(ps[2], "p=")
	if err != nil {
		return h, err
	}
	// Range-check p before narrowing it to uint8 so that p=257 cannot wrap
	// around to 1.
	if p < 1 || p > maxParallelism {
		return h, fmt.Errorf("%w: parallelism out of bounds", ErrMalformedHash)
	}
	h.params = Params{Memory: m, Iterations: t, Parallelism: uint8(p)}

	// Decode only after checking the encoded length, so the allocation is
	// bounded by maxSaltLen/maxKeyLen rather than by the input.
	if h.salt, err = decodeB64(fields[2], minSaltLen, maxSaltLen); err != nil {
		return h, fmt.Errorf("salt: %w", err)
	}
	if h.key, err = decodeB64(fields[3], minKeyLen, maxKeyLen); err != nil {
		return h, fmt.Errorf("key: %w", err)
	}
	h.params.SaltLen = uint32(len(h.salt))
	h.params.KeyLen = uint32(len(h.key))
	if err := h.params.validate(); err != nil {
		return h, fmt.Errorf("%w: %w", ErrMalformedHash, err)
	}
	return h, nil
}

// parseParam parses "<name><decimal>" as a uint32, refusing signs, leading
// zeros and anything over 10 digits, so each hash has one spelling.
func parseParam(s, name string) (uint32, error) {
	digits, ok := strings.CutPrefix(s, name)
	if !ok {
		return 0, fmt.Errorf("%w: want parameter %q", ErrMalformedHash, strings.TrimSuffix(name, "="))
	}
	if digits == "" || len(digits) > 10 || (digits[0] == '0' && len(digits) > 1) {
		return 0, fmt.Errorf("%w: bad number for parameter %q", ErrMalformedHash, strings.TrimSuffix(name, "="))
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, fmt.Errorf("%w: bad number for parameter %q", ErrMalformedHash, strings.TrimSuffix(name, "="))
		}
	}
	n, err := strconv.ParseUint(digits, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: parameter %q out of range", ErrMalformedHash, strings.TrimSuffix(name, "="))
	}
	return uint32(n), nil
}

// decodeB64 decodes canonical unpadded standard base64 of min..max bytes.
// The alphabet is checked by hand because the decoder silently skips '\r'
// and '\n'; Strict rejects non-zero trailing bits, so the encoding is unique.
func decodeB64(s string, minLen, maxLen int) ([]byte, error) {
	if len(s) < base64.RawStdEncoding.EncodedLen(minLen) || len(s) > base64.RawStdEncoding.EncodedLen(maxLen) {
		return nil, fmt.Errorf("%w: length out of bounds", ErrMalformedHash)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return nil, fmt.Errorf("%w: invalid base64", ErrMalformedHash)
		}
	}
	b, err := base64.RawStdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: invalid base64", ErrMalformedHash)
	}
	return b, nil
}
