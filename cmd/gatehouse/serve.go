package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/account"
	"github.com/gatehouse/gatehouse/audit"
	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/feed"
	"github.com/gatehouse/gatehouse/httpapi"
	"github.com/gatehouse/gatehouse/mail"
	"github.com/gatehouse/gatehouse/masterkey"
	"github.com/gatehouse/gatehouse/metrics"
	"github.com/gatehouse/gatehouse/openapi"
	"github.com/gatehouse/gatehouse/password"
	"github.com/gatehouse/gatehouse/ratelimit"
	"github.com/gatehouse/gatehouse/revoke"
	"github.com/gatehouse/gatehouse/sealbox"
	"github.com/gatehouse/gatehouse/token"
)

var serveFlags = []string{
	"addr", "database", "redis", "issuer", "audience", "access-ttl", "refresh-idle-ttl",
	"session-max-age", "reuse-grace", "signing-alg", "key-publish-ahead", "allowed-origins", "trusted-proxies",
	"rate-limit-login", "rate-limit-refresh", "rate-limit-signup", "log-level", "master-key",
	"master-key-file", "fail-open", "no-migrate", "hash-workers", "hash-queue", "shutdown-grace",
	"session-retention", "max-connections", "metrics-addr", "audit-retention",
	"public-url", "require-verified-email", "magic-link-signup", "rate-limit-mail", "rate-limit-mail-ip",
	"rate-limit-api-key",
	"smtp-url", "mail-from", "mail-dir", "mail-templates", "product-name", "no-mail",
	"redirect-allowlist", "idp-timeout", "tls-cert", "tls-key", "tls-client-ca",
}

// maxHeaderBytes makes net/http refuse (431) a request line and header
// block longer than 64 KiB, the limit SECURITY.md documents: net/http reads
// up to MaxHeaderBytes plus 4096 bytes of slack before it gives up.
const maxHeaderBytes = 64<<10 - 4096

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level must be debug, info, warn or error, not %q", s)
	}
	return l, nil
}

// serve runs the server until ctx ends, then shuts down gracefully:
// requests in flight finish within --shutdown-grace.
func serve(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	var c config
	fs := newFlagSet("serve", &c, serveFlags...)
	if err := parseFlags(fs, args, getenv); err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return err
	}
	var rdb *redis.Client
	if c.Redis != "" {
		opts, err := redis.ParseURL(c.Redis)
		if err != nil {
			return fmt.Errorf("--redis: not a valid redis:// URL")
		}
		opts.DialTimeout = 2 * time.Second
		opts.ReadTimeout = 2 * time.Second
		opts.WriteTimeout = 2 * time.Second
		rdb = redis.NewClient(opts)
		defer rdb.Close()
	}
	// Everything that can fail on bad configuration happens before the
	// listener opens and before the first log line.
	b, err := openBackend(ctx, &c, !c.NoMigrate)
	if err != nil {
		return err
	}
	defer b.store.Close()
	keys, err := b.keys(&c)
	if err != nil {
		return err
	}
	refresh, err := token.NewRefreshCodec(masterkey.Derive(b.master, masterkey.PurposeRefresh))
	if err != nil {
		return fmt.Errorf("refresh tokens: %w", err)
	}
	secrets, err := token.NewSecretCodec(masterkey.Derive(b.master, masterkey.PurposeSecrets))
	if err != nil {
		return err
	}
	totpBox, err := sealbox.New(masterkey.Derive(b.master, masterkey.PurposeTOTP))
	if err != nil {
		return err
	}
	apiKeyCodec, err := token.NewAPIKeyCodec(masterkey.Derive(b.master, masterkey.PurposeAPIKeys))
	if err != nil {
		return err
	}
	// Passkeys need a relying party id a browser accepts (a host name,
	// not an IP address); without one they are off, not fatal, so the
	// zero-configuration start keeps working.
	webAuthn, webAuthnErr := newWebAuthn(&c)
	idpDeps, err := b.idpDeps(&c)
	if err != nil {
		return err
	}
	oauthDeps, err := b.oauthDeps()
	if err != nil {
		return err
	}
	tlsCfg, err := tlsConfig(&c)
	if err != nil {
		return err
	}
	level, _ := parseLevel(c.LogLevel)
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	hasher := password.NewHasher(password.DefaultParams(), hashWorkers(&c), c.HashQueue)
	m := metrics.New(hasher.Stats)
	var mailer auth.Mailer
	var mailWorker *mail.Worker
	if !c.NoMail {
		hashing := func() bool { running, waiting := hasher.Stats(); return running+waiting > 0 }
		outbox, worker, err := newMailer(&c, b.store, b.master, logger, m, hashing)
		if err != nil {
			return err
		}
		mailer, mailWorker = mailQueue{outbox}, worker
	}
	tcp, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.Addr, err)
	}
	ln := newLimitListener(tcp, c.MaxConns)
	defer ln.Close()
	var metricsLn net.Listener
	if c.MetricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", c.MetricsAddr); err != nil {
			return fmt.Errorf("listen on --metrics-addr %s: %w", c.MetricsAddr, err)
		}
		defer metricsLn.Close()
	}

	redisState := "off"
	var bus revoke.Bus
	if rdb != nil {
		redis.SetLogger(redisLog{logger})
		redisState = checkRedis(ctx, rdb, c.Redis, logger)
		bus = revoke.NewRedisBus(rdb, "gatehouse:revocations")
	}
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	revoker := revoke.New(b.store, bus, revoke.Config{
		PollInterval: time.Second,
		StaleAfter:   5 * time.Second,
		FailOpen:     c.FailOpen,
	}, logger)
	if err := revoker.Start(runCtx); err != nil {
		return fmt.Errorf("load revocations: %w", err)
	}
	defer revoker.Wait()
	defer cancelRun()

	// Pick up keys made by `gatehouse keys rotate` or by other instances,
	// so this instance signs with the newest key and publishes it.
	var background sync.WaitGroup
	defer background.Wait()
	defer cancelRun() // deferred after Wait, so it runs before it
	background.Go(func() { reloadKeys(runCtx, keys, logger) })

	mem := ratelimit.NewMemory(time.Now)
	var redisLimiter *ratelimit.Redis
	if rdb != nil {
		redisLimiter = ratelimit.NewRedis(rdb, "gatehouse:rl:", mem, logger)
	}
	svc := auth.New(auth.Config{
		Issuer: c.Issuer, Audience: c.Audience,
		AccessTTL: c.AccessTTL, IdleTTL: c.RefreshIdleTTL, MaxAge: c.SessionMaxAge,
		ReuseGrace: c.ReuseGrace, Leeway: accessLeeway,
		LoginRate: c.loginRate, RefreshRate: c.refreshRate, SignupRate: c.signupRate,
		PublicURL: c.PublicURL, RequireVerifiedEmail: c.RequireVerifiedEmail, MagicLinkSignup: c.MagicLinkSignup,
		MailRate: c.mailRate, MailIPRate: c.mailIPRate, TOTPIssuer: c.ProductName,
		APIKeyRate: c.apiKeyRate,
	}, auth.Deps{
		Store: b.store, Signer: keys, RefreshCodec: refresh, Hasher: hasher, Revoker: revoker,
		Limiter: limiterFor(mem, redisLimiter), Observer: m, Logger: logger,
		Secrets: b.store, Emails: b.store, SecretCodec: secrets, Mailer: mailer,
		MFA: b.store, Attempts: b.store, TOTPBox: totpBox, RecoveryKey: masterkey.Derive(b.master, masterkey.PurposeRecovery),
		Passkeys: b.store, WebAuthn: webAuthn,
		IdP:         idpDeps,
		APIKeyStore: b.store, APIKeyCodec: apiKeyCodec,
		Audit: audit.NewRecorder(b.store, logger, m),
		OAuth: oauthDeps,
	})
	defer svc.Close() // after the server has stopped: mail work handed to the background
	background.Go(func() { housekeeping(runCtx, svc, c.SessionRetention, c.AuditRetention, logger) })
	background.Go(func() { svc.RunAPIKeyUsage(runCtx) })
	if mailWorker != nil {
		background.Go(func() { mailWorker.Run(runCtx) })
	}
	ready := func(ctx context.Context) error {
		var problems []string
		if err := b.store.Ping(ctx); err != nil {
			problems = append(problems, "database unreachable")
		}
		if err := revoker.Ready(); err != nil {
			// The cause (a driver error naming hosts and users) goes to
			// the log; the answer names only the dependency.
			logger.Warn("not ready", "err", err)
			if errors.Is(err, revoke.ErrBusDown) {
				problems = append(problems, "redis subscription down")
			} else {
				problems = append(problems, "revocation state not current")
			}
		}
		if redisLimiter != nil && !redisLimiter.Healthy() {
			problems = append(problems, "redis rate limiter degraded")
		}
		if len(problems) > 0 {
			return errors.New(strings.Join(problems, "; "))
		}
		return nil
	}
	// The revocation feed streams from this instance's revoker and pages
	// from the store; its streams end when the server shuts down.
	revocationFeed := feed.New(b.store, revoker, feed.Config{})
	apiDoc, err := openapi.JSON()
	if err != nil {
		return fmt.Errorf("the embedded API description: %w", err)
	}
	api := httpapi.New(httpapi.Config{
		Issuer: c.Issuer, AllowedOrigins: c.origins, TrustedProxies: c.proxies,
		CSRFKey:          masterkey.Derive(b.master, masterkey.PurposeCSRF),
		MetricsElsewhere: metricsLn != nil,
	}, httpapi.Deps{
		Auth: svc, JWKS: keys.JWKS, Metrics: m, Logger: logger, Ready: ready,
		Account: account.Handler(), Feed: revocationFeed, OpenAPI: apiDoc,
		OAuth: oauthMount(&c, svc, logger),
	})
	srv := &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
		// net/http answers a bare 431 (without our headers or a problem
		// body) past this; SECURITY.md says so.
		MaxHeaderBytes: maxHeaderBytes,
		ConnState:      ln.connState,
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		TLSConfig:      tlsCfg,
	}
	srv.RegisterOnShutdown(revocationFeed.Close)
	errc := make(chan error, 2)
	servers := []*http.Server{srv}
	attrs := []any{"addr", ln.Addr().String(), "tls", tlsState(tlsCfg), "database", dbKind(b), "redis", redisState, "signing_alg", c.SigningAlg, "max_connections", c.MaxConns}
	if metricsLn != nil {
		msrv := &http.Server{
			Handler:           api.MetricsHandler(),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       15 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       90 * time.Second,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
		servers = append(servers, msrv)
		attrs = append(attrs, "metrics_addr", metricsLn.Addr().String())
		go func() { errc <- msrv.Serve(metricsLn) }()
	}
	if webAuthnErr != nil {
		logger.Warn("passkeys are off", "err", webAuthnErr)
	}
	logger.Info("gatehouse listening", attrs...)
	go func() {
		if tlsCfg != nil {
			// The certificate is in TLSConfig already, so no file names.
			errc <- srv.ServeTLS(ln, "", "")
			return
		}
		errc <- srv.Serve(ln)
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down; finishing requests in flight")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), c.ShutdownGrace)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(shutdownCtx); err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
	}
	logger.Info("stopped")
	return nil
}

// tlsState says how the public listener speaks, for the start log line.
func tlsState(cfg *tls.Config) string {
	switch {
	case cfg == nil:
		return "off"
	case cfg.ClientCAs != nil:
		return "on, client certificates verified when given"
	}
	return "on"
}

func dbKind(b *backend) string {
	if b.postgres {
		return "postgres"
	}
	return "sqlite"
}

// checkRedis pings Redis once at start and says how it went: "connected",
// or "unreachable" with a warning naming the problem. Starting anyway is
// deliberate (the server degrades as it does when Redis goes away later,
// and /readyz says so), but an operator must not read "redis: true" and
// believe it works. The URL and error are logged without the password.
func checkRedis(ctx context.Context, rdb *redis.Client, redisURL string, logger *slog.Logger) string {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := rdb.Ping(pctx).Err()
	if err == nil {
		return "connected"
	}
	msg := err.Error()
	if pw := rdb.Options().Password; pw != "" {
		msg = strings.ReplaceAll(msg, pw, "…")
	}
	logger.Warn("redis unreachable at start: until it answers, rate limits are per process, revocations reach other instances only by database polling, and /readyz fails",
		"redis", redactURL(redisURL), "err", msg)
	return "unreachable"
}

// redisLog routes go-redis's own messages (dial failures while Redis is
// down, and so on) into the structured log instead of bare stderr lines.
type redisLog struct{ logger *slog.Logger }

func (l redisLog) Printf(_ context.Context, format string, v ...any) {
	l.logger.Warn("redis client", "detail", fmt.Sprintf(format, v...))
}

// keyReloadInterval is how often signing keys are re-read from the store.
const keyReloadInterval = 5 * time.Second

func reloadKeys(ctx context.Context, keys *token.Keys, logger *slog.Logger) {
	t := time.NewTicker(keyReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := keys.Load(ctx, nowUTC()); err != nil && ctx.Err() == nil {
				logger.Warn("reload signing keys", "err", err)
			}
		}
	}
}
