package mail

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestRenderEmbedded(t *testing.T) {
	r, err := NewRenderer("Acme ID", "")
	if err != nil {
		t.Fatal(err)
	}
	url := "https://auth.example.com/account/magic-link#token=id.secret"
	m, err := r.Render(MagicLink, "alice@example.org", Data{URL: url, Code: "042917", Lifetime: 15 * time.Minute, Email: "alice@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if m.To != "alice@example.org" || !strings.Contains(m.Subject, "Acme ID") {
		t.Fatalf("message %+v", m)
	}
	if !strings.Contains(m.Text, url) || !strings.Contains(m.Text, "15 minutes") {
		t.Fatalf("text: %q", m.Text)
	}
	// The code stands on a line of its own, so it can be copied at once.
	if !regexp.MustCompile(`(?m)^042917$`).MatchString(m.Text) {
		t.Fatalf("code not on its own line: %q", m.Text)
	}
	// html/template keeps the fragment and escapes the & it would need.
	if !strings.Contains(m.HTML, `href="https://auth.example.com/account/magic-link#token=id.secret"`) {
		t.Fatalf("html: %q", m.HTML)
	}

	for _, c := range []struct {
		t    Template
		d    Data
		want []string
	}{
		{VerifyEmail, Data{URL: "https://a/account/verify-email#token=v", Lifetime: 24 * time.Hour, Email: "a@x.org"}, []string{"#token=v", "24 hours", "a@x.org"}},
		{ResetPassword, Data{URL: "https://a/account/reset-password#token=r", Lifetime: time.Hour}, []string{"#token=r", "1 hour"}},
		{ChangeEmail, Data{URL: "https://a/account/change-email#token=c", Lifetime: time.Hour, OldEmail: "old@x.org", NewEmail: "new@x.org"}, []string{"#token=c", "old@x.org", "new@x.org"}},
		{EmailChanged, Data{OldEmail: "old@x.org", NewEmail: "new@x.org"}, []string{"old@x.org", "new@x.org"}},
		{Test, Data{Email: "ops@x.org"}, []string{"Acme ID", "ops@x.org"}},
	} {
		m, err := r.Render(c.t, "a@x.org", c.d)
		if err != nil {
			t.Fatalf("%s: %v", c.t, err)
		}
		if err := m.validate(); err != nil {
			t.Fatalf("%s renders an invalid message: %v", c.t, err)
		}
		for _, w := range c.want {
			if !strings.Contains(m.Text, w) {
				t.Errorf("%s text lacks %q: %q", c.t, w, m.Text)
			}
		}
	}
	if _, err := r.Render("nope", "a@x.org", Data{}); err == nil {
		t.Error("unknown template rendered")
	}
}

func TestRenderOverride(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "reset_password.txt", `{{define "subject"}}{{.Product}}: new password{{end}}
Custom reset for {{.Email}}: {{.URL}} ({{.Expires}})`)
	writeFile(t, dir, "reset_password.html", `<b>custom {{.URL}}</b>`)
	writeFile(t, dir, "README.md", "notes the operator keeps here are ignored")
	r, err := NewRenderer("Acme", dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.Render(ResetPassword, "a@x.org", Data{URL: "https://a/#token=t", Email: "a@x.org", Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "Acme: new password" || m.Text != "Custom reset for a@x.org: https://a/#token=t (1 hour)" || m.HTML != "<b>custom https://a/#token=t</b>" {
		t.Fatalf("override not used: %+v", m)
	}
	// An empty HTML override drops the HTML part.
	writeFile(t, dir, "magic_link.html", "\n")
	r, err = NewRenderer("Acme", dir)
	if err != nil {
		t.Fatal(err)
	}
	if ml, err := r.Render(MagicLink, "a@x.org", Data{URL: "https://a/#token=t", Code: "123456"}); err != nil || ml.HTML != "" || ml.Text == "" {
		t.Fatalf("empty html override: %v %+v", err, ml)
	}
	// Templates not overridden stay embedded.
	v, err := r.Render(VerifyEmail, "a@x.org", Data{URL: "https://a/#token=v", Lifetime: time.Hour})
	if err != nil || !strings.Contains(v.Text, "Please confirm") {
		t.Fatalf("embedded template lost: %v %q", err, v.Text)
	}
}

func TestRenderBrokenOverrideFailsAtStart(t *testing.T) {
	for name, c := range map[string]struct{ file, content, want string }{
		"syntax":     {"verify_email.txt", `{{define "subject"}}x{{end}}{{.URL`, "verify_email.txt"},
		"field":      {"magic_link.txt", `{{define "subject"}}x{{end}}{{.Token}}`, "magic_link"},
		"no subject": {"test.txt", `just a body`, "subject"},
		"html":       {"test.html", `<a href="{{.URL}}">{{end}}`, "test.html"},
		"misspelt":   {"verify-email.txt", `{{define "subject"}}x{{end}}y`, "unknown template verify-email.txt"},
	} {
		dir := t.TempDir()
		writeFile(t, dir, c.file, c.content)
		_, err := NewRenderer("Gatehouse", dir)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming %q", name, err, c.want)
		}
	}
	if _, err := NewRenderer("Gatehouse", "/nonexistent/templates"); err == nil {
		t.Error("missing folder accepted")
	}
	if _, err := NewRenderer("Bad\r\nName", ""); err == nil {
		t.Error("product name with a line break accepted")
	}
	if _, err := NewRenderer(" ", ""); err == nil {
		t.Error("empty product name accepted")
	}
}

func TestWords(t *testing.T) {
	for d, want := range map[time.Duration]string{
		24 * time.Hour:   "24 hours",
		time.Hour:        "1 hour",
		15 * time.Minute: "15 minutes",
		90 * time.Minute: "1 hour 30 minutes",
		48 * time.Hour:   "2 days",
		30 * time.Second: "30 seconds",
		0:                "",
	} {
		if got := Words(d); got != want {
			t.Errorf("Words(%v) = %q, want %q", d, got, want)
		}
	}
}
