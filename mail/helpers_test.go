package mail

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	netmail "net/mail"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/gatehouse/gatehouse"
)

// fakeOutbox is an in-memory gatehouse.MailOutbox with real leases, so
// that several workers on it behave as several instances on one database.
type fakeOutbox struct {
	mu       sync.Mutex
	rows     map[string]*fakeRow
	enqueued int
	retries  int
	deleted  int
	claimErr error
	secrets  []gatehouse.OneTimeSecret // stored with messages
}

type fakeRow struct {
	m          gatehouse.OutboxMessage
	leaseUntil time.Time
}

func newFakeOutbox() *fakeOutbox { return &fakeOutbox{rows: map[string]*fakeRow{}} }

func (f *fakeOutbox) EnqueueMail(_ context.Context, m gatehouse.OutboxMessage, with ...gatehouse.OneTimeSecret) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.rows[m.ID]; ok {
		return errors.New("duplicate id")
	}
	m.Sealed = bytes.Clone(m.Sealed)
	f.rows[m.ID] = &fakeRow{m: m, leaseUntil: m.ClaimedUntil}
	f.secrets = append(f.secrets, with...)
	f.enqueued++
	return nil
}

func (f *fakeOutbox) ClaimMail(_ context.Context, now time.Time, lease time.Duration, limit int) ([]gatehouse.OutboxMessage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.claimErr != nil {
		return nil, f.claimErr
	}
	var due []*fakeRow
	for _, r := range f.rows {
		if !r.m.NextAttemptAt.After(now) && !r.leaseUntil.After(now) {
			due = append(due, r)
		}
	}
	sort.Slice(due, func(i, j int) bool { return due[i].m.NextAttemptAt.Before(due[j].m.NextAttemptAt) })
	if len(due) > limit {
		due = due[:limit]
	}
	out := make([]gatehouse.OutboxMessage, 0, len(due))
	for _, r := range due {
		r.leaseUntil = now.Add(lease)
		out = append(out, r.m)
	}
	return out, nil
}

func (f *fakeOutbox) DeleteMail(_ context.Context, ids ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		if _, ok := f.rows[id]; ok {
			f.deleted++
		}
		delete(f.rows, id)
	}
	return nil
}

func (f *fakeOutbox) RetryMail(_ context.Context, id string, next time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.rows[id]
	if !ok {
		return gatehouse.ErrNotFound
	}
	r.m.Attempts++
	r.m.NextAttemptAt = next
	r.leaseUntil = time.Time{}
	f.retries++
	return nil
}

func (f *fakeOutbox) PendingMail(context.Context) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.rows), nil
}

func (f *fakeOutbox) pending() int { n, _ := f.PendingMail(context.Background()); return n }

// countingObserver records the worker's metrics.
type countingObserver struct {
	mu                                sync.Mutex
	sent, failed, gaveUp, lastPending int
}

func (o *countingObserver) MailSent()   { o.mu.Lock(); o.sent++; o.mu.Unlock() }
func (o *countingObserver) MailFailed() { o.mu.Lock(); o.failed++; o.mu.Unlock() }
func (o *countingObserver) MailGaveUp() { o.mu.Lock(); o.gaveUp++; o.mu.Unlock() }
func (o *countingObserver) MailPending(n int) {
	o.mu.Lock()
	o.lastPending = n
	o.mu.Unlock()
}
func (o *countingObserver) get() (sent, failed, gaveUp int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.sent, o.failed, o.gaveUp
}

// received is one message as the test SMTP server got it.
type received struct {
	From string
	To   []string
	Data []byte
	TLS  bool   // the session was encrypted
	User string // the authenticated user, if any
}

// smtpServer is a real SMTP server (emersion/go-smtp) in the test process.
type smtpServer struct {
	Addr string
	srv  *smtp.Server

	mu       sync.Mutex
	msgs     []received
	authSeen bool // an AUTH command got as far as the backend
	user     string
	pass     string
}

type serverOpts struct {
	startTLS *tls.Config // offer STARTTLS with this
	implicit *tls.Config // listen with implicit TLS
	user     string      // require AUTH PLAIN with user/pass
	pass     string
}

func startSMTP(t *testing.T, o serverOpts) *smtpServer {
	t.Helper()
	s := &smtpServer{user: o.user, pass: o.pass}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{s: s, c: c}, nil
	}))
	s.srv.Domain = "localhost"
	// Offer AUTH without TLS too: the client must refuse on its own.
	s.srv.AllowInsecureAuth = true
	s.srv.ReadTimeout = 10 * time.Second
	s.srv.WriteTimeout = 10 * time.Second
	s.srv.TLSConfig = o.startTLS
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if o.implicit != nil {
		ln = tls.NewListener(ln, o.implicit)
	}
	s.Addr = ln.Addr().String()
	go s.srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { s.srv.Close() })
	return s
}

func (s *smtpServer) messages() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.msgs...)
}

type session struct {
	s    *smtpServer
	c    *smtp.Conn
	from string
	to   []string
	user string
}

func (x *session) Reset()        { x.from, x.to = "", nil }
func (x *session) Logout() error { return nil }
func (x *session) Mail(from string, _ *smtp.MailOptions) error {
	if x.s.user != "" && x.user == "" {
		return smtp.ErrAuthRequired
	}
	x.from = from
	return nil
}
func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error { x.to = append(x.to, to); return nil }
func (x *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, tlsOn := x.c.TLSConnectionState()
	x.s.mu.Lock()
	x.s.msgs = append(x.s.msgs, received{From: x.from, To: x.to, Data: b, TLS: tlsOn, User: x.user})
	x.s.mu.Unlock()
	return nil
}
func (x *session) AuthMechanisms() []string {
	if x.s.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}
func (x *session) Auth(string) (sasl.Server, error) {
	x.s.mu.Lock()
	x.s.authSeen = true
	x.s.mu.Unlock()
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != x.s.user || pass != x.s.pass {
			return errors.New("bad credentials")
		}
		x.user = user
		return nil
	}), nil
}

// testCert makes a self-signed certificate for the names and returns the
// server config and a pool that trusts it.
func testCert(t *testing.T, names ...string) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

// parsed is a message read back with net/mail, its text part decoded.
type parsed struct {
	Header netmail.Header
	Text   string
	HTML   string
}

func parseEML(t *testing.T, raw []byte) parsed {
	t.Helper()
	msg, err := netmail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("not an RFC 5322 message: %v\n%s", err, raw)
	}
	p := parsed{Header: msg.Header}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("content type: %v", err)
	}
	readPart := func(ct, cte string, r io.Reader) {
		if strings.EqualFold(cte, "quoted-printable") {
			r = quotedprintable.NewReader(r)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(ct, "text/plain"):
			p.Text = string(b)
		case strings.HasPrefix(ct, "text/html"):
			p.HTML = string(b)
		}
	}
	if !strings.HasPrefix(mt, "multipart/") {
		readPart(mt, msg.Header.Get("Content-Transfer-Encoding"), msg.Body)
		return p
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		readPart(part.Header.Get("Content-Type"), part.Header.Get("Content-Transfer-Encoding"), part)
	}
	return p
}
