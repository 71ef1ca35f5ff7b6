// Package verifier checks Gatehouse access tokens inside a Go resource
// server, without a network round trip per request: it verifies the JWS
// signature against Gatehouse's JWKS (fetched and cached; refetched when a
// token names an unknown kid, at most once every few seconds), pins the
// algorithms, checks iss, aud, exp, nbf, iat and typ "at+jwt", and applies
// Gatehouse's revocation feed (an SSE stream with reconnect and cursor,
// falling back to polling), so that a token of a logged-out session, of a
// user whose password changed or who was disabled, or a revoked token, is
// refused within about a second, not at its expiry.
//
//	v, err := verifier.New(verifier.Config{
//		Issuer:         "https://auth.example.com",
//		Audience:       "https://api.example.com",
//		FeedCredential: os.Getenv("GATEHOUSE_FEED_KEY"), // an API key with scope revocations:read
//	})
//	if err != nil { ... }
//	if err := v.Start(ctx); err != nil { ... } // first JWKS and revocations loaded
//	mux.Handle("/admin/", v.Middleware(verifier.Require{Roles: []string{"admin"}})(adminHandler))
//
// When the verifier cannot vouch for its revocation state (the feed has not
// been read for Config.StaleAfter), Verify fails closed with ErrUnavailable
// unless Config.FailOpen.
package verifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Errors of Verify. ErrInvalidToken is answered 401, ErrUnavailable 503.
var (
	ErrInvalidToken = errors.New("invalid access token")
	ErrUnavailable  = errors.New("revocation state not current")
)

// Limits and defaults.
const (
	maxTokenLen = 8 << 10
	// MaxLeeway is the largest clock leeway accepted for exp, nbf and iat.
	MaxLeeway = 60 * time.Second

	defaultLeeway          = 30 * time.Second
	defaultRefetchInterval = 5 * time.Second
	defaultJWKSRefresh     = 5 * time.Minute
	defaultPollInterval    = 2 * time.Second
	defaultStaleAfter      = 45 * time.Second
	defaultStreamIdle      = 40 * time.Second
	defaultRetainFor       = 24 * time.Hour
	cacheMax               = 10000
)

// Config configures a Verifier. Issuer and Audience are required, and
// FeedCredential unless DisableFeed.
type Config struct {
	// Issuer is the expected iss, Gatehouse's --issuer. The JWKS and the
	// feed are found under it unless JWKSURL / FeedURL say otherwise.
	Issuer string
	// Audience must be among the token's aud (Gatehouse's --audience).
	Audience string
	// JWKSURL defaults to Issuer + "/.well-known/jwks.json".
	JWKSURL string
	// Algorithms accepted: "EdDSA" and/or "ES256" (default EdDSA). Tokens
	// signed otherwise, "none" and HMAC included, are refused.
	Algorithms []string
	// Leeway for exp, nbf and iat; default 30s, at most MaxLeeway.
	Leeway time.Duration

	// FeedURL defaults to Issuer + "/auth/revocations".
	FeedURL string
	// FeedCredential is the Bearer credential the feed is read with: an
	// API key (or token) with scope revocations:read.
	FeedCredential string
	// DisableFeed turns revocation off: tokens are then good until they
	// expire. Only for tests and services that accept that.
	DisableFeed bool
	// PollInterval is how often the feed is polled while the stream is
	// unavailable; default 2s.
	PollInterval time.Duration
	// StaleAfter: with no word from the feed for longer (an event, a
	// heartbeat or a poll), Verify answers ErrUnavailable; default 45s.
	StaleAfter time.Duration
	// FailOpen accepts tokens on stale revocation state instead.
	FailOpen bool
	// RetainFor is how long a revocation is kept after it was made; it
	// must exceed the longest access-token lifetime. Default 24h.
	RetainFor time.Duration

	// RefetchInterval is the least time between JWKS fetches caused by an
	// unknown kid; default 5s.
	RefetchInterval time.Duration

	// HTTPClient for the JWKS and the feed; it must not have a Timeout
	// (the stream stays open). Default: a client with no timeout.
	HTTPClient *http.Client
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Claims are the claims of a verified access token.
type Claims struct {
	Issuer    string
	Audience  []string
	Subject   string // the user id
	SessionID string // sid
	ID        string // jti
	Role      string
	Scopes    []string // from the space-separated "scope" claim, if any
	AMR       []string
	IssuedAt  time.Time
	ExpiresAt time.Time
	NotBefore time.Time // zero without nbf
	ClientID  string    // the OAuth client the token was issued to, if any
	// CertThumbprint is cnf "x5t#S256" (RFC 8705): the token is good only
	// from a caller presenting that client certificate; the middleware
	// holds it to the request's TLS connection.
	CertThumbprint string
}

// HasScope reports whether the token carries scope.
func (c *Claims) HasScope(scope string) bool { return slices.Contains(c.Scopes, scope) }

// Verifier verifies access tokens. Its methods are safe for concurrent use.
type Verifier struct {
	cfg    Config
	algs   []jose.SignatureAlgorithm
	client *http.Client
	logger *slog.Logger

	keys  *keyCache
	state *state
	cache *verifiedCache

	started sync.Once
	wg      sync.WaitGroup
}

// New checks cfg and returns a Verifier; Start loads it.
func New(cfg Config) (*Verifier, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("verifier: Issuer and Audience are required")
	}
	base := strings.TrimRight(cfg.Issuer, "/")
	if cfg.JWKSURL == "" {
		cfg.JWKSURL = base + "/.well-known/jwks.json"
	}
	if cfg.FeedURL == "" {
		cfg.FeedURL = base + "/auth/revocations"
	}
	for _, u := range []string{cfg.JWKSURL, cfg.FeedURL} {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
			return nil, fmt.Errorf("verifier: %q is not an http(s) URL", u)
		}
	}
	if !cfg.DisableFeed && cfg.FeedCredential == "" {
		return nil, errors.New("verifier: FeedCredential is required (an API key with scope revocations:read), or set DisableFeed")
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{string(jose.EdDSA)}
	}
	var algs []jose.SignatureAlgorithm
	for _, a := range cfg.Algorithms {
		switch jose.SignatureAlgorithm(a) {
		case jose.EdDSA, jose.ES256:
			algs = append(algs, jose.SignatureAlgorithm(a))
		default:
			// HMAC would need the shared secret (and verifying HS256 with
			// a public key is the classic confusion attack); none is none.
			return nil, fmt.Errorf("verifier: algorithm %q not supported (EdDSA, ES256)", a)
		}
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = defaultLeeway
	}
	if cfg.Leeway < 0 || cfg.Leeway > MaxLeeway {
		return nil, fmt.Errorf("verifier: Leeway must be between 0 and %s", MaxLeeway)
	}
	cfg.PollInterval = cmpOr(cfg.PollInterval, defaultPollInterval)
	cfg.StaleAfter = cmpOr(cfg.StaleAfter, defaultStaleAfter)
	cfg.RetainFor = cmpOr(cfg.RetainFor, defaultRetainFor)
	cfg.RefetchInterval = cmpOr(cfg.RefetchInterval, defaultRefetchInterval)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	v := &Verifier{cfg: cfg, algs: algs, client: client, logger: logger, cache: newVerifiedCache()}
	v.keys = newKeyCache(cfg.JWKSURL, algs, client, cfg.RefetchInterval, cfg.Now, v.cache.clear)
	v.state = newState(cfg.Now, cfg.RetainFor)
	return v, nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Start fetches the JWKS and every revocation still able to matter, and
// returns an error if either fails (a service that cannot vouch for
// revocations should not start serving). It then follows the feed and
// refreshes the JWKS in the background until ctx ends; Wait waits for that.
func (v *Verifier) Start(ctx context.Context) error {
	var err error
	v.started.Do(func() {
		if err = v.keys.fetch(ctx); err != nil {
			err = fmt.Errorf("verifier: %w", err)
			return
		}
		if !v.cfg.DisableFeed {
			f := &feedClient{v: v}
			if err = f.catchUp(ctx); err != nil {
				err = fmt.Errorf("verifier: initial revocations: %w", err)
				return
			}
			v.wg.Go(func() { f.run(ctx) })
		}
		v.wg.Go(func() { v.refreshKeys(ctx) })
		v.wg.Go(func() { v.prune(ctx) })
	})
	return err
}

// Wait blocks until the background work has stopped after Start's context
// ended.
func (v *Verifier) Wait() { v.wg.Wait() }

// Ready reports whether revocation state is current (nil), or why not.
func (v *Verifier) Ready() error {
	if v.cfg.DisableFeed {
		return nil
	}
	if age, stale := v.state.staleness(v.cfg.StaleAfter); stale {
		return fmt.Errorf("%w: no word from the revocation feed for %s", ErrUnavailable, age.Round(time.Millisecond))
	}
	return nil
}

// APIKeyRevoked reports whether the feed has revoked the API key with this
// id (for services that cache their own verdicts on API keys).
func (v *Verifier) APIKeyRevoked(id string) bool { return v.state.apiKeyRevoked(id) }

// accessClaims is the payload as accepted: aud a string or an array, times
// as pointers so a missing one is told from zero.
type accessClaims struct {
	Issuer    string           `json:"iss"`
	Audience  jwt.Audience     `json:"aud"`
	Subject   string           `json:"sub"`
	SessionID string           `json:"sid"`
	ID        string           `json:"jti"`
	Role      string           `json:"role"`
	Scope     string           `json:"scope"`
	AMR       []string         `json:"amr"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	ExpiresAt *jwt.NumericDate `json:"exp"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	ClientID  string           `json:"client_id"`
	CNF       *struct {
		X5tS256 string `json:"x5t#S256"`
	} `json:"cnf"`
}

// Verify checks raw (the token of an Authorization: Bearer header) and
// returns its claims, or an error wrapping ErrInvalidToken or
// ErrUnavailable.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	now := v.cfg.Now()
	c, ok := v.cache.get(raw)
	if !ok {
		var err error
		if c, err = v.verifySignature(ctx, raw); err != nil {
			return nil, err
		}
	}
	if err := v.checkTimes(c, now); err != nil {
		return nil, err
	}
	if !ok {
		v.cache.put(raw, c)
	}
	if !v.cfg.DisableFeed {
		if v.state.revoked(c) {
			return nil, fmt.Errorf("%w: revoked", ErrInvalidToken)
		}
		if !v.cfg.FailOpen {
			if err := v.Ready(); err != nil {
				return nil, err
			}
		}
	}
	cp := *c // the cached claims stay the cache's
	return &cp, nil
}

func (v *Verifier) verifySignature(ctx context.Context, raw string) (*Claims, error) {
	if len(raw) > maxTokenLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrInvalidToken, maxTokenLen)
	}
	// Only the configured algorithms parse at all: "none", HMAC and any
	// other are refused here, before a key is looked at.
	tok, err := jose.ParseSignedCompact(raw, v.algs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if len(tok.Signatures) != 1 {
		return nil, fmt.Errorf("%w: want one signature", ErrInvalidToken)
	}
	h := tok.Signatures[0].Header
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
		return nil, fmt.Errorf("%w: typ is not at+jwt", ErrInvalidToken)
	}
	if _, ok := h.ExtraHeaders["crit"]; ok {
		return nil, fmt.Errorf("%w: crit header", ErrInvalidToken)
	}
	if _, ok := h.ExtraHeaders["b64"]; ok {
		return nil, fmt.Errorf("%w: b64 header", ErrInvalidToken)
	}
	if h.KeyID == "" {
		return nil, fmt.Errorf("%w: no kid", ErrInvalidToken)
	}
	// The key comes from our JWKS by kid, never from the token's own
	// jwk/jku/x5u/x5c headers, which are ignored.
	key, err := v.keys.get(ctx, h.KeyID)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if h.Algorithm != string(key.alg) {
		return nil, fmt.Errorf("%w: alg %q does not match the key's %q", ErrInvalidToken, h.Algorithm, key.alg)
	}
	payload, err := tok.Verify(key.public)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	var ac accessClaims
	if err := json.Unmarshal(payload, &ac); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrInvalidToken, err)
	}
	switch {
	case ac.Issuer != v.cfg.Issuer:
		return nil, fmt.Errorf("%w: wrong issuer", ErrInvalidToken)
	case !ac.Audience.Contains(v.cfg.Audience):
		return nil, fmt.Errorf("%w: wrong audience", ErrInvalidToken)
	case ac.ExpiresAt == nil || ac.IssuedAt == nil:
		return nil, fmt.Errorf("%w: exp and iat are required", ErrInvalidToken)
	case !saneDate(ac.ExpiresAt) || !saneDate(ac.IssuedAt) || (ac.NotBefore != nil && !saneDate(ac.NotBefore)):
		return nil, fmt.Errorf("%w: time claim out of range", ErrInvalidToken)
	case ac.Subject == "" || ac.ID == "":
		return nil, fmt.Errorf("%w: sub and jti are required", ErrInvalidToken)
	}
	c := &Claims{
		Issuer: ac.Issuer, Audience: ac.Audience, Subject: ac.Subject, SessionID: ac.SessionID,
		ID: ac.ID, Role: ac.Role, AMR: ac.AMR, Scopes: strings.Fields(ac.Scope),
		IssuedAt: ac.IssuedAt.Time().UTC(), ExpiresAt: ac.ExpiresAt.Time().UTC(),
	}
	if ac.NotBefore != nil {
		c.NotBefore = ac.NotBefore.Time().UTC()
	}
	c.ClientID = ac.ClientID
	if ac.CNF != nil {
		if ac.CNF.X5tS256 == "" {
			return nil, fmt.Errorf("%w: cnf without x5t#S256", ErrInvalidToken)
		}
		c.CertThumbprint = ac.CNF.X5tS256
	}
	return c, nil
}

// checkTimes checks exp, iat and nbf at now. It runs on every call, cached
// or not.
func (v *Verifier) checkTimes(c *Claims, now time.Time) error {
	switch {
	case !now.Before(c.ExpiresAt.Add(v.cfg.Leeway)):
		return fmt.Errorf("%w: expired", ErrInvalidToken)
	case c.IssuedAt.After(now.Add(v.cfg.Leeway)):
		return fmt.Errorf("%w: issued in the future", ErrInvalidToken)
	case c.NotBefore.After(now.Add(v.cfg.Leeway)):
		return fmt.Errorf("%w: not valid yet", ErrInvalidToken)
	}
	return nil
}

// maxNumericDate is 9999-12-31T23:59:59Z: larger dates are refused rather
// than risk overflow in time arithmetic.
const maxNumericDate = 253402300799

func saneDate(d *jwt.NumericDate) bool { return *d > 0 && *d <= maxNumericDate }
