package idp

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse"
)

// discoveryRetry is how long a failed discovery is remembered: sign-ins
// with a provider that is down fail fast instead of each waiting for the
// timeout, and the provider is tried again soon after.
const discoveryRetry = 5 * time.Second

// oidcUpstream is any OpenID provider. Its discovery document is fetched on
// first use and kept; its key set (go-oidc's RemoteKeySet) is fetched on
// first verification and refetched when a token names a key it does not
// hold, concurrent refetches sharing one request.
type oidcUpstream struct {
	p      gatehouse.IdentityProvider
	secret string
	client *http.Client

	mu       sync.Mutex
	provider *oidc.Provider
	failedAt time.Time
	lastErr  error
}

func newOIDC(p gatehouse.IdentityProvider, secret string, client *http.Client) *oidcUpstream {
	return &oidcUpstream{p: p, secret: secret, client: client}
}

func (o *oidcUpstream) discover(ctx context.Context) (*oidc.Provider, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return o.provider, nil
	}
	if !o.failedAt.IsZero() && time.Since(o.failedAt) < discoveryRetry {
		return nil, o.lastErr
	}
	// The provider keeps the client of this context for its key set, not
	// the context itself: the request's cancellation must not reach it.
	dctx, cancel := context.WithTimeout(withClient(context.WithoutCancel(ctx), o.client), o.client.Timeout)
	defer cancel()
	prov, err := oidc.NewProvider(dctx, o.p.Issuer)
	if err != nil {
		o.failedAt, o.lastErr = time.Now(), fmt.Errorf("%w: discovery of %s: %w", ErrUnavailable, o.p.Issuer, err)
		return nil, o.lastErr
	}
	o.provider, o.failedAt, o.lastErr = prov, time.Time{}, nil
	return prov, nil
}

func (o *oidcUpstream) config(prov *oidc.Provider, redirectURI string) *oauth2.Config {
	return &oauth2.Config{
		ClientID: o.p.ClientID, ClientSecret: o.secret, Endpoint: prov.Endpoint(),
		RedirectURL: redirectURI, Scopes: o.p.Scopes,
	}
}

func (o *oidcUpstream) AuthCodeURL(ctx context.Context, state, nonce, verifier, redirectURI string) (string, error) {
	prov, err := o.discover(ctx)
	if err != nil {
		return "", err
	}
	return o.config(prov, redirectURI).AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), nil
}

func (o *oidcUpstream) Exchange(ctx context.Context, code, verifier, nonce, redirectURI string) (Claims, error) {
	prov, err := o.discover(ctx)
	if err != nil {
		return Claims{}, err
	}
	ctx, cancel := context.WithTimeout(withClient(ctx, o.client), 2*o.client.Timeout)
	defer cancel()
	tok, err := o.config(prov, redirectURI).Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		return Claims{}, exchangeError(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Claims{}, fmt.Errorf("%w: no id_token in the token response", ErrInvalidToken)
	}
	// Signature by a key of the provider's JWKS (refetched once for an
	// unknown kid), an algorithm the provider announces (never "none"),
	// iss, aud (our client id) and exp.
	idt, err := prov.Verifier(&oidc.Config{ClientID: o.p.ClientID}).Verify(ctx, raw)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return Claims{}, fmt.Errorf("%w: nonce does not match", ErrInvalidToken)
	}
	var c struct {
		Email         string          `json:"email"`
		EmailVerified json.RawMessage `json:"email_verified"`
		Name          string          `json:"name"`
	}
	if err := idt.Claims(&c); err != nil {
		return Claims{}, fmt.Errorf("%w: claims: %w", ErrInvalidToken, err)
	}
	if idt.Subject == "" {
		return Claims{}, fmt.Errorf("%w: no sub", ErrInvalidToken)
	}
	return Claims{Subject: idt.Subject, Email: c.Email, EmailVerified: isTrue(c.EmailVerified), Name: c.Name}, nil
}

// isTrue reads email_verified, which some providers send as the string
// "true" rather than a boolean. Anything else is false.
func isTrue(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "true" || s == `"true"`
}
