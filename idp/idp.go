// Package idp speaks to upstream identity providers: any OpenID provider
// (discovery and JWKS fetched lazily with go-oidc, cached, with timeouts, so
// a provider that is down fails only its own sign-ins) and GitHub's OAuth
// 2.0 with its user and emails APIs. It also holds the pieces of the
// redirect flow that need no storage: the sealed flow cookie and the
// redirect_to policy. Matching identities to users is package auth's job.
package idp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/sealbox"
)

// Errors of a sign-in at a provider.
var (
	// ErrUnavailable: the provider could not be reached, answered too
	// slowly or answered with a server error.
	ErrUnavailable = errors.New("idp: provider unavailable")
	// ErrCodeRefused: the provider refused to redeem the code (used,
	// expired, or not issued for this verifier and client).
	ErrCodeRefused = errors.New("idp: authorization code refused")
	// ErrInvalidToken: the ID token failed verification (signature,
	// issuer, audience, expiry, nonce) or is missing.
	ErrInvalidToken = errors.New("idp: invalid ID token")
	// ErrBadAnswer: the provider answered something unusable.
	ErrBadAnswer = errors.New("idp: unusable answer from provider")
)

// Claims is who the provider says the user is.
type Claims struct {
	Subject       string
	Email         string
	EmailVerified bool
	Name          string
}

// Upstream is one configured provider.
type Upstream interface {
	// AuthCodeURL is where to send the browser: the provider's
	// authorization endpoint with state, nonce and the S256 challenge of
	// verifier. An OpenID provider is discovered first (ErrUnavailable).
	AuthCodeURL(ctx context.Context, state, nonce, verifier, redirectURI string) (string, error)
	// Exchange redeems code with verifier and returns the verified claims.
	Exchange(ctx context.Context, code, verifier, nonce, redirectURI string) (Claims, error)
}

// Registry turns stored providers into Upstreams and keeps them, with their
// discovery documents and key sets, while the stored provider is unchanged.
// It is safe for concurrent use.
type Registry struct {
	box    *sealbox.Box
	client *http.Client

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	updatedAt time.Time
	sealed    string
	up        Upstream
}

// NewRegistry returns a registry that opens client secrets with box and
// gives every request to a provider at most timeout.
func NewRegistry(box *sealbox.Box, timeout time.Duration) *Registry {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = timeout
	tr.DialContext = (&net.Dialer{Timeout: timeout}).DialContext
	tr.TLSHandshakeTimeout = timeout
	return &Registry{
		box:    box,
		client: &http.Client{Timeout: timeout, Transport: tr, CheckRedirect: noRedirects},
		cache:  map[string]cached{},
	}
}

// noRedirects: token, user and key endpoints answer directly; following a
// redirect would send credentials where the operator did not configure.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// SealSecret seals a client secret for storage, bound to the provider's
// name so that a sealed value copied to another provider does not open.
func (r *Registry) SealSecret(name, secret string) []byte {
	return r.box.Seal(secretAAD(name), []byte(secret))
}

func secretAAD(name string) []byte { return []byte("gatehouse idp client secret\x00" + name) }

// Upstream returns the provider's Upstream, built once per stored version.
func (r *Registry) Upstream(p gatehouse.IdentityProvider) (Upstream, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.cache[p.Name]; ok && c.updatedAt.Equal(p.UpdatedAt) && c.sealed == string(p.SealedSecret) {
		return c.up, nil
	}
	secret, err := r.box.Open(secretAAD(p.Name), p.SealedSecret)
	if err != nil {
		return nil, fmt.Errorf("idp %s: open client secret: %w", p.Name, err)
	}
	var up Upstream
	switch p.Kind {
	case gatehouse.ProviderOIDC:
		up = newOIDC(p, string(secret), r.client)
	case gatehouse.ProviderGitHub:
		up = newGitHub(p, string(secret), r.client)
	default:
		return nil, fmt.Errorf("idp %s: unknown kind %q", p.Name, p.Kind)
	}
	r.cache[p.Name] = cached{updatedAt: p.UpdatedAt, sealed: string(p.SealedSecret), up: up}
	return up, nil
}

// Forget drops a provider from the cache (after it was removed).
func (r *Registry) Forget(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.cache, name)
}

// withClient makes x/oauth2 and go-oidc use the registry's client.
func withClient(ctx context.Context, c *http.Client) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, c)
}

// exchangeError sorts an error of the token endpoint: a refusal (4xx, or
// an OAuth error body) is the code's fault; anything else the provider's.
func exchangeError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.Response != nil && re.Response.StatusCode >= 500 {
			return fmt.Errorf("%w: token endpoint: %d", ErrUnavailable, re.Response.StatusCode)
		}
		return fmt.Errorf("%w: %s", ErrCodeRefused, re.ErrorCode)
	}
	return fmt.Errorf("%w: token endpoint: %w", ErrUnavailable, err)
}

// --- configuration ------------------------------------------------------

// namePattern is what a provider's name may be: it appears in URLs and in
// the redirect URI registered at the provider.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// ValidName reports whether name can name a provider.
func ValidName(name string) bool { return namePattern.MatchString(name) }

// Presets fill in what a well-known provider needs.
const (
	PresetGoogle = "google"
	PresetGitHub = "github"
)

// ApplyPreset fills the empty fields of p from a preset.
func ApplyPreset(p *gatehouse.IdentityProvider, preset string) error {
	set := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	switch preset {
	case "":
		if p.Kind == "" {
			p.Kind = gatehouse.ProviderOIDC
		}
	case PresetGoogle:
		p.Kind = gatehouse.ProviderOIDC
		set(&p.Issuer, "https://accounts.google.com")
		set(&p.DisplayName, "Google")
	case PresetGitHub:
		p.Kind = gatehouse.ProviderGitHub
		set(&p.AuthURL, "https://github.com/login/oauth/authorize")
		set(&p.TokenURL, "https://github.com/login/oauth/access_token")
		set(&p.UserinfoURL, "https://api.github.com/user")
		set(&p.DisplayName, "GitHub")
		if p.Issuer == "" {
			// Subjects are GitHub's numeric user ids, unique per GitHub
			// site: the site is the issuer (GitHub Enterprise has its own).
			p.Issuer = "https://github.com"
			if u, err := url.Parse(p.AuthURL); err == nil && u.Host != "" && !strings.EqualFold(u.Host, "github.com") {
				p.Issuer = u.Scheme + "://" + strings.ToLower(u.Host)
			}
		}
		if len(p.Scopes) == 0 {
			p.Scopes = []string{"read:user", "user:email"}
		}
	default:
		return fmt.Errorf("unknown preset %q (google or github)", preset)
	}
	if len(p.Scopes) == 0 && p.Kind == gatehouse.ProviderOIDC {
		p.Scopes = []string{"openid", "email", "profile"}
	}
	if p.DisplayName == "" {
		p.DisplayName = p.Name
	}
	return nil
}

// FieldError names a provider setting that is wrong.
type FieldError struct{ Field, Message string }

// Validate checks a provider's settings (after ApplyPreset) and returns
// every problem found.
func Validate(p gatehouse.IdentityProvider) []FieldError {
	var errs []FieldError
	add := func(f, m string) { errs = append(errs, FieldError{f, m}) }
	if !ValidName(p.Name) {
		add("name", "must be 1 to 32 of a-z, 0-9 and -, starting with a letter or digit")
	}
	if !printable(p.DisplayName, 100) {
		add("display_name", "must be at most 100 printable characters")
	}
	if p.ClientID == "" || !printable(p.ClientID, 512) {
		add("client_id", "is required (at most 512 printable characters)")
	}
	if msg := checkEndpoint(p.Issuer); msg != "" {
		add("issuer", msg)
	}
	if len(p.Scopes) > 20 {
		add("scopes", "at most 20")
	}
	for _, s := range p.Scopes {
		if s == "" || len(s) > 100 || strings.ContainsAny(s, " \"\\") || !printable(s, 100) {
			add("scopes", "each must be a non-empty word without spaces or quotes")
			break
		}
	}
	switch p.Kind {
	case gatehouse.ProviderOIDC:
		if p.Kind == gatehouse.ProviderOIDC && !containsScope(p.Scopes, "openid") {
			add("scopes", `must include "openid"`)
		}
		for f, v := range map[string]string{"auth_url": p.AuthURL, "token_url": p.TokenURL, "userinfo_url": p.UserinfoURL} {
			if v != "" {
				add(f, "is discovered from the issuer of an OpenID provider; set it only with the github preset")
			}
		}
	case gatehouse.ProviderGitHub:
		for f, v := range map[string]string{"auth_url": p.AuthURL, "token_url": p.TokenURL, "userinfo_url": p.UserinfoURL} {
			if msg := checkEndpoint(v); msg != "" {
				add(f, msg)
			}
		}
	default:
		add("kind", "must be oidc or github")
	}
	return errs
}

func containsScope(scopes []string, s string) bool {
	for _, x := range scopes {
		if x == s {
			return true
		}
	}
	return false
}

// checkEndpoint accepts https URLs, and http ones only on a loopback host
// (a provider run on the same machine for development and tests).
func checkEndpoint(raw string) string {
	if raw == "" {
		return "is required"
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" || len(raw) > 1024 {
		return "must be an https URL"
	}
	switch u.Scheme {
	case "https":
		return ""
	case "http":
		if isLoopback(u.Hostname()) {
			return ""
		}
	}
	return "must be an https URL (http only on a loopback host)"
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func printable(s string, max int) bool {
	if len([]rune(s)) > max {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '\uFFFD' {
			return false
		}
	}
	return true
}
