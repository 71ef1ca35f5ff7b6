package idp

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrRedirect means a redirect_to is neither on the public origin nor
// under an entry of the allowlist.
var ErrRedirect = errors.New("idp: redirect_to not allowed")

// maxRedirectLen bounds redirect_to.
const maxRedirectLen = 2048

// RedirectPolicy decides where a sign-in may send the browser back to:
// the public URL's origin (a path there, or an absolute URL on it), or a
// URL under an entry of --redirect-allowlist (same scheme, same host and
// port, a path at or below the entry's). Anything ambiguous is refused
// rather than normalised: backslashes, control characters and spaces,
// userinfo, scheme-relative (//host) and opaque (https:host) forms, dot
// segments, and fragments (the answer goes in the fragment).
type RedirectPolicy struct {
	public *url.URL
	allow  []*url.URL
}

// NewRedirectPolicy parses the public URL and the allowlist entries.
func NewRedirectPolicy(publicURL string, allowlist []string) (RedirectPolicy, error) {
	pub, err := url.Parse(publicURL)
	if err != nil || pub.Host == "" {
		return RedirectPolicy{}, fmt.Errorf("public URL %q is not an absolute URL", publicURL)
	}
	p := RedirectPolicy{public: pub}
	for _, e := range allowlist {
		u, err := parseStrict(e)
		if err != nil {
			return RedirectPolicy{}, fmt.Errorf("%q is not an absolute URL such as https://app.example.com/ or com.example.app:/callback", e)
		}
		p.allow = append(p.allow, u)
	}
	return p, nil
}

// Default is where a flow goes back to without redirect_to: the account
// page.
func (p RedirectPolicy) Default() string {
	return strings.TrimRight(p.public.String(), "/") + "/account"
}

// Check returns the URL to send the browser back to for redirect_to, or
// ErrRedirect.
func (p RedirectPolicy) Check(raw string) (string, error) {
	if raw == "" {
		return p.Default(), nil
	}
	if strings.HasPrefix(raw, "/") && !strings.HasPrefix(raw, "//") {
		// A path on the public origin, under its base path.
		if !clean(raw) {
			return "", ErrRedirect
		}
		rel, err := url.Parse(raw)
		if err != nil || rel.Fragment != "" || rel.Scheme != "" || rel.Host != "" {
			return "", ErrRedirect
		}
		u := *p.public
		u.Path = strings.TrimRight(p.public.Path, "/") + rel.Path
		u.RawPath = ""
		u.RawQuery = rel.RawQuery
		return u.String(), nil
	}
	u, err := parseStrict(raw)
	if err != nil {
		return "", ErrRedirect
	}
	if sameOrigin(u, p.public) {
		return u.String(), nil
	}
	for _, a := range p.allow {
		if under(u, a) {
			return u.String(), nil
		}
	}
	return "", ErrRedirect
}

// parseStrict parses an absolute URL and refuses the ambiguous forms.
func parseStrict(raw string) (*url.URL, error) {
	if raw == "" || !clean(raw) {
		return nil, ErrRedirect
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Opaque != "" || u.User != nil || u.Fragment != "" || strings.Contains(raw, "#") {
		return nil, ErrRedirect
	}
	if (u.Scheme == "http" || u.Scheme == "https") && (u.Host == "" || strings.HasPrefix(strings.TrimPrefix(raw, u.Scheme+":"), "///")) {
		return nil, ErrRedirect
	}
	if u.Host == "" && !strings.HasPrefix(u.Path, "/") {
		return nil, ErrRedirect
	}
	if strings.ContainsAny(u.Host, "@\\%") {
		return nil, ErrRedirect
	}
	return u, nil
}

// clean refuses characters browsers treat loosely in URLs (a backslash is
// a slash to them), control characters, spaces, dot segments in the path,
// and encoded forms of those.
func clean(raw string) bool {
	if len(raw) > maxRedirectLen {
		return false
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= 0x20 || c == 0x7f || c == '\\' || c >= 0x80 {
			return false
		}
	}
	path := raw
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i] // the query is the destination's business
	}
	lower := strings.ToLower(path)
	for _, bad := range []string{"%5c", "%2e", "%2f", "%00", "%09", "%0a", "%0d"} {
		if strings.Contains(lower, bad) {
			return false
		}
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

func sameOrigin(u, pub *url.URL) bool {
	return strings.EqualFold(u.Scheme, pub.Scheme) && hostPort(u) == hostPort(pub)
}

// hostPort is the lower-case host with the scheme's default port made
// explicit.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "https":
			port = "443"
		case "http":
			port = "80"
		}
	}
	return strings.ToLower(u.Hostname()) + ":" + port
}

// under reports whether u is the allowlist entry a or below its path.
func under(u, a *url.URL) bool {
	if !strings.EqualFold(u.Scheme, a.Scheme) || hostPort(u) != hostPort(a) {
		return false
	}
	base := strings.TrimRight(a.Path, "/")
	return base == "" || u.Path == base || strings.HasPrefix(u.Path, base+"/")
}
