package mail

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	texttemplate "text/template"
	"time"
)

// Template names a kind of mail. Each has NAME.txt (text/template, which
// must define "subject" and whose body is the text part) and optionally
// NAME.html (html/template, the HTML alternative; an override that renders
// empty drops the HTML part).
type Template string

// The mails Gatehouse sends.
const (
	VerifyEmail   Template = "verify_email"   // link to confirm an address
	ResetPassword Template = "reset_password" // link to set a new password
	MagicLink     Template = "magic_link"     // sign-in link and 6-digit code
	ChangeEmail   Template = "change_email"   // link sent to the new address
	EmailChanged  Template = "email_changed"  // notice sent to the old address
	Test          Template = "test"           // `gatehouse mail test`
)

// Templates lists every template, for checks and documentation.
func Templates() []Template {
	return []Template{VerifyEmail, ResetPassword, MagicLink, ChangeEmail, EmailChanged, Test}
}

// Data is what a template may use, besides .Product (the product name) and
// .Expires (Lifetime in words, "24 hours").
type Data struct {
	URL      string        // the link, its token in the fragment
	Code     string        // the 6-digit sign-in code (magic_link)
	Lifetime time.Duration // how long the link or code works
	Email    string        // the recipient's address
	OldEmail string        // email change: the address being replaced
	NewEmail string        // email change: the address being confirmed
	Name     string        // the user's display name, used in bodies only
}

// view is the value templates execute on.
type view struct {
	Data
	Product string
	Expires string
}

//go:embed templates/*.txt templates/*.html
var embedded embed.FS

// Renderer renders messages from the embedded templates, or from files of
// the same name in an override folder.
type Renderer struct {
	product string
	text    map[Template]*texttemplate.Template
	html    map[Template]*htmltemplate.Template
}

// NewRenderer parses every template and executes it once on sample data, so
// that a broken override is an error at start rather than at the first
// mail. overrideDir may be empty; product must be non-empty.
func NewRenderer(product, overrideDir string) (*Renderer, error) {
	if strings.TrimSpace(product) == "" {
		return nil, errors.New("product name must not be empty")
	}
	if hasControl(product) {
		return nil, errors.New("product name must not contain control characters")
	}
	r := &Renderer{product: product, text: map[Template]*texttemplate.Template{}, html: map[Template]*htmltemplate.Template{}}
	sub, err := fs.Sub(embedded, "templates")
	if err != nil {
		return nil, fmt.Errorf("mail templates: %w", err)
	}
	var override fs.FS
	if overrideDir != "" {
		if err := checkOverrideDir(overrideDir); err != nil {
			return nil, err
		}
		override = os.DirFS(overrideDir)
	}
	// read returns the override file when there is one, else the embedded
	// file, and where it came from for error messages.
	read := func(name string) (src []byte, origin string, ok bool, err error) {
		if override != nil {
			b, err := fs.ReadFile(override, name)
			if err == nil {
				return b, filepath.Join(overrideDir, name), true, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return nil, "", false, fmt.Errorf("mail template %s: %w", filepath.Join(overrideDir, name), err)
			}
		}
		b, err := fs.ReadFile(sub, name)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "", false, nil
		}
		if err != nil {
			return nil, "", false, fmt.Errorf("embedded mail template %s: %w", name, err)
		}
		return b, "embedded " + name, true, nil
	}
	for _, t := range Templates() {
		src, origin, ok, err := read(string(t) + ".txt")
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("mail template %s.txt is missing", t)
		}
		tt, err := texttemplate.New(string(t)).Option("missingkey=error").Parse(string(src))
		if err != nil {
			return nil, fmt.Errorf("mail template %s: %w", origin, err)
		}
		if tt.Lookup("subject") == nil {
			return nil, fmt.Errorf(`mail template %s: no {{define "subject"}}...{{end}}`, origin)
		}
		r.text[t] = tt
		src, origin, ok, err = read(string(t) + ".html")
		if err != nil {
			return nil, err
		}
		if ok {
			ht, err := htmltemplate.New(string(t)).Option("missingkey=error").Parse(string(src))
			if err != nil {
				return nil, fmt.Errorf("mail template %s: %w", origin, err)
			}
			r.html[t] = ht
		}
		// Execution errors (an unknown field, a bad call) only show when
		// a template runs; run each now so they stop the start instead.
		sample := Data{URL: "https://auth.example.com/account/x#token=sample", Code: "123456", Lifetime: time.Hour,
			Email: "user@example.com", OldEmail: "old@example.com", NewEmail: "new@example.com", Name: "Sample"}
		if _, err := r.Render(t, "user@example.com", sample); err != nil {
			return nil, fmt.Errorf("mail template %s: %w", t, err)
		}
	}
	return r, nil
}

// checkOverrideDir refuses a folder that is missing or holds template files
// that match no template: a misspelt override would otherwise be ignored
// without a word.
func checkOverrideDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("mail templates folder: %w", err)
	}
	known := map[string]bool{}
	for _, t := range Templates() {
		known[string(t)+".txt"], known[string(t)+".html"] = true, true
	}
	for _, e := range entries {
		n := e.Name()
		if (strings.HasSuffix(n, ".txt") || strings.HasSuffix(n, ".html")) && !known[n] {
			names := make([]string, 0, len(known))
			for k := range known {
				names = append(names, k)
			}
			sort.Strings(names)
			return fmt.Errorf("mail templates folder %s: unknown template %s (known: %s)", dir, n, strings.Join(names, ", "))
		}
	}
	return nil
}

// Product is the configured product name.
func (r *Renderer) Product() string { return r.product }

// Render renders template t for recipient to. The subject is folded onto
// one line, so nothing in the data can start another header.
func (r *Renderer) Render(t Template, to string, d Data) (Message, error) {
	tt, ok := r.text[t]
	if !ok {
		return Message{}, fmt.Errorf("unknown mail template %q", t)
	}
	v := view{Data: d, Product: r.product, Expires: Words(d.Lifetime)}
	var subject, text bytes.Buffer
	if err := tt.ExecuteTemplate(&subject, "subject", v); err != nil {
		return Message{}, fmt.Errorf("render %s subject: %w", t, err)
	}
	if err := tt.Execute(&text, v); err != nil {
		return Message{}, fmt.Errorf("render %s text: %w", t, err)
	}
	m := Message{
		To:      to,
		Subject: strings.Join(strings.FieldsFunc(subject.String(), isSpaceOrControl), " "),
		Text:    strings.TrimLeft(text.String(), "\r\n"),
	}
	if ht, ok := r.html[t]; ok {
		var html bytes.Buffer
		if err := ht.Execute(&html, v); err != nil {
			return Message{}, fmt.Errorf("render %s html: %w", t, err)
		}
		// An empty override NAME.html is how an operator drops the HTML
		// part, e.g. after rewriting only the text.
		if strings.TrimSpace(html.String()) != "" {
			m.HTML = html.String()
		}
	}
	return m, nil
}

func isSpaceOrControl(r rune) bool {
	return r == ' ' || hasControl(string(r))
}

// Words says a lifetime the way a mail would: "24 hours", "1 hour",
// "15 minutes", "1 hour 30 minutes".
func Words(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	unit := func(n int64, one string) string {
		if n == 1 {
			return "1 " + one
		}
		return fmt.Sprintf("%d %ss", n, one)
	}
	var parts []string
	if days := int64(d / (24 * time.Hour)); days > 0 && d%(24*time.Hour) == 0 && days != 1 {
		return unit(days, "day")
	}
	if h := int64(d / time.Hour); h > 0 {
		parts = append(parts, unit(h, "hour"))
		d -= time.Duration(h) * time.Hour
	}
	if m := int64(d / time.Minute); m > 0 {
		parts = append(parts, unit(m, "minute"))
		d -= time.Duration(m) * time.Minute
	}
	if s := int64(d / time.Second); s > 0 && len(parts) == 0 {
		parts = append(parts, unit(s, "second"))
	}
	return strings.Join(parts, " ")
}
