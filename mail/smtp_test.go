package mail

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/wneessen/go-mail/smtp"
)

func testMessage(to string) Message {
	return Message{
		To:      to,
		Subject: "Confirm your email address for Gatehouse",
		Text:    "Open https://auth.example.com/account/verify-email#token=abc.def\n",
		HTML:    `<p><a href="https://auth.example.com/account/verify-email#token=abc.def">Confirm</a></p>`,
	}
}

func newSMTP(t *testing.T, url string, pool *x509.CertPool) *SMTPSender {
	t.Helper()
	c := SMTPConfig{URL: url, From: "Gatehouse <noreply@example.com>", DialTimeout: 2 * time.Second, SendTimeout: 5 * time.Second}
	if pool != nil {
		c.TLSConfig = &tls.Config{RootCAs: pool}
	}
	s, err := NewSMTPSender(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// redirect makes s dial addr whatever host its URL names, so that a
// loopback test server can play a remote host.
func redirect(s *SMTPSender, addr string) {
	d := &net.Dialer{}
	s.dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
}

func TestSMTPDelivers(t *testing.T) {
	srv := startSMTP(t, serverOpts{})
	s := newSMTP(t, "smtp://"+srv.Addr, nil)
	if err := s.Send(context.Background(), testMessage("alice@example.org")); err != nil {
		t.Fatal(err)
	}
	msgs := srv.messages()
	if len(msgs) != 1 {
		t.Fatalf("server got %d messages, want 1", len(msgs))
	}
	got := msgs[0]
	if got.From != "noreply@example.com" || len(got.To) != 1 || got.To[0] != "alice@example.org" {
		t.Fatalf("envelope from %q to %q", got.From, got.To)
	}
	p := parseEML(t, got.Data)
	if p.Header.Get("From") != `"Gatehouse" <noreply@example.com>` && p.Header.Get("From") != "Gatehouse <noreply@example.com>" {
		t.Errorf("From: %q", p.Header.Get("From"))
	}
	if p.Header.Get("To") != "<alice@example.org>" && p.Header.Get("To") != "alice@example.org" {
		t.Errorf("To: %q", p.Header.Get("To"))
	}
	if p.Header.Get("Subject") != "Confirm your email address for Gatehouse" {
		t.Errorf("Subject: %q", p.Header.Get("Subject"))
	}
	if !strings.Contains(p.Text, "#token=abc.def") {
		t.Errorf("text part: %q", p.Text)
	}
	if !strings.Contains(p.HTML, "Confirm") {
		t.Errorf("html part: %q", p.HTML)
	}
	if p.Header.Get("Message-Id") == "" || p.Header.Get("Date") == "" {
		t.Errorf("no Message-ID or Date: %v", p.Header)
	}
}

func TestSMTPUsesSTARTTLSWhenOffered(t *testing.T) {
	cfg, pool := testCert(t, "127.0.0.1")
	srv := startSMTP(t, serverOpts{startTLS: cfg})
	s := newSMTP(t, "smtp://"+srv.Addr, pool)
	if err := s.Send(context.Background(), testMessage("bob@example.org")); err != nil {
		t.Fatal(err)
	}
	if msgs := srv.messages(); len(msgs) != 1 || !msgs[0].TLS {
		t.Fatalf("want one message over TLS, got %+v", msgs)
	}
}

func TestSMTPRefusesUntrustedCertificate(t *testing.T) {
	cfg, _ := testCert(t, "127.0.0.1")
	srv := startSMTP(t, serverOpts{startTLS: cfg})
	s := newSMTP(t, "smtp://"+srv.Addr, nil) // system roots: the test CA is unknown
	if err := s.Send(context.Background(), testMessage("bob@example.org")); err == nil {
		t.Fatal("sent over STARTTLS to a certificate nobody vouches for")
	}
	if n := len(srv.messages()); n != 0 {
		t.Fatalf("server got %d messages", n)
	}
}

func TestSMTPCredentialsOverSTARTTLSToRemoteHost(t *testing.T) {
	cfg, pool := testCert(t, "mail.example.test")
	srv := startSMTP(t, serverOpts{startTLS: cfg, user: "gh", pass: "s3cret"})
	s := newSMTP(t, "smtp://gh:s3cret@mail.example.test:587", pool)
	redirect(s, srv.Addr)
	if err := s.Send(context.Background(), testMessage("carol@example.org")); err != nil {
		t.Fatal(err)
	}
	if msgs := srv.messages(); len(msgs) != 1 || !msgs[0].TLS || msgs[0].User != "gh" {
		t.Fatalf("want one authenticated message over TLS, got %+v", msgs)
	}
}

func TestSMTPRefusesCleartextCredentialsToRemoteHost(t *testing.T) {
	// The server offers AUTH but no STARTTLS (or an attacker stripped it).
	srv := startSMTP(t, serverOpts{user: "gh", pass: "s3cret"})
	s := newSMTP(t, "smtp://gh:s3cret@mail.example.test:587", nil)
	redirect(s, srv.Addr)
	if !strings.Contains(s.String(), "STARTTLS required") {
		t.Errorf("description %q does not say STARTTLS is required", s.String())
	}
	if err := s.Send(context.Background(), testMessage("carol@example.org")); err == nil {
		t.Fatal("sent with credentials in clear to a remote host")
	}
	srv.mu.Lock()
	authSeen := srv.authSeen
	srv.mu.Unlock()
	if authSeen || len(srv.messages()) != 0 {
		t.Fatal("credentials or mail reached the server without TLS")
	}
}

func TestSMTPCleartextCredentialsToLoopback(t *testing.T) {
	// A local relay on the same machine: nobody can listen in.
	srv := startSMTP(t, serverOpts{user: "gh", pass: "s3cret"})
	s := newSMTP(t, "smtp://gh:s3cret@"+srv.Addr, nil)
	if err := s.Send(context.Background(), testMessage("dan@example.org")); err != nil {
		t.Fatal(err)
	}
	if msgs := srv.messages(); len(msgs) != 1 || msgs[0].User != "gh" {
		t.Fatalf("want one authenticated message, got %+v", msgs)
	}
}

func TestCredentialsDecision(t *testing.T) {
	for _, c := range []struct {
		tls  bool
		host string
		want bool
	}{
		{false, "mail.example.com", false},
		{false, "10.0.0.5", false},
		{false, "::ffff:10.0.0.5", false},
		{true, "mail.example.com", true},
		{false, "localhost", true},
		{false, "127.0.0.1", true},
		{false, "127.3.4.5", true},
		{false, "::1", true},
		{false, "localhost.evil.com", false},
	} {
		if got := CredentialsAllowed(c.tls, c.host); got != c.want {
			t.Errorf("CredentialsAllowed(%v, %q) = %v, want %v", c.tls, c.host, got, c.want)
		}
	}
	// The guard inside the AUTH exchange says the same, whatever the
	// server advertises.
	a := &guardedAuth{user: "u", pass: "p", host: "mail.example.com"}
	if _, _, err := a.Start(&smtp.ServerInfo{Name: "mail.example.com", TLS: false, Auth: []string{"PLAIN"}}); !errors.Is(err, ErrCleartextCredentials) {
		t.Fatalf("guard let credentials go in clear: %v", err)
	}
	if mech, _, err := a.Start(&smtp.ServerInfo{Name: "mail.example.com", TLS: true, Auth: []string{"LOGIN", "PLAIN"}}); err != nil || mech != "PLAIN" {
		t.Fatalf("over TLS: mech %q, err %v", mech, err)
	}
}

func TestSMTPSImplicitTLS(t *testing.T) {
	cfg, pool := testCert(t, "mail.example.test")
	srv := startSMTP(t, serverOpts{implicit: cfg, user: "gh", pass: "s3cret"})
	s := newSMTP(t, "smtps://gh:s3cret@mail.example.test", pool)
	redirect(s, srv.Addr)
	if !strings.Contains(s.String(), "implicit TLS") || strings.Contains(s.String(), "s3cret") {
		t.Errorf("description %q", s.String())
	}
	if err := s.Send(context.Background(), testMessage("erin@example.org")); err != nil {
		t.Fatal(err)
	}
	if msgs := srv.messages(); len(msgs) != 1 || !msgs[0].TLS || msgs[0].User != "gh" {
		t.Fatalf("want one authenticated message over TLS, got %+v", msgs)
	}
}

func TestSMTPHangingServerTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // accept, then say nothing
		}
	}()
	s, err := NewSMTPSender(SMTPConfig{URL: "smtp://" + ln.Addr().String(), From: "noreply@example.com", SendTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = s.Send(context.Background(), testMessage("x@example.org"))
	if err == nil {
		t.Fatal("send to a silent server succeeded")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("send took %v despite a 300ms timeout", d)
	}
}

func TestSMTPConfigErrors(t *testing.T) {
	for _, c := range []SMTPConfig{
		{URL: "http://mail.example.com", From: "a@example.com"},
		{URL: "smtp://", From: "a@example.com"},
		{URL: "smtp://mail.example.com:99999", From: "a@example.com"},
		{URL: "smtp://mail.example.com/path", From: "a@example.com"},
		{URL: "smtp://mail.example.com", From: ""},
		{URL: "smtp://mail.example.com", From: "a@example.com\r\nBcc: x@example.com"},
		{URL: "smtp://:pw@mail.example.com", From: "a@example.com"},
	} {
		if _, err := NewSMTPSender(c); err == nil {
			t.Errorf("NewSMTPSender(%+v) accepted", c)
		}
	}
}
