package e2e

// Issue 10, item 13: the host and scheme a trusted reverse proxy forwards.

import (
	"net/http"
	"strings"
	"testing"
)

// TestHardeningOpsForwardedOrigin: behind a reverse proxy listed in
// --trusted-proxies, the Origin of a same-origin request is compared with
// the host and scheme the proxy forwards; from any other peer those headers
// are not believed. A refusal is logged at debug level without tokens.
func TestHardeningOpsForwardedOrigin(t *testing.T) {
	t.Parallel()
	const origin = "https://auth.example.com"
	xf := []reqOpt{hdr("Origin", origin), hdr("X-Forwarded-Host", "auth.example.com"), hdr("X-Forwarded-Proto", "https")}
	signup := func(s *server, opts ...reqOpt) *resp {
		d := s.newDevice(false)
		return d.do(t, "POST", "/auth/signup", d.authBody(newEmail(), newPassword(), nil), opts...)
	}
	trusted := startServer(t, "--trusted-proxies", "127.0.0.1/32", "--log-level", "debug")
	r := signup(trusted, xf...)
	expect(t, r, http.StatusCreated, "")

	// Cookie-mode refresh and logout through the proxy too.
	d := trusted.newUser(t, false)
	if r := d.do(t, "POST", "/auth/refresh", nil, append([]reqOpt{d.csrf()}, xf...)...); !expect(t, r, http.StatusOK, "") {
		t.Error("cookie-mode refresh through a trusted proxy refused")
	}
	csrf := d.cookie(csrfCookie)
	if r := d.do(t, "POST", "/auth/logout", nil, append([]reqOpt{d.csrf()}, xf...)...); !expect(t, r, http.StatusNoContent, "") {
		t.Error("cookie-mode logout through a trusted proxy refused")
	}

	// RFC 7239 Forwarded, and a port the proxy forwards.
	expect(t, signup(trusted, hdr("Origin", origin), hdr("Forwarded", `for=192.0.2.1;host=auth.example.com;proto=https`)), http.StatusCreated, "")
	expect(t, signup(trusted, hdr("Origin", "https://auth.example.com:8443"), hdr("X-Forwarded-Host", "auth.example.com:8443"), hdr("X-Forwarded-Proto", "https")), http.StatusCreated, "")

	// Forwarded values that do not match the Origin are refused.
	for name, opts := range map[string][]reqOpt{
		"other host":   {hdr("Origin", "https://evil.example.net"), hdr("X-Forwarded-Host", "auth.example.com"), hdr("X-Forwarded-Proto", "https")},
		"other scheme": {hdr("Origin", origin), hdr("X-Forwarded-Host", "auth.example.com"), hdr("X-Forwarded-Proto", "http")},
		"other port":   {hdr("Origin", "https://auth.example.com:8443"), hdr("X-Forwarded-Host", "auth.example.com"), hdr("X-Forwarded-Proto", "https")},
	} {
		if r := signup(trusted, opts...); !expect(t, r, http.StatusForbidden, "csrf_failed") {
			t.Errorf("  ^ %s", name)
		}
	}
	logs := trusted.stderr.String()
	if !strings.Contains(logs, "csrf refused") || !strings.Contains(logs, "evil.example.net") {
		t.Errorf("a CSRF refusal is not logged at debug level with its reason:\n%s", logs)
	}
	if csrf != "" && strings.Contains(logs, csrf) {
		t.Error("the debug log contains a CSRF token")
	}

	// The same headers from a peer that is not a trusted proxy are not believed.
	for _, extra := range [][]string{nil, {"--trusted-proxies", "10.0.0.0/8"}} {
		untrusted := startServer(t, extra...)
		expect(t, signup(untrusted, xf...), http.StatusForbidden, "csrf_failed")
		expect(t, signup(untrusted, hdr("Origin", origin), hdr("Forwarded", `host=auth.example.com;proto=https`)), http.StatusForbidden, "csrf_failed")
	}
}
