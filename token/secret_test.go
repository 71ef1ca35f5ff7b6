package token

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse"
)

func TestSecretCodec(t *testing.T) {
	c, err := NewSecretCodec(bytes.Repeat([]byte("k"), 32))
	if err != nil {
		t.Fatal(err)
	}
	tok, id, mac := c.New(gatehouse.SecretResetPassword)
	gotID, gotMAC, ok := c.Parse(gatehouse.SecretResetPassword, tok)
	if !ok || gotID != id || !bytes.Equal(gotMAC, mac) {
		t.Fatalf("Parse(own token) = %q, %x, %v; want %q, %x", gotID, gotMAC, ok, id, mac)
	}
	if strings.Contains(string(mac), tok) || bytes.Contains(mac, []byte(id)) {
		t.Fatal("the MAC contains the token")
	}
	// Another kind gives another MAC: a reset token is no verification token.
	if _, other, _ := c.Parse(gatehouse.SecretVerifyEmail, tok); bytes.Equal(other, mac) {
		t.Fatal("the MAC does not depend on the kind")
	}
	// Another key gives another MAC.
	c2, _ := NewSecretCodec(bytes.Repeat([]byte("j"), 32))
	if _, other, _ := c2.Parse(gatehouse.SecretResetPassword, tok); bytes.Equal(other, mac) {
		t.Fatal("the MAC does not depend on the key")
	}
	for _, bad := range []string{"", ".", id, id + ".", tok[:len(tok)-1], tok + "A", "x" + tok[1:len(tok)-1] + "!",
		strings.Replace(tok, ".", "..", 1), strings.Repeat("A", 300)} {
		if _, _, ok := c.Parse(gatehouse.SecretResetPassword, bad); ok {
			t.Errorf("Parse(%q) accepted a malformed token", bad)
		}
	}
}

func TestSecretCodes(t *testing.T) {
	c, _ := NewSecretCodec(bytes.Repeat([]byte("k"), 32))
	seen := map[string]bool{}
	for range 200 {
		code, mac := c.NewCode(gatehouse.SecretMagicCode, "user-1")
		if !ValidCode(code) {
			t.Fatalf("NewCode = %q, not 6 digits", code)
		}
		if !bytes.Equal(c.CodeMAC(gatehouse.SecretMagicCode, "user-1", code), mac) {
			t.Fatal("CodeMAC disagrees with NewCode")
		}
		if bytes.Equal(c.CodeMAC(gatehouse.SecretMagicCode, "user-2", code), mac) {
			t.Fatal("a code's MAC does not depend on its subject")
		}
		seen[code] = true
	}
	if len(seen) < 190 {
		t.Fatalf("200 codes gave only %d distinct values", len(seen))
	}
	for _, bad := range []string{"", "12345", "1234567", "12345a", "١٢٣٤٥٦"} {
		if ValidCode(bad) {
			t.Errorf("ValidCode(%q) = true", bad)
		}
	}
}
