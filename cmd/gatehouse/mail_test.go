package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/mail"
	"github.com/gatehouse/gatehouse/metrics"
)

func runMailTest(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var stdout bytes.Buffer
	err := run(context.Background(), append([]string{"mail", "test"}, args...), func(k string) string { return env[k] }, strings.NewReader(""), &stdout, io.Discard)
	return stdout.String(), err
}

func TestDefaultMailDir(t *testing.T) {
	for db, want := range map[string]string{
		"sqlite:gatehouse.db":          "gatehouse-mail",
		"sqlite:/var/lib/gh/g.db":      "/var/lib/gh/gatehouse-mail",
		"sqlite:data/g.db":             "data/gatehouse-mail",
		"sqlite::memory:":              "gatehouse-mail",
		"postgres://u:p@db/gatehouse":  "gatehouse-mail",
		"postgresql://u:p@db/gatehous": "gatehouse-mail",
	} {
		if got := defaultMailDir(db); got != want {
			t.Errorf("defaultMailDir(%q) = %q, want %q", db, got, want)
		}
	}
}

func TestMailTestWritesFileBesideDatabase(t *testing.T) {
	dir := t.TempDir()
	out, err := runMailTest(t, nil, "--to", "ops@example.org", "--database", "sqlite:"+filepath.Join(dir, "g.db"), "--product-name", "Acme ID")
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "gatehouse-mail", "*.eml"))
	if len(files) != 1 || !strings.Contains(out, files[0]) {
		t.Fatalf("files %v, output %q", files, out)
	}
	raw, _ := os.ReadFile(files[0])
	if !bytes.Contains(raw, []byte("Acme ID test message")) || !bytes.Contains(raw, []byte("ops@example.org")) {
		t.Fatalf("message:\n%s", raw)
	}
	// No database is opened: mail test only borrows --database for the
	// folder's default.
	if _, err := os.Stat(filepath.Join(dir, "g.db")); err == nil {
		t.Error("mail test created the database")
	}
}

func TestMailTestEnvironment(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	out, err := runMailTest(t, map[string]string{"GATEHOUSE_MAIL_DIR": dir}, "--to", "ops@example.org")
	if err != nil || !strings.Contains(out, dir) {
		t.Fatalf("%v %q", err, out)
	}
}

func TestMailTestThroughSMTP(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &cmdSession{deliver: func(to string) { mu.Lock(); got = append(got, to); mu.Unlock() }}, nil
	}))
	srv.Domain = "localhost"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	defer srv.Close()
	out, err := runMailTest(t, nil, "--to", "ops@example.org", "--smtp-url", "smtp://"+ln.Addr().String(), "--mail-from", "Acme <noreply@example.com>")
	if err != nil {
		t.Fatalf("%v (output %q)", err, out)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != "ops@example.org" || !strings.Contains(out, "sent through smtp://"+ln.Addr().String()) {
		t.Fatalf("delivered to %v, output %q", got, out)
	}
}

type cmdSession struct{ deliver func(string) }

func (*cmdSession) Reset()                                      {}
func (*cmdSession) Logout() error                               { return nil }
func (*cmdSession) Mail(string, *smtp.MailOptions) error        { return nil }
func (s *cmdSession) Rcpt(to string, _ *smtp.RcptOptions) error { s.deliver(to); return nil }
func (*cmdSession) Data(r io.Reader) error                      { _, err := io.Copy(io.Discard, r); return err }

func TestMailTestFailureExitsNonZero(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	start := time.Now()
	out, err := runMailTest(t, nil, "--to", "ops@example.org", "--smtp-url", "smtp://user:hunter2@"+addr, "--mail-from", "noreply@example.com")
	if err == nil || !strings.Contains(out, "failed") || strings.Contains(out, "hunter2") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err %v, output %q", err, out)
	}
	if time.Since(start) > 15*time.Second {
		t.Fatal("too slow")
	}
}

func TestMailConfigErrors(t *testing.T) {
	tmpl := t.TempDir()
	if err := os.WriteFile(filepath.Join(tmpl, "test.txt"), []byte("{{.Nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{}, "--to is required"},
		{[]string{"--to", "a@x.org\r\nBcc: e@evil.example"}, "--to"},
		{[]string{"--to", "a@x.org", "--smtp-url", "smtp://mail.example.com"}, "--mail-from is required"},
		{[]string{"--to", "a@x.org", "--smtp-url", "ftp://mail.example.com", "--mail-from", "n@x.org"}, "--smtp-url"},
		{[]string{"--to", "a@x.org", "--smtp-url", "smtp://u:secretpw@mail.example.com:99999", "--mail-from", "n@x.org"}, "--smtp-url"},
		{[]string{"--to", "a@x.org", "--smtp-url", "smtp://mail.example.com", "--mail-from", "not an address"}, "--mail-from"},
		{[]string{"--to", "a@x.org", "--smtp-url", "smtp://mail.example.com", "--mail-from", "n@x.org", "--mail-dir", "x"}, "not both"},
		{[]string{"--to", "a@x.org", "--mail-templates", tmpl}, "test.txt"},
		{[]string{"--to", "a@x.org", "--product-name", ""}, "product name"},
		{[]string{"--to", "a@x.org", "--redis", "redis://x"}, "not defined"},
	} {
		_, err := runMailTest(t, nil, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one containing %q", c.args, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), "secretpw") {
			t.Errorf("%v: error shows the SMTP password: %v", c.args, err)
		}
	}
}

// nopOutbox records enqueued mail for the constructor test.
type nopOutbox struct {
	mu   sync.Mutex
	msgs []gatehouse.OutboxMessage
}

func (o *nopOutbox) EnqueueMail(_ context.Context, m gatehouse.OutboxMessage, _ ...gatehouse.OneTimeSecret) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.msgs = append(o.msgs, m)
	return nil
}
func (*nopOutbox) ClaimMail(context.Context, time.Time, time.Duration, int) ([]gatehouse.OutboxMessage, error) {
	return nil, nil
}
func (*nopOutbox) DeleteMail(context.Context, ...string) error        { return nil }
func (*nopOutbox) RetryMail(context.Context, string, time.Time) error { return gatehouse.ErrNotFound }
func (*nopOutbox) PendingMail(context.Context) (int, error)           { return 0, nil }

func TestNewMailer(t *testing.T) {
	c := config{Database: "sqlite:" + filepath.Join(t.TempDir(), "g.db"), ProductName: "Gatehouse"}
	store := &nopOutbox{}
	master := bytes.Repeat([]byte{7}, 32)
	out, worker, err := newMailer(&c, store, master, quietLogger(), metrics.New(nil), nil)
	if err != nil || out == nil || worker == nil {
		t.Fatal(err)
	}
	err = out.EnqueueTemplate(context.Background(), mail.VerifyEmail, "a@example.org", mail.Data{URL: "https://a/account/verify-email#token=T0KEN", Lifetime: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(store.msgs) != 1 || bytes.Contains(store.msgs[0].Sealed, []byte("T0KEN")) {
		t.Fatalf("queued %d messages, or the token shows in the sealed body", len(store.msgs))
	}
	c.SMTPURL = "smtp://mail.example.com"
	if _, _, err := newMailer(&c, store, master, quietLogger(), nil, nil); err == nil || !strings.Contains(err.Error(), "--mail-from") {
		t.Fatalf("no --mail-from accepted: %v", err)
	}
}

// TestFlowTemplatesExist: every template the service asks for exists, or
// its mail would be refused at queueing time.
func TestFlowTemplatesExist(t *testing.T) {
	have := map[mail.Template]bool{}
	for _, tmpl := range mail.Templates() {
		have[tmpl] = true
	}
	for _, name := range []string{auth.TemplateVerifyEmail, auth.TemplateResetPassword, auth.TemplateMagicLink, auth.TemplateChangeEmail, auth.TemplateEmailChanged} {
		if !have[mail.Template(name)] {
			t.Errorf("the service sends template %q, which the mail package does not have", name)
		}
	}
}
