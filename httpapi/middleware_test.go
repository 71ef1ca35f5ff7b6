package httpapi

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

// TestSameOriginBehindProxy: the Origin of a state-changing request is
// compared with what a trusted proxy says the client addressed
// (X-Forwarded-Host/-Proto or Forwarded), and with the Host header from any
// other peer.
func TestSameOriginBehindProxy(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	s := &Server{cfg: Config{TrustedProxies: trusted}, logger: slog.New(slog.DiscardHandler)}
	cases := []struct {
		name, peer, host, origin string
		hdr                      map[string]string
		want                     bool
	}{
		{"direct, same host", "192.0.2.1:1", "127.0.0.1:8080", "http://127.0.0.1:8080", nil, true},
		{"direct, default port in Host", "192.0.2.1:1", "auth.example.com:443", "https://auth.example.com", nil, true},
		{"direct, other host", "192.0.2.1:1", "127.0.0.1:8080", "https://auth.example.com", nil, false},
		{"trusted proxy, X-Forwarded", "10.0.0.2:1", "127.0.0.1:8080", "https://auth.example.com",
			map[string]string{"X-Forwarded-Host": "auth.example.com", "X-Forwarded-Proto": "https"}, true},
		{"trusted proxy, X-Forwarded with default port", "10.0.0.2:1", "127.0.0.1:8080", "https://auth.example.com",
			map[string]string{"X-Forwarded-Host": "Auth.Example.com:443", "X-Forwarded-Proto": "HTTPS"}, true},
		{"trusted proxy, appended list: the nearest proxy's value", "10.0.0.2:1", "127.0.0.1:8080", "https://auth.example.com",
			map[string]string{"X-Forwarded-Host": "evil.example.net, auth.example.com", "X-Forwarded-Proto": "http, https"}, true},
		{"trusted proxy, Forwarded", "10.0.0.2:1", "127.0.0.1:8080", "https://auth.example.com",
			map[string]string{"Forwarded": `for=192.0.2.1;host="auth.example.com";proto=https`}, true},
		{"trusted proxy, Forwarded list", "10.0.0.2:1", "127.0.0.1:8080", "https://auth.example.com",
			map[string]string{"Forwarded": `host=evil.example.net, for=192.0.2.1;host=auth.example.com;proto=https`}, true},
		{"trusted proxy, scheme differs", "10.0.0.2:1", "127.0.0.1:8080", "https://auth.example.com",
			map[string]string{"X-Forwarded-Host": "auth.example.com", "X-Forwarded-Proto": "http"}, false},
		{"trusted proxy, host differs", "10.0.0.2:1", "127.0.0.1:8080", "https://evil.example.net",
			map[string]string{"X-Forwarded-Host": "auth.example.com", "X-Forwarded-Proto": "https"}, false},
		{"trusted proxy, port differs", "10.0.0.2:1", "127.0.0.1:8080", "https://auth.example.com:8443",
			map[string]string{"X-Forwarded-Host": "auth.example.com", "X-Forwarded-Proto": "https"}, false},
		{"untrusted peer, X-Forwarded ignored", "192.0.2.1:1", "127.0.0.1:8080", "https://auth.example.com",
			map[string]string{"X-Forwarded-Host": "auth.example.com", "X-Forwarded-Proto": "https"}, false},
		{"untrusted peer, Forwarded ignored", "192.0.2.1:1", "127.0.0.1:8080", "https://auth.example.com",
			map[string]string{"Forwarded": "host=auth.example.com;proto=https"}, false},
		{"null origin", "10.0.0.2:1", "127.0.0.1:8080", "null", nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/auth/signup", nil)
			r.RemoteAddr, r.Host = c.peer, c.host
			for k, v := range c.hdr {
				r.Header.Set(k, v)
			}
			ok, reason := s.sameOriginOrAllowed(r, c.origin, false)
			if ok != c.want {
				t.Fatalf("sameOriginOrAllowed = %v (%s), want %v", ok, reason, c.want)
			}
			if !ok && reason == "" {
				t.Fatal("refused without a reason")
			}
		})
	}
}
