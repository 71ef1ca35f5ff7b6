package e2e

// Issue 10, item 11: X-Forwarded-For entries with a port.

import (
	"net/http"
	"testing"
)

// TestHardeningOpsXFFWithPort: X-Forwarded-For entries may carry a port
// (1.2.3.4:5678, [2001:db8::1]:443). From a trusted proxy they name the
// client, for the session's ip and for the per-IP rate limit.
func TestHardeningOpsXFFWithPort(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--trusted-proxies", "127.0.0.1/32", "--rate-limit-login", "2/1m")
	for xff, want := range map[string]string{
		"198.51.100.7:5678":            "198.51.100.7",
		"[2001:db8::7]:443":            "2001:db8::7",
		"[2001:db8::8]":                "2001:db8::8",
		"203.0.113.9, 198.51.100.8:80": "198.51.100.8",
	} {
		d := s.newDevice(true)
		r := d.do(t, "POST", "/auth/signup", d.authBody(newEmail(), newPassword(), nil), hdr("X-Forwarded-For", xff))
		if !expect(t, r, http.StatusCreated, "") {
			continue
		}
		if ip := atkSessionIP(t, s, d.Access()); ip != want {
			t.Errorf("X-Forwarded-For %q from a trusted proxy: session ip %q, want %q", xff, ip, want)
		}
	}
	// The per-IP login limit (2 a minute) counts each client on its own:
	// exhausting it for one client does not limit another.
	u := s.newUser(t, true)
	wrong := func(xff string) *resp {
		return s.do(t, "POST", "/auth/login", map[string]any{"email": newEmail(), "password": "wrong-" + randHex(4)}, hdr("X-Forwarded-For", xff))
	}
	for range 2 {
		expect(t, wrong("192.0.2.10:40001"), http.StatusUnauthorized, "invalid_credentials")
	}
	expect(t, wrong("192.0.2.10:40002"), http.StatusTooManyRequests, "rate_limited")
	r := s.do(t, "POST", "/auth/login", map[string]any{"email": u.email, "password": u.password}, hdr("X-Forwarded-For", "192.0.2.11:40003"))
	if !expect(t, r, http.StatusOK, "") {
		t.Error("a second client behind the proxy was limited by the first one's attempts (all clients counted as the proxy)")
	}
}
