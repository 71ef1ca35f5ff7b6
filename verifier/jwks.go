package verifier

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// maxJWKSBytes bounds the JWKS document read.
const maxJWKSBytes = 1 << 20

var errUnknownKey = errors.New("unknown kid")

type publicKey struct {
	alg    jose.SignatureAlgorithm
	public any
}

// keyCache holds the JWKS's public keys of the pinned algorithms by kid.
type keyCache struct {
	url      string
	algs     []jose.SignatureAlgorithm
	client   *http.Client
	interval time.Duration
	now      func() time.Time
	onChange func()

	mu   sync.RWMutex
	keys map[string]publicKey

	// fetchMu serialises fetches; lastMiss is when an unknown kid last
	// caused one, so a flood of made-up kids costs one fetch per interval.
	fetchMu  sync.Mutex
	lastMiss time.Time
}

func newKeyCache(url string, algs []jose.SignatureAlgorithm, client *http.Client, interval time.Duration, now func() time.Time, onChange func()) *keyCache {
	return &keyCache{url: url, algs: algs, client: client, interval: interval, now: now, onChange: onChange, keys: map[string]publicKey{}}
}

func (k *keyCache) lookup(kid string) (publicKey, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	key, ok := k.keys[kid]
	return key, ok
}

// get returns the key kid, refetching the JWKS once when it is unknown and
// the last such refetch is older than the interval.
func (k *keyCache) get(ctx context.Context, kid string) (publicKey, error) {
	if key, ok := k.lookup(kid); ok {
		return key, nil
	}
	k.fetchMu.Lock()
	// Another caller may have fetched while we waited.
	if key, ok := k.lookup(kid); ok {
		k.fetchMu.Unlock()
		return key, nil
	}
	now := k.now()
	if !k.lastMiss.IsZero() && now.Sub(k.lastMiss).Abs() < k.interval {
		k.fetchMu.Unlock()
		return publicKey{}, fmt.Errorf("%w %q", errUnknownKey, kid)
	}
	k.lastMiss = now
	err := k.fetchLocked(ctx)
	k.fetchMu.Unlock()
	if err != nil {
		return publicKey{}, fmt.Errorf("%w %q (refetch: %v)", errUnknownKey, kid, err)
	}
	if key, ok := k.lookup(kid); ok {
		return key, nil
	}
	return publicKey{}, fmt.Errorf("%w %q", errUnknownKey, kid)
}

// fetch reads the JWKS and replaces the keys.
func (k *keyCache) fetch(ctx context.Context) error {
	k.fetchMu.Lock()
	defer k.fetchMu.Unlock()
	return k.fetchLocked(ctx)
}

func (k *keyCache) fetchLocked(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jwks: %s answered %d", k.url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return fmt.Errorf("jwks: document larger than %d bytes", maxJWKSBytes)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	keys := map[string]publicKey{}
	for _, jwk := range set.Keys {
		if jwk.KeyID == "" || (jwk.Use != "" && jwk.Use != "sig") || !jwk.IsPublic() {
			continue // a private key in a JWKS is a misconfiguration: skip it
		}
		alg, ok := keyAlg(jwk)
		if !ok || !contains(k.algs, alg) {
			continue
		}
		keys[jwk.KeyID] = publicKey{alg: alg, public: jwk.Key}
	}
	if len(keys) == 0 {
		return fmt.Errorf("jwks: no usable key of %v at %s", k.algs, k.url)
	}
	k.mu.Lock()
	k.keys = keys
	k.mu.Unlock()
	if k.onChange != nil {
		k.onChange()
	}
	return nil
}

// keyAlg derives the algorithm from the key itself and checks the JWK's
// alg, when present, agrees: a key is used with one algorithm only.
func keyAlg(jwk jose.JSONWebKey) (jose.SignatureAlgorithm, bool) {
	var alg jose.SignatureAlgorithm
	switch pk := jwk.Key.(type) {
	case ed25519.PublicKey:
		alg = jose.EdDSA
	case *ecdsa.PublicKey:
		if pk.Curve != elliptic.P256() {
			return "", false
		}
		alg = jose.ES256
	default:
		return "", false
	}
	if jwk.Algorithm != "" && jwk.Algorithm != string(alg) {
		return "", false
	}
	return alg, true
}

func contains(algs []jose.SignatureAlgorithm, a jose.SignatureAlgorithm) bool {
	for _, x := range algs {
		if x == a {
			return true
		}
	}
	return false
}

// refreshKeys re-reads the JWKS now and then, so keys Gatehouse retired
// stop verifying here too.
func (v *Verifier) refreshKeys(ctx context.Context) {
	t := time.NewTicker(defaultJWKSRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := v.keys.fetch(ctx); err != nil && ctx.Err() == nil {
			v.logger.Warn("refreshing the JWKS failed; keeping the keys held", "error", err)
		}
	}
}
