package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	netmail "net/mail"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
)

// SMTPConfig configures an SMTPSender.
type SMTPConfig struct {
	// URL is smtp://[user:pass@]host[:port] (STARTTLS when the server
	// offers it, and required before credentials go to a host that is not
	// loopback) or smtps://[user:pass@]host[:port] (implicit TLS). Default
	// ports: 587 and 465.
	URL string
	// From is the sender, e.g. "Gatehouse <noreply@example.com>".
	From string
	// TLSConfig, when set, is used for STARTTLS and implicit TLS (its
	// ServerName defaults to the URL's host). Tests pass their own RootCAs
	// here; nil verifies against the system roots.
	TLSConfig *tls.Config
	// DialTimeout bounds connecting (default 10 s); SendTimeout bounds the
	// whole conversation (default 30 s). A context deadline shortens both.
	DialTimeout time.Duration
	SendTimeout time.Duration
}

// SMTPSender sends through an SMTP server. It opens one connection per
// message: Gatehouse sends few mails, and a fresh connection never
// inherits a broken state from the last one.
type SMTPSender struct {
	host        string
	port        int
	implicitTLS bool
	user, pass  string
	hasAuth     bool
	from        *netmail.Address
	tlsConfig   *tls.Config
	dialTimeout time.Duration
	sendTimeout time.Duration
	// dial connects to addr. Tests point it elsewhere to play a remote
	// host on a loopback listener.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// ErrCleartextCredentials is returned instead of sending SMTP credentials
// over a connection without TLS to a host that is not loopback.
var ErrCleartextCredentials = errors.New("refusing to send SMTP credentials without TLS to a host that is not loopback")

// NewSMTPSender checks the configuration; it does not connect.
func NewSMTPSender(c SMTPConfig) (*SMTPSender, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, errors.New("SMTP URL is not a URL")
	}
	s := &SMTPSender{dialTimeout: c.DialTimeout, sendTimeout: c.SendTimeout}
	switch u.Scheme {
	case "smtp":
		s.port = 587
	case "smtps":
		s.port, s.implicitTLS = 465, true
	default:
		return nil, fmt.Errorf("SMTP URL must start with smtp:// or smtps://, not %q", u.Scheme+"://")
	}
	s.host = u.Hostname()
	if s.host == "" {
		return nil, errors.New("SMTP URL has no host")
	}
	if p := u.Port(); p != "" {
		if s.port, err = strconv.Atoi(p); err != nil || s.port < 1 || s.port > 65535 {
			return nil, fmt.Errorf("SMTP URL port %q is not a port", p)
		}
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("SMTP URL must be smtp://[user:pass@]host:port with nothing after the port")
	}
	if u.User != nil {
		s.user = u.User.Username()
		s.pass, _ = u.User.Password()
		s.hasAuth = true
		if s.user == "" {
			return nil, errors.New("SMTP URL has credentials without a user name")
		}
	}
	if s.from, err = ParseFrom(c.From); err != nil {
		return nil, err
	}
	if c.TLSConfig != nil {
		s.tlsConfig = c.TLSConfig.Clone()
	} else {
		s.tlsConfig = &tls.Config{}
	}
	if s.tlsConfig.ServerName == "" {
		s.tlsConfig.ServerName = s.host
	}
	if s.tlsConfig.MinVersion < tls.VersionTLS12 {
		s.tlsConfig.MinVersion = tls.VersionTLS12
	}
	if s.dialTimeout <= 0 {
		s.dialTimeout = 10 * time.Second
	}
	if s.sendTimeout <= 0 {
		s.sendTimeout = 30 * time.Second
	}
	s.dial = (&net.Dialer{}).DialContext
	return s, nil
}

// String describes the server for operators, without the password.
func (s *SMTPSender) String() string {
	scheme, mode := "smtp", "STARTTLS when offered"
	switch {
	case s.implicitTLS:
		scheme, mode = "smtps", "implicit TLS"
	case s.requireStartTLS():
		mode = "STARTTLS required"
	}
	user := ""
	if s.hasAuth {
		user = url.User(s.user).String() + "@"
	}
	return fmt.Sprintf("%s://%s%s (%s)", scheme, user, net.JoinHostPort(s.host, strconv.Itoa(s.port)), mode)
}

// requireStartTLS: with credentials for a remote host, a server that does
// not offer STARTTLS (or a man in the middle stripping it) must stop the
// send before AUTH, not after.
func (s *SMTPSender) requireStartTLS() bool {
	return !s.implicitTLS && s.hasAuth && !isLoopback(s.host)
}

// CredentialsAllowed decides whether credentials may be sent to host over
// a connection whose TLS state is tlsActive: always over TLS, and in clear
// only to a loopback host (a local relay), where nobody can listen.
func CredentialsAllowed(tlsActive bool, host string) bool {
	return tlsActive || isLoopback(host)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Send implements Sender.
func (s *SMTPSender) Send(ctx context.Context, m Message) error {
	msg, err := buildMsg(s.from, m)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.sendTimeout)
	defer cancel()
	opts := []gomail.Option{
		gomail.WithPort(s.port),
		// go-mail applies this as the deadline of the connection, which
		// bounds a server that accepts and then stops answering.
		gomail.WithTimeout(s.sendTimeout),
		gomail.WithTLSConfig(s.tlsConfig),
		// go-mail cancels the context it dials with once connected, so the
		// connection is tied to this send's context instead.
		gomail.WithDialContextFunc(func(dctx context.Context, network, addr string) (net.Conn, error) {
			return s.dialContext(ctx, dctx, network, addr)
		}),
		gomail.WithTLSPolicy(gomail.TLSOpportunistic),
	}
	if s.implicitTLS {
		// The dialer does the handshake; WithSSL tells go-mail not to
		// look for STARTTLS on top.
		opts = append(opts, gomail.WithSSL())
	} else if s.requireStartTLS() {
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	}
	if s.hasAuth {
		opts = append(opts, gomail.WithSMTPAuthCustom(&guardedAuth{user: s.user, pass: s.pass, host: s.host}))
	}
	client, err := gomail.NewClient(s.host, opts...)
	if err != nil {
		return fmt.Errorf("smtp client: %w", err)
	}
	if err := client.DialAndSendWithContext(ctx, msg); err != nil {
		if msg.IsDelivered() {
			// The server accepted the message (250 after DATA); what failed
			// came after (RSET, QUIT, closing). Reporting a failure would
			// send it a second time.
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("smtp %s: %w (%v)", net.JoinHostPort(s.host, strconv.Itoa(s.port)), ctx.Err(), err)
		}
		return fmt.Errorf("smtp %s: %w", net.JoinHostPort(s.host, strconv.Itoa(s.port)), err)
	}
	return nil
}

// dialContext connects within dctx and the dial timeout, does the implicit
// TLS handshake for smtps, and closes the connection when sendCtx ends, so
// the send deadline holds whatever go-mail does with the connection.
func (s *SMTPSender) dialContext(sendCtx, dctx context.Context, network, addr string) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(dctx, s.dialTimeout)
	defer cancel()
	raw, err := s.dial(dctx, network, addr)
	if err != nil {
		return nil, err
	}
	// The watch closes raw, never the variable conn that wraps it below:
	// the send deadline can fire while this function is still running.
	stop := context.AfterFunc(sendCtx, func() { raw.Close() })
	var conn net.Conn = &stopConn{Conn: raw, stop: stop}
	if s.implicitTLS {
		// The *tls.Conn is outermost: go-mail tells a TLS connection by
		// its type, and the credential check depends on it.
		tc := tls.Client(conn, s.tlsConfig)
		if err := tc.HandshakeContext(dctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		return tc, nil
	}
	return conn, nil
}

// stopConn releases the ctx watch when go-mail closes the connection.
type stopConn struct {
	net.Conn
	stop func() bool
}

func (c *stopConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// guardedAuth is the only way credentials leave: it checks TLS itself
// (rather than trusting the STARTTLS policy alone) and picks PLAIN or LOGIN
// from what the server offers.
type guardedAuth struct {
	user, pass, host string
	inner            smtp.Auth
}

func (a *guardedAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !CredentialsAllowed(server.TLS, a.host) {
		return "", nil, ErrCleartextCredentials
	}
	// Cleartext was decided above; the inner mechanisms must not second-
	// guess it with their own, different loopback list.
	switch {
	case slices.Contains(server.Auth, "PLAIN"):
		a.inner = smtp.PlainAuth("", a.user, a.pass, server.Name, true)
	case slices.Contains(server.Auth, "LOGIN"):
		a.inner = smtp.LoginAuth(a.user, a.pass, server.Name, true)
	default:
		return "", nil, fmt.Errorf("SMTP server offers neither AUTH PLAIN nor AUTH LOGIN (offers %q)", strings.Join(server.Auth, " "))
	}
	return a.inner.Start(server)
}

func (a *guardedAuth) Next(fromServer []byte, more bool) ([]byte, error) {
	return a.inner.Next(fromServer, more)
}
