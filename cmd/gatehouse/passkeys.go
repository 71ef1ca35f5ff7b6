package main

import (
	"fmt"
	"net/url"
	"slices"

	"github.com/go-webauthn/webauthn/webauthn"
)

// newWebAuthn configures passkeys from --public-url (its host is the
// relying party id, its origin an allowed origin) and --allowed-origins.
func newWebAuthn(c *config) (*webauthn.WebAuthn, error) {
	u, err := url.Parse(c.PublicURL)
	if err != nil {
		return nil, fmt.Errorf("--public-url: %w", err)
	}
	origin := u.Scheme + "://" + u.Host
	origins := []string{origin}
	for _, o := range c.origins {
		if !slices.Contains(origins, o) {
			origins = append(origins, o)
		}
	}
	wa, err := webauthn.New(&webauthn.Config{
		RPID:          u.Hostname(),
		RPDisplayName: c.ProductName,
		RPOrigins:     origins,
	})
	if err != nil {
		return nil, fmt.Errorf("passkeys (relying party %s): %w", u.Hostname(), err)
	}
	return wa, nil
}
