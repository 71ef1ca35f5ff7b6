package e2e

// Helpers of the mail suite (mail_*_test.go): a real SMTP server in the test
// process (github.com/emersion/go-smtp) that captures every message, can be
// down (nothing listening on its port), up, or hanging (it accepts TCP and
// never answers); a MIME reader for what it captured; and small helpers for
// the mail endpoints. Everything here is prefixed mail.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/mail"
	netsmtp "net/smtp"
	"net/textproto"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

const (
	mailFrom      = "noreply@example.test"
	mailPublicURL = "https://app.e2e.test"
	// mailWait bounds every wait for a message: the sender worker retries
	// with a backoff that starts at a few seconds.
	mailWait = 30 * time.Second
)

// mailActions are the link actions of API.md's mail section.
var mailActions = []string{"verify-email", "reset-password", "magic-link", "change-email"}

// ---------------------------------------------------------------------------
// The SMTP capture server
// ---------------------------------------------------------------------------

// mailMsg is one message the capture server accepted.
type mailMsg struct {
	From   string   // envelope sender (MAIL FROM)
	Rcpts  []string // envelope recipients (RCPT TO)
	Raw    []byte
	Header mail.Header
	Text   string // every text/plain part, decoded, CRLF turned into LF
	HTML   string // every text/html part, decoded
	Err    error  // the message could not be parsed as MIME
	At     time.Time
}

func (m *mailMsg) String() string {
	subj := m.Header.Get("Subject")
	if dec, err := new(mime.WordDecoder).DecodeHeader(subj); err == nil {
		subj = dec
	}
	return fmt.Sprintf("from %s to %v subject %q", m.From, m.Rcpts, subj)
}

// mailCapture is an SMTP server on a fixed loopback port.
type mailCapture struct {
	t    *testing.T
	port int

	mu    sync.Mutex
	state string // "down", "up", "hang"
	msgs  []*mailMsg
	rcpts []string // every RCPT TO seen, also in transactions that never completed
	srv   *smtp.Server
	ln    net.Listener // hanging listener
	hung  []net.Conn
	hwg   sync.WaitGroup
}

// mailNewCapture reserves a port and returns a capture server that is down
// (nothing listens on the port) until Start or Hang.
func mailNewCapture(t *testing.T) *mailCapture {
	t.Helper()
	c := &mailCapture{t: t, port: freePort(t), state: "down"}
	t.Cleanup(func() {
		c.Down()
		if t.Failed() {
			c.mu.Lock()
			defer c.mu.Unlock()
			t.Logf("SMTP capture (port %d) received %d messages:", c.port, len(c.msgs))
			for _, m := range c.msgs {
				t.Logf("  %s", m)
			}
		}
	})
	return c
}

// mailStartSMTP is a capture server that is up.
func mailStartSMTP(t *testing.T) *mailCapture {
	t.Helper()
	c := mailNewCapture(t)
	c.Start()
	return c
}

// URL is the --smtp-url of the capture server.
func (c *mailCapture) URL() string { return fmt.Sprintf("smtp://127.0.0.1:%d", c.port) }

func (c *mailCapture) listen() net.Listener {
	c.t.Helper()
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		var ln net.Listener
		ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", c.port))
		if err == nil {
			return ln
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("SMTP capture: listening on port %d again: %v", c.port, err)
	return nil
}

// Start serves SMTP on the port (after Down or Hang, on the same port).
func (c *mailCapture) Start() {
	c.t.Helper()
	c.Down()
	ln := c.listen()
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &mailSession{c: c}, nil
	}))
	srv.Domain = "localhost"
	srv.ReadTimeout = 20 * time.Second
	srv.WriteTimeout = 20 * time.Second
	srv.MaxMessageBytes = 1 << 20
	srv.MaxRecipients = 50
	c.mu.Lock()
	c.srv, c.state = srv, "up"
	c.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// Hang accepts TCP connections on the port and never answers on them.
func (c *mailCapture) Hang() {
	c.t.Helper()
	c.Down()
	ln := c.listen()
	c.mu.Lock()
	c.ln, c.state = ln, "hang"
	c.mu.Unlock()
	c.hwg.Add(1)
	go func() {
		defer c.hwg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			if c.ln != ln {
				c.mu.Unlock()
				conn.Close()
				return
			}
			c.hung = append(c.hung, conn)
			c.mu.Unlock()
			c.hwg.Add(1)
			go func() { // read and drop whatever the client says
				defer c.hwg.Done()
				_, _ = io.Copy(io.Discard, conn)
			}()
		}
	}()
}

// Down closes the listener and every connection: the port refuses.
func (c *mailCapture) Down() {
	c.mu.Lock()
	srv, ln, hung := c.srv, c.ln, c.hung
	c.srv, c.ln, c.hung, c.state = nil, nil, nil, "down"
	c.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
	if ln != nil {
		ln.Close()
	}
	for _, conn := range hung {
		conn.Close()
	}
	c.hwg.Wait()
}

// HungConns is how many connections the hanging server accepted.
func (c *mailCapture) HungConns() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.hung)
}

// mailSession is one SMTP connection of the capture server.
type mailSession struct {
	c     *mailCapture
	from  string
	rcpts []string
}

func (s *mailSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *mailSession) Logout() error { return nil }

func (s *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	s.c.mu.Lock()
	s.c.rcpts = append(s.c.rcpts, to)
	s.c.mu.Unlock()
	return nil
}

func (s *mailSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := mailParse(raw)
	m.From, m.Rcpts, m.At = s.from, slices.Clone(s.rcpts), time.Now()
	s.c.mu.Lock()
	s.c.msgs = append(s.c.msgs, m)
	s.c.mu.Unlock()
	return nil
}

// All is every message received so far, in order of arrival.
func (c *mailCapture) All() []*mailMsg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

// Rcpts is every envelope recipient seen so far.
func (c *mailCapture) Rcpts() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.rcpts)
}

// To is every message whose envelope names addr (case-insensitively).
func (c *mailCapture) To(addr string) []*mailMsg {
	var out []*mailMsg
	for _, m := range c.All() {
		for _, r := range m.Rcpts {
			if strings.EqualFold(r, addr) {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// Await waits until at least n messages to addr have arrived and returns
// every message to addr; it fails the test at the deadline.
func (c *mailCapture) Await(t *testing.T, addr string, n int) []*mailMsg {
	t.Helper()
	var got []*mailMsg
	if !eventually(mailWait, func() bool {
		got = c.To(addr)
		return len(got) >= n
	}) {
		t.Fatalf("waited %v for %d message(s) to %s, got %d (all messages: %d)", mailWait, n, addr, len(got), len(c.All()))
	}
	return got
}

// AwaitLink waits for the n-th (1-based) message to addr that carries a
// link of action and returns that link and message; the message is
// checked with mailCheckMessage.
func (c *mailCapture) AwaitLink(t *testing.T, addr, action string, n int) (mailLink, *mailMsg) {
	t.Helper()
	var msgs []*mailMsg
	if !eventually(mailWait, func() bool {
		msgs = msgs[:0]
		for _, m := range c.To(addr) {
			if len(mailLinks(m, action)) > 0 {
				msgs = append(msgs, m)
			}
		}
		return len(msgs) >= n
	}) {
		t.Fatalf("waited %v for message %d to %s with a %s link; got %d such (%d to that address in all: %v)",
			mailWait, n, addr, action, len(msgs), len(c.To(addr)), c.To(addr))
	}
	m := msgs[n-1]
	mailCheckMessage(t, m, addr)
	links := mailLinks(m, action)
	for _, l := range links[1:] {
		if l.Token != links[0].Token {
			t.Errorf("message %s carries two different %s tokens", m, action)
		}
	}
	return links[0], m
}

// Quiet asserts that after a grace period no more than want messages
// reached addr (a duplicate or an unexpected send shows up by then).
func (c *mailCapture) Quiet(t *testing.T, addr string, want int, grace time.Duration) {
	t.Helper()
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if n := len(c.To(addr)); n > want {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := c.To(addr); len(got) != want {
		t.Errorf("%s received %d message(s), want exactly %d: %v", addr, len(got), want, got)
	}
}

// ---------------------------------------------------------------------------
// Reading messages
// ---------------------------------------------------------------------------

// mailParse reads raw as an RFC 5322 message with MIME parts.
func mailParse(raw []byte) *mailMsg {
	m := &mailMsg{Raw: raw}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		m.Err = err
		return m
	}
	m.Header = msg.Header
	var text, html strings.Builder
	m.Err = mailWalk(textproto.MIMEHeader(msg.Header), msg.Body, 0, &text, &html)
	m.Text = strings.ReplaceAll(text.String(), "\r\n", "\n")
	m.HTML = strings.ReplaceAll(html.String(), "\r\n", "\n")
	return m
}

func mailWalk(h textproto.MIMEHeader, body io.Reader, depth int, text, html *strings.Builder) error {
	if depth > 8 {
		return errors.New("MIME nesting too deep")
	}
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain; charset=us-ascii"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("Content-Type %q: %v", ct, err)
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("%s: %v", mt, err)
			}
			if err := mailWalk(p.Header, p, depth+1, text, html); err != nil {
				return err
			}
		}
	}
	var rd io.Reader = body
	switch cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))); cte {
	case "quoted-printable":
		rd = quotedprintable.NewReader(body)
	case "base64":
		rd = base64.NewDecoder(base64.StdEncoding, body)
	case "", "7bit", "8bit", "binary":
	default:
		return fmt.Errorf("unknown Content-Transfer-Encoding %q", cte)
	}
	data, err := io.ReadAll(rd)
	if err != nil {
		return fmt.Errorf("%s body: %v", mt, err)
	}
	if cs := strings.ToLower(params["charset"]); cs != "" && cs != "utf-8" && cs != "us-ascii" {
		return fmt.Errorf("%s: charset %q (want utf-8)", mt, cs)
	}
	if disp, _, _ := mime.ParseMediaType(h.Get("Content-Disposition")); disp == "attachment" {
		return nil
	}
	switch mt {
	case "text/plain":
		text.Write(data)
		text.WriteString("\n")
	case "text/html":
		html.Write(data)
		html.WriteString("\n")
	}
	return nil
}

// mailLink is one account link found in a message.
type mailLink struct {
	URL    string // the whole link
	Base   string // what precedes /account/
	Action string
	Token  string
}

var (
	mailLinkRE = regexp.MustCompile(`(https?://[^\s<>"'#?]+?)/account/(verify-email|reset-password|magic-link|change-email)([^\s<>"'#]*)#token=([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)`)
	// mailTokenInQueryRE finds a token handed over in a query string.
	mailTokenInQueryRE = regexp.MustCompile(`\?[^\s<>"'#]*token=`)
	mailCodeRE         = regexp.MustCompile(`(?m)^[ \t]*([0-9]{6})[ \t]*$`)
)

// mailLinks lists the links of action ("" for any) in m's text/plain part.
func mailLinks(m *mailMsg, action string) []mailLink {
	var out []mailLink
	for _, sm := range mailLinkRE.FindAllStringSubmatch(m.Text, -1) {
		if action != "" && sm[2] != action {
			continue
		}
		out = append(out, mailLink{URL: sm[0], Base: sm[1], Action: sm[2], Token: sm[4]})
	}
	return out
}

// mailCode is the 6-digit code on a line of its own in m's text/plain part.
func mailCode(t *testing.T, m *mailMsg) string {
	t.Helper()
	all := mailCodeRE.FindAllStringSubmatch(m.Text, -1)
	if len(all) == 0 {
		t.Fatalf("message %s has no 6-digit code on a line of its own:\n%s", m, m.Text)
	}
	for _, sm := range all[1:] {
		if sm[1] != all[0][1] {
			t.Errorf("message %s carries two different codes", m)
		}
	}
	return all[0][1]
}

// mailCheckMessage asserts what holds for every message Gatehouse sends to
// addr: well-formed MIME with a text/plain part, From the configured
// sender, To the address alone (also in the envelope), a Subject, every
// link based on the public URL with its token in the fragment only.
func mailCheckMessage(t *testing.T, m *mailMsg, addr string) {
	t.Helper()
	if m.Err != nil {
		t.Errorf("message %s: not well-formed: %v\n%s", m, m.Err, m.Raw)
		return
	}
	if strings.TrimSpace(m.Text) == "" {
		t.Errorf("message %s has no text/plain part", m)
	}
	if len(m.Rcpts) != 1 || !strings.EqualFold(m.Rcpts[0], addr) {
		t.Errorf("message %s: envelope recipients %v, want only %s", m, m.Rcpts, addr)
	}
	if !strings.EqualFold(m.From, mailFrom) {
		t.Errorf("message %s: envelope sender %q, want %s", m, m.From, mailFrom)
	}
	if from, err := m.Header.AddressList("From"); err != nil || len(from) != 1 || !strings.EqualFold(from[0].Address, mailFrom) {
		t.Errorf("message %s: From header %q (%v), want %s", m, m.Header.Get("From"), err, mailFrom)
	}
	if to, err := m.Header.AddressList("To"); err != nil || len(to) != 1 || !strings.EqualFold(to[0].Address, addr) {
		t.Errorf("message %s: To header %q (%v), want %s alone", m, m.Header.Get("To"), err, addr)
	}
	for _, k := range []string{"Cc", "Bcc"} {
		if v, ok := m.Header[k]; ok {
			t.Errorf("message %s has a %s header %q", m, k, v)
		}
	}
	if len(m.Header["To"]) != 1 || len(m.Header["From"]) != 1 || len(m.Header["Subject"]) != 1 {
		t.Errorf("message %s: want exactly one To, From and Subject header, got %d, %d, %d",
			m, len(m.Header["To"]), len(m.Header["From"]), len(m.Header["Subject"]))
	}
	for _, body := range []string{m.Text, m.HTML} {
		if mailTokenInQueryRE.MatchString(body) {
			t.Errorf("message %s hands a token over in a query string:\n%s", m, body)
		}
	}
	for _, l := range mailLinks(m, "") {
		if l.Base != mailPublicURL {
			t.Errorf("message %s: link %s is not based on --public-url %s", m, l.URL, mailPublicURL)
		}
		if !strings.HasPrefix(l.URL, mailPublicURL+"/account/"+l.Action+"#token=") {
			t.Errorf("message %s: link %s is not <public-url>/account/<action>#token=<token>", m, l.URL)
		}
	}
}

// ---------------------------------------------------------------------------
// Servers and requests
// ---------------------------------------------------------------------------

// mailFlags are the serve flags of a server that sends through c (nil: no
// SMTP, the file outbox). The send limits are off; extra overrides.
func mailFlags(c *mailCapture, extra ...string) []string {
	f := []string{"--mail-from", mailFrom, "--public-url", mailPublicURL,
		"--rate-limit-mail", "off", "--rate-limit-mail-ip", "off"}
	if c != nil {
		f = append(f, "--smtp-url", c.URL())
	}
	return append(f, extra...)
}

// mailStart starts a server on backend (see hrStart) sending through c.
func mailStart(t *testing.T, backend string, c *mailCapture, extra ...string) *hrEnv {
	t.Helper()
	return hrStart(t, backend, mailFlags(c, extra...)...)
}

// mailAccepted asserts 202 with the body {}.
func mailAccepted(t *testing.T, r *resp) bool {
	t.Helper()
	if !expect(t, r, http.StatusAccepted, "") {
		return false
	}
	if strings.TrimSpace(string(r.Body)) != "{}" {
		t.Errorf("%s: want the body {}", r)
		return false
	}
	return true
}

// mailForgot requests a reset mail for email and asserts 202 {}.
func mailForgot(t *testing.T, s *server, email string, opts ...reqOpt) *resp {
	t.Helper()
	r := s.do(t, "POST", "/auth/password/forgot", map[string]any{"email": email}, opts...)
	mailAccepted(t, r)
	return r
}

// mailMagic requests a magic-link mail for email and asserts 202 {}.
func mailMagic(t *testing.T, s *server, email string, opts ...reqOpt) *resp {
	t.Helper()
	r := s.do(t, "POST", "/auth/magic-link", map[string]any{"email": email}, opts...)
	mailAccepted(t, r)
	return r
}

// mailUser is the "user" member of r's body.
func mailUser(t *testing.T, r *resp) map[string]any {
	t.Helper()
	u, _ := r.JSON()["user"].(map[string]any)
	if u == nil {
		t.Errorf("%s: no user object", r)
	}
	return u
}

// mailVerifiedFlag is the user's email_verified member, which must be a bool.
func mailVerifiedFlag(t *testing.T, ctx string, u map[string]any) bool {
	t.Helper()
	v, ok := u["email_verified"].(bool)
	if !ok {
		t.Errorf("%s: user.email_verified missing or not a bool: %v", ctx, u)
	}
	return v
}

// mailMeVerified asks /auth/me whether the user's email is verified.
func mailMeVerified(t *testing.T, s *server, access string) bool {
	t.Helper()
	r := s.meWith(t, access)
	if !expect(t, r, http.StatusOK, "") {
		return false
	}
	return mailVerifiedFlag(t, r.req, mailUser(t, r))
}

// mailAMR is the amr claim of an access token.
func mailAMR(t *testing.T, access string) []string {
	t.Helper()
	parts := strings.Split(access, ".")
	if len(parts) != 3 {
		t.Fatalf("access token %q is not a compact JWS", abbrev(access))
	}
	claims := atkDecodeSeg(t, parts[1])
	raw, ok := claims["amr"].([]any)
	if !ok {
		t.Errorf("access token has no amr array: %v", claims["amr"])
		return nil
	}
	var out []string
	for _, v := range raw {
		s, _ := v.(string)
		out = append(out, s)
	}
	return out
}

// mailVerifyMagic posts to /auth/magic-link/verify from a new device in
// the given transport; body is {token} or {email,code}.
func mailVerifyMagic(t *testing.T, s *server, bodyMode bool, body map[string]any) (*device, *resp) {
	t.Helper()
	d := s.newDevice(bodyMode)
	if bodyMode {
		body["token_transport"] = "body"
	}
	r := d.do(t, "POST", "/auth/magic-link/verify", body)
	return d, r
}

// mailRawPost posts a JSON body without the harness's checks (safe from
// many goroutines) and returns status and problem code.
func mailRawPost(s *server, path string, body map[string]any, header map[string]string) (int, string, []byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, "", nil, err
	}
	st, _, rb, err := atkRaw(s, "POST", path, b, header)
	var p struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(rb, &p)
	return st, p.Code, rb, err
}

// mailSplit splits a mail token <id>.<secret> and asserts its shape: base64url
// characters and one dot, a secret of at least 128 bits.
func mailSplit(t *testing.T, tok string) (id, secret string) {
	t.Helper()
	id, secret, ok := strings.Cut(tok, ".")
	if !ok || id == "" || secret == "" || strings.Contains(secret, ".") {
		t.Fatalf("mail token %q is not <id>.<secret>", abbrev(tok))
	}
	if raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(secret, "=")); err == nil && len(raw) < 16 {
		t.Errorf("mail token secret has %d bytes, want at least 16 (128 bits)", len(raw))
	} else if err != nil && len(secret) < 22 {
		t.Errorf("mail token secret %q is too short for 128 bits", secret)
	}
	return id, secret
}

// TestMailHarnessCapture checks the capture server and the MIME reader
// themselves: a multipart/alternative message with a quoted-printable text
// part is read back with its link and code; down refuses, hang accepts and
// stays silent, and the server starts again on the same port.
func TestMailHarnessCapture(t *testing.T) {
	t.Parallel()
	c := mailStartSMTP(t)
	tok := "AbC_12-x." + strings.Repeat("Zz9_-", 9)
	link := mailPublicURL + "/account/reset-password#token=" + tok
	// A long line that quoted-printable folds with soft line breaks.
	qp := strings.ReplaceAll("Reset your password: "+link, "=", "=3D")
	var folded strings.Builder
	for len(qp) > 60 {
		cut := 60
		for qp[cut-1] == '=' || qp[cut-2] == '=' { // do not split an escape
			cut--
		}
		folded.WriteString(qp[:cut] + "=\r\n")
		qp = qp[cut:]
	}
	folded.WriteString(qp)
	raw := "From: Gatehouse <" + mailFrom + ">\r\n" +
		"To: someone@example.com\r\n" +
		"Subject: =?utf-8?q?R=C3=A9initialiser?=\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		folded.String() + "\r\n\r\nOr type this code:\r\n\r\n  123456\r\n" +
		"\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString([]byte("<a href=\""+link+"\">reset</a>")) + "\r\n--b1--\r\n"
	if err := smtpSendRaw(c.port, mailFrom, "someone@example.com", raw); err != nil {
		t.Fatalf("sending to the capture server: %v", err)
	}
	got, m := c.AwaitLink(t, "someone@example.com", "reset-password", 1)
	if got.Token != tok || got.URL != link {
		t.Errorf("link %+v, want token %s", got, tok)
	}
	if code := mailCode(t, m); code != "123456" {
		t.Errorf("code %q", code)
	}
	if !strings.Contains(m.HTML, link) {
		t.Errorf("HTML part not decoded: %q", m.HTML)
	}
	c.Down()
	if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.port), time.Second); err == nil {
		conn.Close()
		t.Errorf("a down capture server accepted a connection")
	}
	c.Hang()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.port), time.Second)
	if err != nil {
		t.Fatalf("a hanging capture server refused: %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _ := conn.Read(make([]byte, 1)); n != 0 {
		t.Errorf("a hanging capture server said something")
	}
	conn.Close()
	c.Start()
	if err := smtpSendRaw(c.port, mailFrom, "other@example.com", "Subject: x\r\n\r\nhello\r\n"); err != nil {
		t.Fatalf("sending after a restart on the same port: %v", err)
	}
	c.Await(t, "other@example.com", 1)
}

// smtpSendRaw sends one message with the standard library's client.
func smtpSendRaw(port int, from, to, raw string) error {
	cl, err := netsmtp.Dial(fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.Mail(from); err != nil {
		return err
	}
	if err := cl.Rcpt(to); err != nil {
		return err
	}
	w, err := cl.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, raw); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return cl.Quit()
}
