package auth

import "testing"

func TestLimitKeys(t *testing.T) {
	if a, b := ipLimitKey("2001:db8:1:2:aaaa::1"), ipLimitKey("2001:db8:1:2:bbbb::9"); a != b {
		t.Errorf("addresses of one /64 get different keys: %q, %q", a, b)
	}
	if a, b := ipLimitKey("2001:db8:1:2::1"), ipLimitKey("2001:db8:1:3::1"); a == b {
		t.Errorf("different /64s share a key: %q", a)
	}
	if got := ipLimitKey("192.0.2.7"); got != "192.0.2.7" {
		t.Errorf("IPv4 key %q", got)
	}
	if accountLimitKey("Ada@Example.com") != accountLimitKey("ada@example.com") {
		t.Error("account key is case-sensitive")
	}
	long := make([]byte, 60000)
	for i := range long {
		long[i] = 'a'
	}
	if k := accountLimitKey(string(long)); len(k) > 32 {
		t.Errorf("account key of a 60 kB email is %d bytes", len(k))
	}
}
