package token

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/sealbox"
)

// The signing algorithms Gatehouse supports.
const (
	AlgEdDSA = "EdDSA"
	AlgES256 = "ES256"
	AlgHS256 = "HS256"
)

const (
	// MaxLeeway is the largest clock leeway the contract allows.
	MaxLeeway = 60 * time.Second
	// reloadInterval bounds how often an unknown kid may send us to the
	// store, so a flood of made-up kids cannot turn into a flood of queries.
	reloadInterval = time.Second
	hmacKeyLen     = 32
	kidLen         = 16
)

// KeyStore is the part of gatehouse.Store the key set needs.
type KeyStore interface {
	CreateSigningKey(ctx context.Context, k gatehouse.SigningKey) error
	SigningKeys(ctx context.Context) ([]gatehouse.SigningKey, error)
}

// Config configures access tokens.
type Config struct {
	// Algorithm is the algorithm of new keys: "EdDSA" (default), "ES256"
	// or "HS256". Keys of other algorithms already in the store still verify.
	Algorithm string
	// Issuer and Audience are stamped into tokens and required on verify.
	Issuer, Audience string
	// TTL is the access-token lifetime. A key stays in the JWKS, and keeps
	// verifying, for TTL+Leeway after its successor starts signing, i.e.
	// until every token it signed has expired; then it retires for good.
	TTL time.Duration
	// Leeway is the clock leeway for exp/nbf/iat, at most MaxLeeway.
	Leeway time.Duration
	// PublishAhead is how long a rotated-in key is published in the JWKS
	// before it signs, so resource servers holding a cached JWKS know it
	// by the time its first token reaches them. It must exceed how long
	// they may cache the JWKS. Zero signs with a new key at once.
	PublishAhead time.Duration
	// SealKey (32 bytes) encrypts private keys with AES-256-GCM before they
	// reach the store, so a copy of the database cannot mint tokens.
	SealKey []byte
}

// Keys is the signing-key set: it signs and verifies access tokens and
// publishes the JWKS. It is safe for concurrent use. Verify and Sign read an
// immutable snapshot through an atomic pointer and take no lock; changes
// (Load, Rotate, reload on an unknown kid) build a new snapshot.
type Keys struct {
	store KeyStore
	cfg   Config
	box   *sealbox.Box

	set atomic.Pointer[keySet]

	// mu serialises snapshot changes and key creation, so two concurrent
	// Loads in one process cannot create two keys and no change is lost.
	mu sync.Mutex

	// reloadMu guards lastReload and reloading: the rate limit and the
	// single in-flight reload triggered by unknown kids.
	reloadMu   sync.Mutex
	lastReload time.Time
	reloading  chan struct{}
	// lastReloadErr is the outcome of the last reload, repeated to callers
	// throttled or waiting behind it.
	lastReloadErr error
}

// key is one parsed signing key. It is immutable once built.
type key struct {
	id      string
	alg     jose.SignatureAlgorithm
	created time.Time
	// verify is what go-jose verifies with: ed25519.PublicKey,
	// *ecdsa.PublicKey or []byte (HS256). Typed keys rather than JWKs skip
	// a conversion on every request.
	verify any
	signer jose.Signer
	// idSigner signs OpenID Connect ID tokens: the same key, typ JWT, so an
	// ID token is never mistaken for an access token (typ at+jwt).
	idSigner jose.Signer
	// jwk is the marshalled public JWK, nil for HS256 (secret, never published).
	jwk []byte
}

// slot is a key as one snapshot sees it: its place in the rotation, which
// depends on the keys around it, is fixed per snapshot.
type slot struct {
	*key
	// activeFrom is when the key starts signing: PublishAhead after it was
	// created (and so published), or at creation for the first key of its
	// algorithm, which has no older key to sign in the meantime.
	activeFrom time.Time
	// retireAt is when the key leaves the JWKS and stops verifying:
	// TTL+Leeway after the next key of its algorithm started signing, when
	// every token the key signed has expired. Zero for the newest key of
	// its algorithm, which never retires.
	retireAt time.Time
}

// retired reports whether the key verifies nothing any more at now.
func (s *slot) retired(now time.Time) bool {
	return !s.retireAt.IsZero() && !now.Before(s.retireAt)
}

// keySet is an immutable snapshot of every key we hold.
type keySet struct {
	byID   map[string]*slot
	sorted []*slot // oldest first, by (created, id)
	// algs pins the algorithms the JWS parser accepts to those of keys we hold.
	algs []jose.SignatureAlgorithm
	// signers are the keys of cfg.Algorithm, oldest first; signerAt picks
	// the one that signs at a given time.
	signers []*slot
	// verified caches tokens that verified under exactly this snapshot
	// (verified.go); a new snapshot starts empty.
	verified *verifiedCache
}

// newest is the newest key of cfg.Algorithm, nil if there is none.
func (s *keySet) newest() *slot {
	if len(s.signers) == 0 {
		return nil
	}
	return s.signers[len(s.signers)-1]
}

// signerAt is the key that signs at t: the newest key of cfg.Algorithm
// whose activeFrom has come. If none has (a clock behind the one that
// created the first key), the oldest: something must sign, and it is
// published.
func (s *keySet) signerAt(t time.Time) *slot {
	for i := len(s.signers) - 1; i > 0; i-- {
		if !t.Before(s.signers[i].activeFrom) {
			return s.signers[i]
		}
	}
	if len(s.signers) == 0 {
		return nil
	}
	return s.signers[0]
}

// keys returns the keys of the snapshot, oldest first, in a new slice.
func (s *keySet) keys() []*key {
	out := make([]*key, len(s.sorted))
	for i, sl := range s.sorted {
		out[i] = sl.key
	}
	return out
}

// NewKeys checks cfg and returns an empty key set; call Load before use.
func NewKeys(store KeyStore, cfg Config) (*Keys, error) {
	if store == nil {
		return nil, errors.New("token: nil key store")
	}
	if cfg.Algorithm == "" {
		cfg.Algorithm = AlgEdDSA
	}
	switch cfg.Algorithm {
	case AlgEdDSA, AlgES256, AlgHS256:
	default:
		return nil, fmt.Errorf("token: unsupported algorithm %q (want EdDSA, ES256 or HS256)", cfg.Algorithm)
	}
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("token: issuer and audience are required")
	}
	if cfg.TTL <= 0 {
		return nil, errors.New("token: TTL must be positive")
	}
	if cfg.Leeway < 0 || cfg.Leeway > MaxLeeway {
		return nil, fmt.Errorf("token: leeway must be between 0 and %s", MaxLeeway)
	}
	if cfg.PublishAhead < 0 {
		return nil, errors.New("token: publish-ahead delay must not be negative")
	}
	if len(cfg.SealKey) != 32 {
		return nil, fmt.Errorf("token: seal key must be 32 bytes, got %d", len(cfg.SealKey))
	}
	box, err := sealbox.New(cfg.SealKey)
	if err != nil {
		return nil, fmt.Errorf("token: seal key: %w", err)
	}
	cfg.SealKey = nil // the box holds what it needs; drop our reference
	return &Keys{store: store, cfg: cfg, box: box}, nil
}

// Load reads every key from the store (keeping keys already parsed) and,
// when none of cfg.Algorithm exists, creates and stores one. It may be
// called again at any time to pick up keys created by other instances.
func (k *Keys) Load(ctx context.Context, now time.Time) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	set, err := k.readStore(ctx)
	if err != nil {
		return err
	}
	if set.newest() == nil {
		nk, err := k.create(ctx, createdAt(now, nil))
		if err != nil {
			return err
		}
		set = k.newKeySet(append(set.keys(), nk))
	}
	k.set.Store(set)
	return nil
}

// Rotate creates a key of cfg.Algorithm and stores it. The key is in the
// JWKS at once and signs from PublishAhead after its creation on every
// instance; the previous key signs until then, and keeps verifying and
// stays in the JWKS for TTL+Leeway more.
func (k *Keys) Rotate(ctx context.Context, now time.Time) (kid string, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	cur := k.set.Load()
	if cur == nil {
		return "", errors.New("token: Rotate before Load")
	}
	var prev *key
	if n := cur.newest(); n != nil {
		prev = n.key
	}
	nk, err := k.create(ctx, createdAt(now, prev))
	if err != nil {
		return "", err
	}
	k.set.Store(k.newKeySet(append(cur.keys(), nk)))
	return nk.id, nil
}

// JWKS returns {"keys":[...]}: the public keys (never HS256 secrets) of
// every key that has not retired, newest first.
func (k *Keys) JWKS(now time.Time) ([]byte, error) {
	set := k.set.Load()
	if set == nil {
		return nil, errors.New("token: JWKS before Load")
	}
	var b bytes.Buffer
	b.WriteString(`{"keys":[`)
	first := true
	for i := len(set.sorted) - 1; i >= 0; i-- {
		key := set.sorted[i]
		if key.jwk == nil || key.retired(now) {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.Write(key.jwk)
	}
	b.WriteString("]}")
	return b.Bytes(), nil
}

// createdAt is the creation time of a new key: now at the store's
// microsecond precision (so a reloaded key compares equal to the one we
// made), and strictly after prev so the new key is the newest on every
// instance even if the clock stepped back.
func createdAt(now time.Time, prev *key) time.Time {
	t := now.UTC().Truncate(time.Microsecond)
	if prev != nil && !t.After(prev.created) {
		t = prev.created.Add(time.Microsecond)
	}
	return t
}

// readStore returns a snapshot of the store's keys merged with the ones we
// hold. Keys are never deleted, so the union loses nothing a concurrent
// writer added; keys we already hold are reused rather than unsealed again.
// The caller holds k.mu.
func (k *Keys) readStore(ctx context.Context) (*keySet, error) {
	stored, err := k.store.SigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("token: load signing keys: %w", err)
	}
	have := map[string]*slot{}
	if cur := k.set.Load(); cur != nil {
		have = cur.byID
	}
	keys := make([]*key, 0, len(stored)+len(have))
	seen := make(map[string]bool, len(stored)+len(have))
	for _, sk := range stored {
		if seen[sk.ID] {
			continue
		}
		seen[sk.ID] = true
		if old, ok := have[sk.ID]; ok {
			keys = append(keys, old.key)
			continue
		}
		nk, err := k.unseal(sk)
		if err != nil {
			return nil, err
		}
		keys = append(keys, nk)
	}
	for id, old := range have {
		if !seen[id] {
			keys = append(keys, old.key)
		}
	}
	if cur := k.set.Load(); cur != nil && len(keys) == len(cur.byID) {
		// Nothing new: keep the current set, and with it the cache of
		// verified tokens, which a periodic reload would otherwise empty.
		return cur, nil
	}
	return k.newKeySet(keys), nil
}

// newKeySet builds a snapshot from keys (which it may reorder). Everything
// it derives comes from the keys' stored creation times and the config, so
// every instance, and every restart, builds the same rotation.
func (k *Keys) newKeySet(keys []*key) *keySet {
	slices.SortFunc(keys, func(a, b *key) int {
		if c := a.created.Compare(b.created); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	s := &keySet{byID: make(map[string]*slot, len(keys)), sorted: make([]*slot, len(keys)), verified: newVerifiedCache()}
	// Oldest first: the first key of an algorithm signs from its creation,
	// later ones once they have been published for PublishAhead.
	seen := map[jose.SignatureAlgorithm]bool{}
	for i, key := range keys {
		sl := &slot{key: key, activeFrom: key.created}
		if seen[key.alg] {
			sl.activeFrom = key.created.Add(k.cfg.PublishAhead)
		}
		seen[key.alg] = true
		s.sorted[i], s.byID[key.id] = sl, sl
		if !slices.Contains(s.algs, key.alg) {
			s.algs = append(s.algs, key.alg)
		}
		if string(key.alg) == k.cfg.Algorithm {
			s.signers = append(s.signers, sl)
		}
	}
	// Newest first: a key retires once its successor has signed for
	// TTL+Leeway, when the last token the key signed has expired. The
	// successor's activeFrom is never earlier than the key's own: created
	// times increase and all but the first key wait the same PublishAhead.
	next := map[jose.SignatureAlgorithm]*slot{}
	for i := len(keys) - 1; i >= 0; i-- {
		sl := s.sorted[i]
		if n := next[sl.alg]; n != nil {
			sl.retireAt = n.activeFrom.Add(k.cfg.TTL + k.cfg.Leeway)
		}
		next[sl.alg] = sl
	}
	// A key of an algorithm other than the configured one (the algorithm
	// was switched) has no successor of its own; it retires like one that
	// had, once the first configured key created after it has signed for
	// TTL+Leeway. Otherwise a leaked key of the old algorithm would verify
	// for ever.
	var laterSigner *slot
	for i := len(keys) - 1; i >= 0; i-- {
		sl := s.sorted[i]
		if string(sl.alg) == k.cfg.Algorithm {
			laterSigner = sl
			continue
		}
		if laterSigner == nil {
			continue
		}
		if at := laterSigner.activeFrom.Add(k.cfg.TTL + k.cfg.Leeway); sl.retireAt.IsZero() || at.Before(sl.retireAt) {
			sl.retireAt = at
		}
	}
	return s
}

// create generates a key of cfg.Algorithm and stores it sealed.
// The caller holds k.mu.
func (k *Keys) create(ctx context.Context, created time.Time) (*key, error) {
	alg := k.cfg.Algorithm
	var kidRaw [kidLen]byte
	rand.Read(kidRaw[:]) // never fails (Go 1.24+); crashes the process instead
	kid := base64.RawURLEncoding.EncodeToString(kidRaw[:])

	var priv []byte
	switch alg {
	case AlgEdDSA:
		_, sk, err := ed25519.GenerateKey(nil)
		if err != nil {
			return nil, fmt.Errorf("token: generate key: %w", err)
		}
		priv = sk.Seed()
	case AlgES256:
		sk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("token: generate key: %w", err)
		}
		if priv, err = sk.Bytes(); err != nil {
			return nil, fmt.Errorf("token: generate key: %w", err)
		}
	case AlgHS256:
		priv = make([]byte, hmacKeyLen)
		rand.Read(priv)
	}
	nk, err := buildKey(kid, alg, created, priv)
	if err != nil {
		return nil, err
	}
	sealed := k.seal(kid, alg, priv)
	clear(priv)
	err = k.store.CreateSigningKey(ctx, gatehouse.SigningKey{ID: kid, Algorithm: alg, Sealed: sealed, CreatedAt: created})
	if err != nil {
		return nil, fmt.Errorf("token: store signing key: %w", err)
	}
	return nk, nil
}

// sealAAD binds sealed bytes to their kid and algorithm, so a row whose
// ciphertext was swapped with another's, or whose algorithm column was
// edited (say EdDSA to HS256, to make a seed an HMAC key), fails to open.
func sealAAD(kid, alg string) []byte {
	return []byte(kid + "\x00" + alg)
}

// seal encrypts raw private key material (sealbox's format: version,
// nonce, AES-GCM), bound to its kid and algorithm.
func (k *Keys) seal(kid, alg string, raw []byte) []byte {
	return k.box.Seal(sealAAD(kid, alg), raw)
}

// unseal decrypts and parses a stored key.
func (k *Keys) unseal(sk gatehouse.SigningKey) (*key, error) {
	raw, err := k.box.Open(sealAAD(sk.ID, sk.Algorithm), sk.Sealed)
	if err != nil {
		return nil, fmt.Errorf("token: signing key %q: cannot unseal (wrong master key, or tampered)", sk.ID)
	}
	defer clear(raw)
	return buildKey(sk.ID, sk.Algorithm, sk.CreatedAt.UTC(), raw)
}

// buildKey parses raw private key material (Ed25519 seed, P-256 scalar or
// HMAC secret) and prepares everything signing and verifying need, once.
func buildKey(kid, alg string, created time.Time, raw []byte) (*key, error) {
	nk := &key{id: kid, alg: jose.SignatureAlgorithm(alg), created: created}
	var signKey any
	switch alg {
	case AlgEdDSA:
		if len(raw) != ed25519.SeedSize {
			return nil, fmt.Errorf("token: signing key %q: bad Ed25519 seed", kid)
		}
		sk := ed25519.NewKeyFromSeed(raw)
		signKey, nk.verify = sk, sk.Public().(ed25519.PublicKey)
	case AlgES256:
		sk, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), raw)
		if err != nil {
			return nil, fmt.Errorf("token: signing key %q: bad P-256 key: %w", kid, err)
		}
		signKey, nk.verify = sk, &sk.PublicKey
	case AlgHS256:
		if len(raw) != hmacKeyLen {
			return nil, fmt.Errorf("token: signing key %q: bad HMAC key", kid)
		}
		secret := slices.Clone(raw)
		signKey, nk.verify = secret, secret
	default:
		return nil, fmt.Errorf("token: signing key %q: unsupported algorithm %q", kid, alg)
	}
	opts := (&jose.SignerOptions{}).WithType(typAccessToken).WithHeader("kid", kid)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: nk.alg, Key: signKey}, opts)
	if err != nil {
		return nil, fmt.Errorf("token: signing key %q: %w", kid, err)
	}
	nk.signer = signer
	idOpts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid)
	if nk.idSigner, err = jose.NewSigner(jose.SigningKey{Algorithm: nk.alg, Key: signKey}, idOpts); err != nil {
		return nil, fmt.Errorf("token: signing key %q: %w", kid, err)
	}
	if alg != AlgHS256 {
		jwk := jose.JSONWebKey{Key: nk.verify, KeyID: kid, Algorithm: alg, Use: "sig"}
		if nk.jwk, err = jwk.MarshalJSON(); err != nil {
			return nil, fmt.Errorf("token: signing key %q: %w", kid, err)
		}
	}
	return nk, nil
}
