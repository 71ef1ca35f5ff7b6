package main

import (
	"fmt"
	"log/slog"

	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/httpapi"
	"github.com/gatehouse/gatehouse/masterkey"
	"github.com/gatehouse/gatehouse/oauth2"
	"github.com/gatehouse/gatehouse/token"
)

// oauthDeps builds what the service needs for the OAuth provider: client
// secrets are MAC'd, and the refresh tokens of apps' sessions encoded,
// under keys derived from the master secret, so every instance agrees.
func (b *backend) oauthDeps() (auth.OAuthDeps, error) {
	refresh, err := token.NewRefreshCodec(masterkey.Derive(b.master, masterkey.PurposeOAuthRefresh))
	if err != nil {
		return auth.OAuthDeps{}, fmt.Errorf("oauth refresh codec: %w", err)
	}
	return auth.OAuthDeps{
		Store:        b.store,
		ClientKey:    masterkey.Derive(b.master, masterkey.PurposeOAuthClients),
		RefreshCodec: refresh,
	}, nil
}

// oauthMount builds the provider's HTTP side for the API server.
func oauthMount(c *config, svc *auth.Service, logger *slog.Logger) *httpapi.OAuthMount {
	public := c.PublicURL
	if public == "" {
		public = c.Issuer
	}
	p := oauth2.New(oauth2.Config{
		Issuer: c.Issuer, PublicURL: public,
		TLSClientAuth: tlsClientAuth(c),
		ClientIP:      httpapi.ClientIP(c.proxies),
	}, svc, logger)
	var routes []httpapi.Route
	for _, r := range oauth2.Routes() {
		routes = append(routes, httpapi.Route{Method: r[0], Pattern: r[1]})
	}
	return &httpapi.OAuthMount{Handler: p.Handler(), Discovery: p.Discovery(), Routes: routes}
}

// tlsClientAuth reports whether clients can present certificates: the
// public listener serves TLS and verifies client certificates against
// --tls-client-ca (tls.go).
func tlsClientAuth(c *config) bool { return c.TLSCert != "" && c.TLSClientCA != "" }
