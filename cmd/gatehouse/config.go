package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/idp"
	"github.com/gatehouse/gatehouse/ratelimit"
)

// config is every setting of `gatehouse serve`; the other subcommands use
// the subset they need. Each is a flag and a GATEHOUSE_* variable.
type config struct {
	Addr           string
	Database       string
	Redis          string
	Issuer         string
	Audience       string
	AccessTTL      time.Duration
	RefreshIdleTTL time.Duration
	SessionMaxAge  time.Duration
	ReuseGrace     time.Duration
	SigningAlg     string
	PublishAhead   time.Duration
	AllowedOrigins string
	TrustedProxies string
	RateLogin      string
	RateRefresh    string
	RateSignup     string
	LogLevel       string
	MasterKey      string
	MasterKeyFile  string
	FailOpen       bool
	NoMigrate      bool
	NoMail         bool
	HashWorkers    int
	HashQueue      int
	ShutdownGrace  time.Duration
	MaxConns       int
	MetricsAddr    string
	// SessionRetention is how long ended sessions are kept before they are
	// deleted; zero keeps them forever.
	SessionRetention time.Duration
	// AuditRetention is how long audit events are kept; zero keeps them
	// forever.
	AuditRetention time.Duration
	// Mail flows.
	PublicURL            string
	RequireVerifiedEmail bool
	MagicLinkSignup      bool
	RateMail             string
	RateMailIP           string
	RateAPIKey           string
	// Mail (mail.go): SMTP when SMTPURL is set, else .eml files in MailDir.
	SMTPURL       string
	MailFrom      string
	MailDir       string
	MailTemplates string
	ProductName   string
	// External identity providers.
	RedirectAllowlist string
	IdPTimeout        time.Duration
	// TLS of the public listener (tls.go): HTTPS with a certificate and
	// key; with a client CA, client certificates are verified when given.
	TLSCert     string
	TLSKey      string
	TLSClientCA string

	// noSecrets: the command touches no secret (migrate, user create), so
	// on PostgreSQL no master key is needed.
	noSecrets bool

	// Parsed forms.
	origins     []string
	proxies     []netip.Prefix
	loginRate   ratelimit.Rate
	refreshRate ratelimit.Rate
	signupRate  ratelimit.Rate
	mailRate    ratelimit.Rate
	mailIPRate  ratelimit.Rate
	redirects   []string
	apiKeyRate  ratelimit.Rate
}

// newFlagSet declares the flags of a subcommand. Only the names in use are
// declared, so `user create --redis x` is an unknown flag, as it should be.
func newFlagSet(name string, c *config, names ...string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	all := map[string]func(){
		"addr": func() { fs.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "listen address") },
		"database": func() {
			fs.StringVar(&c.Database, "database", "sqlite:gatehouse.db", "sqlite:PATH, sqlite::memory: or a postgres:// URL")
		},
		"redis": func() {
			fs.StringVar(&c.Redis, "redis", "", "redis:// URL; empty keeps revocation and rate-limit state in process")
		},
		"issuer":     func() { fs.StringVar(&c.Issuer, "issuer", "", "token issuer (default http://ADDR)") },
		"audience":   func() { fs.StringVar(&c.Audience, "audience", "gatehouse", "token audience") },
		"access-ttl": func() { fs.DurationVar(&c.AccessTTL, "access-ttl", 10*time.Minute, "access-token lifetime") },
		"refresh-idle-ttl": func() {
			fs.DurationVar(&c.RefreshIdleTTL, "refresh-idle-ttl", 14*24*time.Hour, "session ends when its refresh token is unused this long")
		},
		"session-max-age": func() {
			fs.DurationVar(&c.SessionMaxAge, "session-max-age", 30*24*time.Hour, "absolute session lifetime")
		},
		"reuse-grace": func() {
			fs.DurationVar(&c.ReuseGrace, "reuse-grace", 10*time.Second, "window in which the just-rotated refresh token still returns its successor")
		},
		"signing-alg": func() { fs.StringVar(&c.SigningAlg, "signing-alg", "EdDSA", "EdDSA, ES256 or HS256") },
		"key-publish-ahead": func() {
			// Twice the JWKS max-age (60 s): a resource server's cached
			// JWKS, even one refetched through an HTTP cache just before
			// the key appeared, has the key before its first token, with
			// room for the instances' 5 s key reload and clock skew.
			fs.DurationVar(&c.PublishAhead, "key-publish-ahead", 2*time.Minute,
				"a key made by keys rotate is in the JWKS this long before it signs; keep it above the JWKS cache lifetime (60s)")
		},
		"allowed-origins": func() {
			fs.StringVar(&c.AllowedOrigins, "allowed-origins", "", "comma-separated origins allowed for CORS and state-changing requests")
		},
		"trusted-proxies": func() {
			fs.StringVar(&c.TrustedProxies, "trusted-proxies", "", "comma-separated IPs or CIDRs of reverse proxies whose X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto and Forwarded headers are believed")
		},
		"rate-limit-login": func() {
			fs.StringVar(&c.RateLogin, "rate-limit-login", "10/1m", "login attempts per client IP, and failed logins per account (N/DURATION or off)")
		},
		"rate-limit-refresh": func() {
			fs.StringVar(&c.RateRefresh, "rate-limit-refresh", "120/1m", "refreshes per client IP (N/DURATION or off)")
		},
		"rate-limit-signup": func() {
			fs.StringVar(&c.RateSignup, "rate-limit-signup", "10/1h", "sign-ups per client IP (N/DURATION or off)")
		},
		"log-level":       func() { fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error") },
		"master-key":      func() { fs.StringVar(&c.MasterKey, "master-key", "", "base64 master secret (at least 32 bytes)") },
		"master-key-file": func() { fs.StringVar(&c.MasterKeyFile, "master-key-file", "", "file holding the base64 master secret") },
		"fail-open": func() {
			fs.BoolVar(&c.FailOpen, "fail-open", false, "serve protected endpoints even when revocation state cannot be checked")
		},
		"no-migrate": func() { fs.BoolVar(&c.NoMigrate, "no-migrate", false, "do not apply database migrations on start") },
		"no-mail": func() {
			fs.BoolVar(&c.NoMail, "no-mail", false, "send no mail: the endpoints that send mail answer 404 not_configured and sign-up sends no verification")
		},
		"hash-workers": func() {
			fs.IntVar(&c.HashWorkers, "hash-workers", 0, "password hashes computed at once (default: number of CPUs)")
		},
		"hash-queue": func() {
			fs.IntVar(&c.HashQueue, "hash-queue", 64, "password hashes allowed to wait; beyond that logins get 503")
		},
		"shutdown-grace": func() {
			fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", 15*time.Second, "time given to requests in flight on shutdown")
		},
		"session-retention": func() {
			fs.DurationVar(&c.SessionRetention, "session-retention", 30*24*time.Hour,
				"ended sessions (with their IP and user agent) are deleted this long after they end; 0 keeps them")
		},
		"audit-retention": func() {
			fs.DurationVar(&c.AuditRetention, "audit-retention", 90*24*time.Hour,
				"audit events are deleted this long after they happened (default 90 days); 0 keeps them")
		},
		"public-url": func() {
			fs.StringVar(&c.PublicURL, "public-url", "", "base URL of links in mail and of the account page (default: the issuer)")
		},
		"require-verified-email": func() {
			fs.BoolVar(&c.RequireVerifiedEmail, "require-verified-email", false, "password login needs a verified email (403 email_not_verified)")
		},
		"magic-link-signup": func() {
			fs.BoolVar(&c.MagicLinkSignup, "magic-link-signup", false, "a magic link to an address without an account creates one")
		},
		"rate-limit-mail": func() {
			fs.StringVar(&c.RateMail, "rate-limit-mail", "5/1h", "mail sent per address: verification, reset, magic link, email change (N/DURATION or off)")
		},
		"rate-limit-mail-ip": func() {
			fs.StringVar(&c.RateMailIP, "rate-limit-mail-ip", "30/1h", "mail-sending requests per client IP (N/DURATION or off)")
		},
		"rate-limit-api-key": func() {
			fs.StringVar(&c.RateAPIKey, "rate-limit-api-key", "20/1m", "failed API-key attempts per client IP (N/DURATION or off)")
		},
		"metrics-addr": func() {
			fs.StringVar(&c.MetricsAddr, "metrics-addr", "", "serve /metrics on this HOST:PORT instead of the public address, e.g. 127.0.0.1:9090")
		},
		"smtp-url": func() {
			fs.StringVar(&c.SMTPURL, "smtp-url", "", "smtp://[user:pass@]host:port (STARTTLS) or smtps://... (implicit TLS); empty writes mail as .eml files to --mail-dir")
		},
		"mail-from": func() {
			fs.StringVar(&c.MailFrom, "mail-from", "", `sender of mail, e.g. "Example <noreply@example.com>" (required with --smtp-url)`)
		},
		"mail-dir": func() {
			fs.StringVar(&c.MailDir, "mail-dir", "", "folder for .eml files when there is no --smtp-url (default: gatehouse-mail beside the SQLite file, or in the working directory)")
		},
		"mail-templates": func() {
			fs.StringVar(&c.MailTemplates, "mail-templates", "", "folder of mail templates overriding the built-in ones by file name")
		},
		"product-name": func() { fs.StringVar(&c.ProductName, "product-name", "Gatehouse", "product name used in mail") },
		"redirect-allowlist": func() {
			fs.StringVar(&c.RedirectAllowlist, "redirect-allowlist", "", "comma-separated URLs (https://app.example.com/callback, com.example.app:/oauth) under which a provider sign-in may send the browser back, besides --public-url's origin")
		},
		"idp-timeout": func() {
			fs.DurationVar(&c.IdPTimeout, "idp-timeout", 10*time.Second, "time allowed to each request to an identity provider (discovery, keys, token, user APIs)")
		},
		"tls-cert": func() {
			fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate chain: serve HTTPS on --addr (needs --tls-key)")
		},
		"tls-key": func() { fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key of --tls-cert") },
		"tls-client-ca": func() {
			fs.StringVar(&c.TLSClientCA, "tls-client-ca", "", "PEM CA certificates: ask for TLS client certificates and verify those given against them (mTLS client authentication, certificate-bound tokens; needs --tls-cert)")
		},
		"max-connections": func() {
			fs.IntVar(&c.MaxConns, "max-connections", 1024, "connections open at once; more wait until one closes")
		},
	}
	for _, n := range names {
		all[n]()
	}
	return fs
}

// parseFlags parses args, then fills every flag not given on the command
// line from its GATEHOUSE_* variable. Errors are one sentence.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			var b strings.Builder
			fmt.Fprintf(&b, "usage: gatehouse %s [flags]\n\nEvery flag is also an environment variable: --access-ttl is GATEHOUSE_ACCESS_TTL.\n\n", fs.Name())
			fs.SetOutput(&b)
			fs.PrintDefaults()
			fs.SetOutput(io.Discard)
			return &helpRequest{text: b.String()}
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] {
			return
		}
		env := envName(f.Name)
		if v := getenv(env); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("invalid value %q for %s: %v", v, env, e)
			}
		}
	})
	return err
}

// envName is the environment variable of a flag: --access-ttl is
// GATEHOUSE_ACCESS_TTL.
func envName(flagName string) string {
	return "GATEHOUSE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// helpRequest carries the usage text asked for with -h or --help.
type helpRequest struct{ text string }

func (h *helpRequest) Error() string { return h.text }

// validate checks and parses the serve settings.
func (c *config) validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--access-ttl", c.AccessTTL}, {"--refresh-idle-ttl", c.RefreshIdleTTL}, {"--session-max-age", c.SessionMaxAge}} {
		if d.v <= 0 {
			return fmt.Errorf("%s must be positive", d.name)
		}
	}
	if c.ReuseGrace < 0 {
		return errors.New("--reuse-grace must not be negative")
	}
	if c.PublishAhead < 0 {
		return errors.New("--key-publish-ahead must not be negative")
	}
	switch c.SigningAlg {
	case "EdDSA", "ES256", "HS256":
	default:
		return fmt.Errorf("--signing-alg must be EdDSA, ES256 or HS256, not %q", c.SigningAlg)
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("--addr must be HOST:PORT, e.g. 127.0.0.1:8080, not %q", c.Addr)
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return fmt.Errorf("--metrics-addr must be HOST:PORT, e.g. 127.0.0.1:9090, not %q", c.MetricsAddr)
		}
	}
	if err := c.validateTLS(); err != nil {
		return err
	}
	if c.Issuer == "" {
		c.Issuer = "http://" + c.Addr
		if c.TLSCert != "" {
			c.Issuer = "https://" + c.Addr
		}
	} else if u, err := url.Parse(c.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("--issuer must be an http(s) URL such as https://auth.example.com, not %q", c.Issuer)
	}
	for _, o := range splitList(c.AllowedOrigins) {
		// Browsers send the serialized origin: lower-case scheme and
		// host, no default port, no path. Anything else never matches,
		// so it is a configuration mistake worth stopping for.
		if !isSerializedOrigin(o) {
			return fmt.Errorf("--allowed-origins: %q is not an origin like https://app.example.com (lower case, no path, no default port)", o)
		}
		c.origins = append(c.origins, o)
	}
	if c.HashWorkers < 0 || c.HashQueue < 0 {
		return errors.New("--hash-workers and --hash-queue must not be negative")
	}
	if c.MaxConns < 1 {
		return errors.New("--max-connections must be at least 1")
	}
	if c.ShutdownGrace < 0 {
		return errors.New("--shutdown-grace must not be negative")
	}
	if c.SessionRetention < 0 {
		return errors.New("--session-retention must not be negative (0 keeps ended sessions)")
	}
	if c.AuditRetention < 0 {
		return errors.New("--audit-retention must not be negative (0 keeps audit events)")
	}
	if c.MasterKey != "" && c.MasterKeyFile != "" {
		return errors.New("give either --master-key or --master-key-file, not both")
	}
	for _, p := range splitList(c.TrustedProxies) {
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			addr, err2 := netip.ParseAddr(p)
			if err2 != nil {
				return fmt.Errorf("--trusted-proxies: %q is not an IP address or CIDR", p)
			}
			prefix = netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen())
		}
		c.proxies = append(c.proxies, prefix)
	}
	var err error
	if c.loginRate, err = ratelimit.ParseRate(c.RateLogin); err != nil {
		return fmt.Errorf("--rate-limit-login: %v", err)
	}
	if c.refreshRate, err = ratelimit.ParseRate(c.RateRefresh); err != nil {
		return fmt.Errorf("--rate-limit-refresh: %v", err)
	}
	if c.signupRate, err = ratelimit.ParseRate(c.RateSignup); err != nil {
		return fmt.Errorf("--rate-limit-signup: %v", err)
	}
	if c.mailRate, err = ratelimit.ParseRate(c.RateMail); err != nil {
		return fmt.Errorf("--rate-limit-mail: %v", err)
	}
	if c.mailIPRate, err = ratelimit.ParseRate(c.RateMailIP); err != nil {
		return fmt.Errorf("--rate-limit-mail-ip: %v", err)
	}
	if c.apiKeyRate, err = ratelimit.ParseRate(c.RateAPIKey); err != nil {
		return fmt.Errorf("--rate-limit-api-key: %v", err)
	}
	if c.PublicURL == "" {
		c.PublicURL = c.Issuer
	} else if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("--public-url must be an http(s) URL such as https://auth.example.com, not %q", c.PublicURL)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	if c.IdPTimeout <= 0 {
		return errors.New("--idp-timeout must be positive")
	}
	c.redirects = splitList(c.RedirectAllowlist)
	if _, err := idp.NewRedirectPolicy(c.PublicURL, c.redirects); err != nil {
		return fmt.Errorf("--redirect-allowlist: %v", err)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// isSerializedOrigin reports whether o is an origin as browsers send it in
// the Origin header: http or https, lower-case host, no default port, no
// path, query or fragment.
func isSerializedOrigin(o string) bool {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return false
	}
	defaultPort := map[string]string{"http": "80", "https": "443"}[u.Scheme]
	if u.Port() == defaultPort {
		return false
	}
	return u.Scheme+"://"+strings.ToLower(u.Host) == o
}
