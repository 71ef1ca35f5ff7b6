package mail

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFileSenderWritesParseableEML(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gatehouse-mail")
	f, err := NewFileSender(dir, "Gatehouse <noreply@localhost>")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("folder mode: %v %v", fi.Mode(), err)
	}
	path, err := f.Write(context.Background(), testMessage("alice@example.org"))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(path) != dir || !strings.HasSuffix(path, ".eml") {
		t.Fatalf("written to %s", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, want 0600", fi.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := parseEML(t, raw)
	if !strings.Contains(p.Header.Get("To"), "alice@example.org") || !strings.Contains(p.Header.Get("From"), "noreply@localhost") {
		t.Errorf("headers: %v", p.Header)
	}
	if p.Header.Get("Subject") != "Confirm your email address for Gatehouse" {
		t.Errorf("Subject: %q", p.Header.Get("Subject"))
	}
	if !strings.Contains(p.Text, "#token=abc.def") || p.HTML == "" {
		t.Errorf("parts: text %q html %q", p.Text, p.HTML)
	}
	// Only the finished file is left: no temporary files.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("folder holds %d entries, want 1", len(entries))
	}
}

func TestFileSenderTextOnly(t *testing.T) {
	f, err := NewFileSender(t.TempDir(), "noreply@localhost")
	if err != nil {
		t.Fatal(err)
	}
	m := testMessage("bob@example.org")
	m.HTML = ""
	path, err := f.Write(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	p := parseEML(t, raw)
	if !strings.HasPrefix(p.Header.Get("Content-Type"), "text/plain") || !strings.Contains(p.Text, "#token=abc.def") {
		t.Fatalf("content type %q, text %q", p.Header.Get("Content-Type"), p.Text)
	}
}

// TestHeaderInjectionRefused covers every way user input approaches a
// header: the recipient is refused unless it is one bare address, a subject
// with a line break is refused, and a name (which only bodies use) with
// line breaks adds no header.
func TestHeaderInjectionRefused(t *testing.T) {
	for _, to := range []string{
		"alice@example.org\r\nBcc: eve@evil.example",
		"alice@example.org\nBcc: eve@evil.example",
		"alice@example.org\r",
		"Alice <alice@example.org>",
		"alice@example.org, eve@evil.example",
		"alice@example.org\u2028Bcc: eve@evil.example",
		"<alice@example.org>",
		"",
		"not an address",
	} {
		if _, err := ParseRecipient(to); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("ParseRecipient(%q) accepted", to)
		}
	}
	if got, err := ParseRecipient("alice+tag@example.org"); err != nil || got != "alice+tag@example.org" {
		t.Errorf("plain address refused: %v", err)
	}

	dir := t.TempDir()
	f, err := NewFileSender(dir, "noreply@localhost")
	if err != nil {
		t.Fatal(err)
	}
	smtpSender, err := NewSMTPSender(SMTPConfig{URL: "smtp://127.0.0.1:1", From: "noreply@localhost", SendTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	bad := []Message{
		{To: "alice@example.org\r\nBcc: eve@evil.example", Subject: "Hi", Text: "x"},
		{To: "alice@example.org", Subject: "Hi\r\nBcc: eve@evil.example", Text: "x"},
		{To: "alice@example.org", Subject: "Hi\nBcc: eve@evil.example", Text: "x"},
		{To: "alice@example.org", Subject: "", Text: "x"},
		{To: "alice@example.org", Subject: "Hi", Text: ""},
	}
	for _, m := range bad {
		for _, s := range []Sender{f, smtpSender} {
			if err := s.Send(context.Background(), m); !errors.Is(err, ErrInvalidMessage) {
				t.Errorf("%T sent %+v: %v", s, m, err)
			}
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("a refused message left %d files", len(entries))
	}

	// A display name with line breaks, rendered through a template that
	// (against advice) also puts it in the subject.
	tdir := t.TempDir()
	writeFile(t, tdir, "verify_email.txt", `{{define "subject"}}Welcome {{.Name}}{{end}}Hello {{.Name}}, {{.URL}}`)
	r, err := NewRenderer("Gatehouse", tdir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.Render(VerifyEmail, "alice@example.org", Data{Name: "Eve\r\nBcc: eve@evil.example\r\n\r\nInjected", URL: "https://x.example/#token=t"})
	if err != nil {
		t.Fatal(err)
	}
	path, err := f.Write(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	p := parseEML(t, raw)
	if len(p.Header["Bcc"]) != 0 || len(p.Header["To"]) != 1 || strings.Contains(p.Header.Get("To"), "evil") {
		t.Fatalf("a name added a header: %v", p.Header)
	}
	if strings.ContainsAny(p.Header.Get("Subject"), "\r\n") {
		t.Fatalf("subject spans lines: %q", p.Header.Get("Subject"))
	}
}

func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
