package token

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse/gatehouse"
)

// ErrInvalidToken is returned (wrapped, with the reason) for every access
// token Verify rejects. The HTTP layer maps it to 401 invalid_token.
var ErrInvalidToken = errors.New("invalid token")

const (
	// maxAccessLen bounds a token before any parsing: ours are ~400 bytes,
	// and nothing larger is worth base64- and JSON-decoding.
	maxAccessLen = 8 << 10
	// typAccessToken is the JWT profile type of RFC 9068, so an access
	// token cannot be confused with an ID token or another JWT signed with
	// the same key.
	typAccessToken = "at+jwt"
)

// Claims are the claims of a Gatehouse access token.
type Claims struct {
	Issuer, Audience, Subject, SessionID, ID string // ID is the jti
	Role                                     gatehouse.Role
	IssuedAt, ExpiresAt                      time.Time
	// AMR lists the sign-in methods of the token's session (RFC 8176
	// style); empty for tokens that predate it.
	AMR []string
	// ClientID is set on tokens issued by the OAuth provider to a client:
	// for a user (SessionID set) or for the client itself
	// (client_credentials: Subject is the client, no SessionID, no Role).
	ClientID string
	Scope    string // space-separated scopes of an OAuth token
	// CertThumbprint binds the token to a client certificate (RFC 8705
	// cnf "x5t#S256"): base64url SHA-256 of the certificate's DER.
	CertThumbprint string
}

// confirmation is the cnf claim of a certificate-bound token.
type confirmation struct {
	X5tS256 string `json:"x5t#S256"`
}

// signedClaims is the payload as we write it: aud as a single string.
type signedClaims struct {
	Issuer    string        `json:"iss"`
	Audience  string        `json:"aud"`
	Subject   string        `json:"sub"`
	SessionID string        `json:"sid,omitempty"` // absent on a client's own token
	ID        string        `json:"jti"`
	Role      string        `json:"role,omitempty"` // absent on a client's own token
	AMR       []string      `json:"amr,omitempty"`
	IssuedAt  int64         `json:"iat"`
	ExpiresAt int64         `json:"exp"`
	ClientID  string        `json:"client_id,omitempty"`
	Scope     string        `json:"scope,omitempty"`
	CNF       *confirmation `json:"cnf,omitempty"`
}

// parsedClaims is the payload as we accept it: aud may be a string or an
// array (RFC 7519), and pointers tell a missing time claim from zero.
type parsedClaims struct {
	Issuer    string           `json:"iss"`
	Audience  jwt.Audience     `json:"aud"`
	Subject   string           `json:"sub"`
	SessionID string           `json:"sid"`
	ID        string           `json:"jti"`
	Role      string           `json:"role"`
	AMR       []string         `json:"amr"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	ExpiresAt *jwt.NumericDate `json:"exp"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	ClientID  string           `json:"client_id"`
	Scope     string           `json:"scope"`
	CNF       *confirmation    `json:"cnf"`
}

// Sign returns a compact JWS of c signed with the key of cfg.Algorithm that
// signs at c.IssuedAt (keySet.signerAt: a rotated-in key only once it has
// been published for PublishAhead). Empty Issuer and Audience default to
// the configured ones, a zero ExpiresAt to IssuedAt+TTL and an empty ID to
// a random jti. IssuedAt is required (Sign does not read the clock; the
// caller's iat is its now), and a token that Verify would reject for its
// content is refused here instead.
func (k *Keys) Sign(c Claims) (string, error) {
	set := k.set.Load()
	if set == nil || set.newest() == nil {
		return "", errors.New("token: Sign before Load")
	}
	if c.Issuer == "" {
		c.Issuer = k.cfg.Issuer
	}
	if c.Audience == "" {
		c.Audience = k.cfg.Audience
	}
	if c.IssuedAt.IsZero() {
		return "", errors.New("token: IssuedAt is required")
	}
	signer := set.signerAt(c.IssuedAt)
	if c.ExpiresAt.IsZero() {
		c.ExpiresAt = c.IssuedAt.Add(k.cfg.TTL)
	}
	if c.ID == "" {
		var b [16]byte
		rand.Read(b[:])
		c.ID = base64.RawURLEncoding.EncodeToString(b[:])
	}
	if err := checkShape(c.Subject, c.SessionID, c.ClientID, c.Role); err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	if c.ExpiresAt.Unix() <= c.IssuedAt.Unix() {
		return "", errors.New("token: ExpiresAt must be after IssuedAt")
	}
	sc := signedClaims{
		Issuer: c.Issuer, Audience: c.Audience, Subject: c.Subject,
		SessionID: c.SessionID, ID: c.ID, Role: string(c.Role), AMR: c.AMR,
		IssuedAt: c.IssuedAt.Unix(), ExpiresAt: c.ExpiresAt.Unix(),
		ClientID: c.ClientID, Scope: c.Scope,
	}
	if c.CertThumbprint != "" {
		sc.CNF = &confirmation{X5tS256: c.CertThumbprint}
	}
	payload, err := json.Marshal(sc)
	if err != nil {
		return "", fmt.Errorf("token: marshal claims: %w", err)
	}
	// The signer was built once per key with typ and kid in its protected
	// header; go-jose does the JWS encoding.
	jws, err := signer.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	return jws.CompactSerialize()
}

// errUnknownKey marks a token that may be signed by a key another instance
// created since our last load.
var errUnknownKey = errors.New("unknown signing key")

// Verify checks an access token at time now and returns its claims. Every
// rejection wraps ErrInvalidToken. The signature must verify under one of
// our keys, found by kid, whose algorithm equals the header's alg: header
// keys (jku, jwk, x5u, x5c) are never used, so no token can bring its own
// key, and "none" or HS256-with-a-public-key tokens match no key.
//
// A retired key (see slot.retireAt) verifies nothing: it left the JWKS at
// the same moment, when every token it legitimately signed had expired.
//
// A kid we do not hold triggers one reload from the store (at most once a
// second across all requests), since another instance may have rotated.
// If that reload fails, the error also wraps the store's error.
func (k *Keys) Verify(ctx context.Context, raw string, now time.Time) (Claims, error) {
	return k.verify(ctx, raw, now, false)
}

// VerifyAnyAudience is Verify without the audience check: tokens the OAuth
// provider issued to a client carry the client's audience, and Gatehouse
// itself still answers for them at userinfo and introspection.
func (k *Keys) VerifyAnyAudience(ctx context.Context, raw string, now time.Time) (Claims, error) {
	return k.verify(ctx, raw, now, true)
}

func (k *Keys) verify(ctx context.Context, raw string, now time.Time, anyAudience bool) (Claims, error) {
	if len(raw) > maxAccessLen {
		return Claims{}, fmt.Errorf("%w: token longer than %d bytes", ErrInvalidToken, maxAccessLen)
	}
	if !canonicalSegments(raw) {
		return Claims{}, fmt.Errorf("%w: malformed base64url", ErrInvalidToken)
	}
	set := k.set.Load()
	if set == nil {
		return Claims{}, fmt.Errorf("%w: keys not loaded", ErrInvalidToken)
	}
	// The same token verified before under this key set: skip the
	// signature, re-check the claims at now (verified.go).
	if v, ok := set.verified.get(raw); ok {
		if v.key.retired(now) {
			return Claims{}, fmt.Errorf("%w: signing key %q retired", ErrInvalidToken, v.key.id)
		}
		return k.checkClaims(v.claims, now, anyAudience)
	}
	tok, key, err := set.find(raw)
	if errors.Is(err, errUnknownKey) {
		var rerr error
		if set, rerr = k.reloadForMiss(ctx, now); rerr != nil {
			return Claims{}, fmt.Errorf("%w: %w (reload: %w)", ErrInvalidToken, err, rerr)
		}
		tok, key, err = set.find(raw)
	}
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if key.retired(now) {
		// Every token the key signed has expired, so a token it verifies
		// now can only come from a leaked key; it is also gone from the
		// JWKS, where resource servers stop accepting it at this moment.
		return Claims{}, fmt.Errorf("%w: signing key %q retired", ErrInvalidToken, key.id)
	}
	h := tok.Signatures[0].Header
	if _, ok := h.ExtraHeaders["crit"]; ok {
		// We understand no extension, so a critical one means reject (RFC 7515 §4.1.11).
		return Claims{}, fmt.Errorf("%w: crit header", ErrInvalidToken)
	}
	if _, ok := h.ExtraHeaders["b64"]; ok {
		// go-jose honours b64:false even without crit; our tokens never carry it.
		return Claims{}, fmt.Errorf("%w: b64 header", ErrInvalidToken)
	}
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !validTyp(typ) {
		return Claims{}, fmt.Errorf("%w: typ is not at+jwt", ErrInvalidToken)
	}

	payload, err := tok.Verify(key.verify)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	// encoding/json rather than go-jose's older fork of it (what
	// jwt.JSONWebToken.Claims uses): same result, about twice as fast.
	var pc parsedClaims
	if err := json.Unmarshal(payload, &pc); err != nil {
		return Claims{}, fmt.Errorf("%w: claims: %w", ErrInvalidToken, err)
	}
	c, err := k.checkClaims(&pc, now, anyAudience)
	if err == nil {
		set.verified.put(raw, &verifiedToken{claims: &pc, key: key}, now) // set: the snapshot key came from
	}
	return c, err
}

// find parses raw with the algorithms of keys in s and returns the token
// and the key its kid names, which must be of the header's algorithm.
//
// It uses jose.ParseSignedCompact rather than jwt.ParseSigned: the same
// parser, but the result gives the verified payload as bytes, which we
// decode once with encoding/json.
func (s *keySet) find(raw string) (*jose.JSONWebSignature, *slot, error) {
	tok, err := jose.ParseSignedCompact(raw, s.algs)
	if err != nil {
		var ua *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &ua) && supportedAlg(string(ua.Got)) {
			// A supported algorithm we hold no key of yet: maybe new.
			return nil, nil, fmt.Errorf("%w: alg %q", errUnknownKey, ua.Got)
		}
		return nil, nil, fmt.Errorf("malformed: %v", err)
	}
	if len(tok.Signatures) != 1 {
		return nil, nil, errors.New("want exactly one signature")
	}
	h := tok.Signatures[0].Header
	if h.KeyID == "" {
		return nil, nil, errors.New("no kid")
	}
	key := s.byID[h.KeyID]
	if key == nil {
		return nil, nil, errUnknownKey
	}
	if h.Algorithm != string(key.alg) {
		return nil, nil, fmt.Errorf("alg %q does not match key's %q", h.Algorithm, key.alg)
	}
	return tok, key, nil
}

// checkClaims validates the verified payload.
func (k *Keys) checkClaims(pc *parsedClaims, now time.Time, anyAudience bool) (Claims, error) {
	leeway := k.cfg.Leeway
	switch {
	case pc.Issuer != k.cfg.Issuer:
		return Claims{}, fmt.Errorf("%w: wrong issuer", ErrInvalidToken)
	case anyAudience && len(pc.Audience) == 0:
		return Claims{}, fmt.Errorf("%w: no audience", ErrInvalidToken)
	case !anyAudience && !pc.Audience.Contains(k.cfg.Audience):
		return Claims{}, fmt.Errorf("%w: wrong audience", ErrInvalidToken)
	case pc.ExpiresAt == nil:
		return Claims{}, fmt.Errorf("%w: no exp", ErrInvalidToken)
	case pc.IssuedAt == nil:
		return Claims{}, fmt.Errorf("%w: no iat", ErrInvalidToken)
	case !saneDate(pc.ExpiresAt) || !saneDate(pc.IssuedAt) || (pc.NotBefore != nil && !saneDate(pc.NotBefore)):
		return Claims{}, fmt.Errorf("%w: time claim out of range", ErrInvalidToken)
	case !now.Before(pc.ExpiresAt.Time().Add(leeway)):
		return Claims{}, fmt.Errorf("%w: expired", ErrInvalidToken)
	case pc.IssuedAt.Time().After(now.Add(leeway)):
		return Claims{}, fmt.Errorf("%w: issued in the future", ErrInvalidToken)
	case pc.NotBefore != nil && pc.NotBefore.Time().After(now.Add(leeway)):
		return Claims{}, fmt.Errorf("%w: not yet valid", ErrInvalidToken)
	case pc.ID == "":
		return Claims{}, fmt.Errorf("%w: missing jti", ErrInvalidToken)
	}
	if err := checkShape(pc.Subject, pc.SessionID, pc.ClientID, gatehouse.Role(pc.Role)); err != nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	aud := k.cfg.Audience
	if anyAudience {
		aud = pc.Audience[0]
	}
	thumb := ""
	if pc.CNF != nil {
		if pc.CNF.X5tS256 == "" {
			// A cnf we cannot hold the caller to must not pass as unbound.
			return Claims{}, fmt.Errorf("%w: cnf without x5t#S256", ErrInvalidToken)
		}
		thumb = pc.CNF.X5tS256
	}
	return Claims{
		ClientID:       pc.ClientID,
		Scope:          pc.Scope,
		CertThumbprint: thumb,
		Issuer:         pc.Issuer,
		Audience:       aud,
		Subject:        pc.Subject,
		SessionID:      pc.SessionID,
		ID:             pc.ID,
		Role:           gatehouse.Role(pc.Role),
		AMR:            pc.AMR,
		IssuedAt:       pc.IssuedAt.Time().UTC(),
		ExpiresAt:      pc.ExpiresAt.Time().UTC(),
	}, nil
}

// maxNumericDate is 9999-12-31T23:59:59Z. Bounding NumericDates keeps
// time arithmetic far from overflow: go-jose converts out-of-range floats
// to int64 in an architecture-dependent way.
const maxNumericDate = 253402300799

func saneDate(d *jwt.NumericDate) bool { return *d > 0 && *d <= maxNumericDate }

// reloadForMiss re-reads the store after a kid miss, at most once per
// reloadInterval (measured on the callers' clock). Concurrent misses wait
// for the reload in flight instead of starting their own, so a token from
// a freshly rotated key verifies for every request that carries it.
func (k *Keys) reloadForMiss(ctx context.Context, now time.Time) (*keySet, error) {
	k.reloadMu.Lock()
	if ch := k.reloading; ch != nil {
		k.reloadMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		return k.set.Load(), k.lastReloadResult()
	}
	if !k.lastReload.IsZero() && now.Sub(k.lastReload).Abs() < reloadInterval {
		// Throttled: answer as the last reload did, so a store outage
		// stays a 503 for every caller, not only for the first.
		err := k.lastReloadErr
		k.reloadMu.Unlock()
		return k.set.Load(), err
	}
	k.lastReload = now
	ch := make(chan struct{})
	k.reloading = ch
	k.reloadMu.Unlock()

	var err error
	defer func() {
		k.reloadMu.Lock()
		k.reloading = nil
		k.lastReloadErr = err
		close(ch)
		k.reloadMu.Unlock()
	}()
	k.mu.Lock()
	defer k.mu.Unlock()
	var set *keySet
	set, err = k.readStore(ctx)
	if err != nil {
		return k.set.Load(), err
	}
	k.set.Store(set)
	return set, nil
}

func (k *Keys) lastReloadResult() error {
	k.reloadMu.Lock()
	defer k.reloadMu.Unlock()
	return k.lastReloadErr
}

// validTyp accepts "at+jwt" and its full media type, case-insensitively
// (RFC 8725 §3.11, RFC 9068 §2.1).
// checkShape says whether the subject claims fit one of the three kinds of
// access token: a user's session token (sid and a role), an OAuth token of
// a user's session (the same, plus client_id), and a client's own
// client_credentials token (client_id, no sid, no role).
func checkShape(sub, sid, clientID string, role gatehouse.Role) error {
	switch {
	case sub == "":
		return errors.New("missing sub")
	case sid == "" && clientID == "":
		return errors.New("missing sid")
	case sid != "" && !role.Valid():
		return errors.New("invalid role")
	case sid == "" && role != "":
		return errors.New("role on a client token")
	}
	return nil
}

func validTyp(typ string) bool {
	return strings.EqualFold(typ, typAccessToken) || strings.EqualFold(typ, "application/"+typAccessToken)
}

func supportedAlg(alg string) bool {
	return alg == AlgEdDSA || alg == AlgES256 || alg == AlgHS256
}

// canonicalSegments rejects segments whose last base64url character has
// non-zero unused bits. go-jose decodes leniently, so without this several
// token strings would carry the same signed bytes; with it a token has one
// spelling, and changing any character of it invalidates it. Other
// malformed input is left to the parser.
func canonicalSegments(raw string) bool {
	for seg := range strings.SplitSeq(raw, ".") {
		n := len(seg)
		if n == 0 {
			continue
		}
		v := b64Value(seg[n-1])
		switch n % 4 {
		case 1:
			return false
		case 2:
			if v&0x0f != 0 {
				return false
			}
		case 3:
			if v&0x03 != 0 {
				return false
			}
		}
	}
	return true
}

// b64Value is the 6-bit value of a base64url character, or 0 for any other
// byte (which the decoder rejects anyway).
func b64Value(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c - 'A'
	case 'a' <= c && c <= 'z':
		return c - 'a' + 26
	case '0' <= c && c <= '9':
		return c - '0' + 52
	case c == '-':
		return 62
	case c == '_':
		return 63
	}
	return 0
}
