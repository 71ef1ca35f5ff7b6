package token

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"time"
)

// SignIDToken signs an OpenID Connect ID token with the key that signs
// access tokens at iat (typ JWT). build receives that key's algorithm, so
// the caller can compute at_hash (AccessTokenHash) with the matching hash,
// and returns the claims to sign.
func (k *Keys) SignIDToken(iat time.Time, build func(alg string) any) (string, error) {
	set := k.set.Load()
	if set == nil || set.newest() == nil {
		return "", errors.New("token: SignIDToken before Load")
	}
	sl := set.signerAt(iat)
	if sl.alg == AlgHS256 {
		// The relying party cannot hold the secret that would verify it.
		return "", errors.New("token: ID tokens need an asymmetric signing algorithm (EdDSA or ES256)")
	}
	payload, err := json.Marshal(build(string(sl.alg)))
	if err != nil {
		return "", fmt.Errorf("token: marshal ID token: %w", err)
	}
	jws, err := sl.idSigner.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("token: sign ID token: %w", err)
	}
	return jws.CompactSerialize()
}

// AccessTokenHash is the at_hash of an ID token (OpenID Connect Core
// 3.1.3.6): the left half of the access token's hash under the hash of the
// ID token's algorithm (SHA-512 for EdDSA, SHA-256 for ES256).
func AccessTokenHash(accessToken, alg string) string {
	var h hash.Hash
	switch alg {
	case AlgEdDSA:
		h = sha512.New()
	default:
		h = sha256.New()
	}
	h.Write([]byte(accessToken))
	sum := h.Sum(nil)
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}

// ParseIDTokenHint verifies the signature and issuer of an ID token this
// server issued (any age: an id_token_hint of RP-initiated logout may have
// expired) and returns its claims.
func (k *Keys) ParseIDTokenHint(raw string, now time.Time) (map[string]any, error) {
	if len(raw) > maxAccessLen {
		return nil, fmt.Errorf("%w: token too long", ErrInvalidToken)
	}
	set := k.set.Load()
	if set == nil {
		return nil, fmt.Errorf("%w: keys not loaded", ErrInvalidToken)
	}
	tok, key, err := set.find(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if key.retired(now) {
		return nil, fmt.Errorf("%w: signing key retired", ErrInvalidToken)
	}
	payload, err := tok.Verify(key.verify)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, fmt.Errorf("%w: claims: %w", ErrInvalidToken, err)
	}
	if iss, _ := claims["iss"].(string); iss != k.cfg.Issuer {
		return nil, fmt.Errorf("%w: wrong issuer", ErrInvalidToken)
	}
	if typ, _ := tok.Signatures[0].Header.ExtraHeaders["typ"].(string); typ != "JWT" {
		return nil, fmt.Errorf("%w: not an ID token", ErrInvalidToken)
	}
	return claims, nil
}
