package httpapi

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}
	cases := []struct {
		name, remote, xff string
		trusted           []netip.Prefix
		want              string
	}{
		{"no proxies: XFF ignored", "203.0.113.9:1234", "198.51.100.1", nil, "203.0.113.9"},
		{"untrusted peer: XFF ignored", "203.0.113.9:1234", "198.51.100.1", trusted, "203.0.113.9"},
		{"trusted peer: client from XFF", "10.1.2.3:1234", "198.51.100.1", trusted, "198.51.100.1"},
		{"chain: nearest untrusted hop wins", "127.0.0.1:1", "6.6.6.6, 198.51.100.1, 10.0.0.7", trusted, "198.51.100.1"},
		{"malformed hop stops the walk", "127.0.0.1:1", "198.51.100.1, garbage", trusted, "127.0.0.1"},
		{"trusted peer without XFF", "127.0.0.1:1", "", trusted, "127.0.0.1"},
		{"ipv6 peer", "[2001:db8::1]:443", "", nil, "2001:db8::1"},
		{"hop with a port", "127.0.0.1:1", "198.51.100.1:5678", trusted, "198.51.100.1"},
		{"ipv6 hop with a port", "127.0.0.1:1", "[2001:db8::1]:443", trusted, "2001:db8::1"},
		{"ipv6 hop in brackets", "127.0.0.1:1", "[2001:db8::1]", trusted, "2001:db8::1"},
		{"chain with ports", "127.0.0.1:1", "6.6.6.6:1, 198.51.100.1:2, 10.0.0.7:3", trusted, "198.51.100.1"},
		{"bracketed ipv4 is malformed", "127.0.0.1:1", "[198.51.100.1]", trusted, "127.0.0.1"},
		{"port without address is malformed", "127.0.0.1:1", ":80", trusted, "127.0.0.1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/auth/login", nil)
			r.RemoteAddr = c.remote
			if c.xff != "" {
				r.Header.Set("X-Forwarded-For", c.xff)
			}
			if got := clientIP(r, c.trusted); got != c.want {
				t.Fatalf("clientIP = %q, want %q", got, c.want)
			}
		})
	}
}

func TestBearerToken(t *testing.T) {
	cases := []struct {
		header  []string
		tok     string
		present bool
	}{
		{nil, "", false},
		{[]string{"Bearer abc.def.ghi"}, "abc.def.ghi", true},
		{[]string{"bearer abc"}, "abc", true},
		{[]string{"Basic abc"}, "", true},
		{[]string{"Bearer"}, "", true},
		{[]string{"Bearer "}, "", true},
		{[]string{"Bearer a b"}, "", true},
		{[]string{"Bearer a", "Bearer b"}, "", true},
	}
	for _, c := range cases {
		r := httptest.NewRequest(http.MethodGet, "/auth/me", nil)
		for _, h := range c.header {
			r.Header.Add("Authorization", h)
		}
		tok, present := bearerToken(r)
		if tok != c.tok || present != c.present {
			t.Errorf("bearerToken(%q) = %q, %v; want %q, %v", c.header, tok, present, c.tok, c.present)
		}
	}
}

func TestCheckCSRF(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	good := csrfToken(key, "sid1")
	other := csrfToken(key, "sid2")
	cases := []struct {
		name           string
		cookie, header string
		refresh        string
		want           bool
	}{
		{"matching pair bound to the session", good, good, "sid1.secret", true},
		{"missing header", good, "", "sid1.secret", false},
		{"missing cookie", "", good, "sid1.secret", false},
		{"header differs from cookie", good, other, "sid1.secret", false},
		{"planted pair of another session", other, other, "sid1.secret", false},
		{"attacker-chosen pair", "x", "x", "sid1.secret", false},
		{"refresh token without session id", good, good, "nodot", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/auth/refresh", nil)
			if c.cookie != "" {
				r.AddCookie(&http.Cookie{Name: csrfCookie, Value: c.cookie})
			}
			if c.header != "" {
				r.Header.Set(csrfHeader, c.header)
			}
			if got := checkCSRF(r, key, c.refresh); got != c.want {
				t.Fatalf("checkCSRF = %v, want %v", got, c.want)
			}
		})
	}
}

func TestReadBody(t *testing.T) {
	type body struct {
		Email string `json:"email"`
	}
	cases := []struct {
		name, ctype, body string
		optional          bool
		wantCode          string // "" = accepted
	}{
		{"ok", "application/json", `{"email":"a@b.co"}`, false, ""},
		{"charset ok", "application/json; charset=utf-8", `{"email":"a@b.co"}`, false, ""},
		{"wrong type", "text/plain", `{"email":"a@b.co"}`, false, "unsupported_media_type"},
		{"no type", "", `{"email":"a@b.co"}`, false, "unsupported_media_type"},
		{"latin1 charset", "application/json; charset=latin1", `{"email":"a@b.co"}`, false, "unsupported_media_type"},
		{"empty required", "application/json", ``, false, "bad_request"},
		{"empty optional", "", ``, true, ""},
		{"duplicate key", "application/json", `{"email":"a","email":"b"}`, false, "bad_request"},
		{"case variant", "application/json", `{"Email":"a"}`, false, "bad_request"},
		{"unknown key", "application/json", `{"email":"a","admin":true}`, false, "bad_request"},
		{"wrong type value", "application/json", `{"email":5}`, false, "validation_failed"},
		{"too large", "application/json", `{"email":"` + strings.Repeat("a", maxBody) + `"}`, false, "payload_too_large"},
		{"invalid utf-8", "application/json", "{\"email\":\"\xff\"}", false, "bad_request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/auth/login", strings.NewReader(c.body))
			if c.ctype != "" {
				r.Header.Set("Content-Type", c.ctype)
			}
			var v body
			_, err := readBody(r, &v, c.optional)
			w := httptest.NewRecorder()
			if err == nil {
				if c.wantCode != "" {
					t.Fatalf("accepted, want %s", c.wantCode)
				}
				return
			}
			writeError(w, r, nil, err)
			if !strings.Contains(w.Body.String(), `"code":"`+c.wantCode+`"`) || c.wantCode == "" {
				t.Fatalf("got %d %s, want code %q", w.Code, w.Body.String(), c.wantCode)
			}
		})
	}
}
