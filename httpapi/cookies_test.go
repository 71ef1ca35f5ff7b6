package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRefreshFromCookies: of several refresh cookies (one planted by a
// sibling subdomain), the one the CSRF header is bound to is taken,
// wherever it stands; several CSRF cookies are fine when the header equals
// one of them.
func TestRefreshFromCookies(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	s := &Server{cfg: Config{CSRFKey: key}, logger: slog.New(slog.DiscardHandler)}
	mine, theirs := "sid1.secret", "sid2.secret"
	good, other := csrfToken(key, "sid1"), csrfToken(key, "sid2")
	rc := func(v string) string { return refreshCookie + "=" + v }
	cc := func(v string) string { return csrfCookie + "=" + v }
	cases := []struct {
		name, cookies, header string
		want                  string // "" with wantCSRF false: no refresh cookie
		wantCSRF              bool
	}{
		{"one pair", rc(mine) + "; " + cc(good), good, mine, false},
		{"planted refresh cookie first", rc(theirs) + "; " + rc(mine) + "; " + cc(good), good, mine, false},
		{"planted garbage first", rc("garbage") + "; " + rc("") + "; " + rc(mine) + "; " + cc(good), good, mine, false},
		{"two csrf cookies, header names the second", rc(theirs) + "; " + cc(other) + "; " + rc(mine) + "; " + cc(good), good, mine, false},
		{"header of the planted session", rc(theirs) + "; " + rc(mine) + "; " + cc(good), other, "", true},
		{"only the planted session with its token", rc(theirs) + "; " + cc(good), good, "", true},
		{"no header", rc(mine) + "; " + cc(good), "", "", true},
		{"no csrf cookie", rc(mine), good, "", true},
		{"no refresh cookie", cc(good), good, "", false},
		{"empty refresh cookie", rc("") + "; " + cc(good), good, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/auth/refresh", nil)
			r.Header.Set("Cookie", c.cookies)
			if c.header != "" {
				r.Header.Set(csrfHeader, c.header)
			}
			raw, present, err := s.refreshFromCookies(r)
			if c.wantCSRF {
				if !errors.Is(err, errCSRF) {
					t.Fatalf("= %q, %v, %v; want errCSRF", raw, present, err)
				}
				return
			}
			if err != nil || raw != c.want || present != (c.want != "") {
				t.Fatalf("= %q, %v, %v; want %q", raw, present, err, c.want)
			}
		})
	}
}
