package token

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

func newTestCodec(tb testing.TB, key byte) *RefreshCodec {
	tb.Helper()
	c, err := NewRefreshCodec(bytes.Repeat([]byte{key}, 32))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestRefreshRoundTrip(t *testing.T) {
	c := newTestCodec(t, 1)
	for _, tc := range []struct {
		sid string
		gen uint64
	}{
		{"a", 1}, {"sess_ABC-123", 2}, {strings.Repeat("Z", 64), math.MaxUint64}, {"0", 1 << 40},
	} {
		tok := c.Encode(tc.sid, tc.gen)
		if len(tok) != len(tc.sid)+1+54 {
			t.Fatalf("token %q has length %d", tok, len(tok))
		}
		sid, gen, err := c.Decode(tok)
		if err != nil || sid != tc.sid || gen != tc.gen {
			t.Fatalf("Decode(Encode(%q, %d)) = %q, %d, %v", tc.sid, tc.gen, sid, gen, err)
		}
		if c.Encode(tc.sid, tc.gen) != tok {
			t.Fatal("Encode is not deterministic")
		}
	}
	// Neighbouring generations and sessions give unrelated secrets.
	a, b := c.Encode("s", 1), c.Encode("s", 2)
	if a[10:] == b[10:] || c.Encode("s", 1) == c.Encode("t", 1) {
		t.Fatal("tokens collide")
	}
}

func TestRefreshEverySingleByteMutationFails(t *testing.T) {
	c := newTestCodec(t, 1)
	tok := c.Encode("sess_0123456789abcdef", 7)
	for i := 0; i < len(tok); i++ {
		for v := 0; v < 256; v++ {
			if byte(v) == tok[i] {
				continue
			}
			mut := tok[:i] + string([]byte{byte(v)}) + tok[i+1:]
			if _, _, err := c.Decode(mut); !errors.Is(err, ErrInvalidRefresh) {
				t.Fatalf("byte %d set to %#x accepted (%v)", i, v, err)
			}
		}
	}
	// Dropping or adding a byte anywhere fails too.
	for i := 0; i <= len(tok); i++ {
		if i < len(tok) {
			if _, _, err := c.Decode(tok[:i] + tok[i+1:]); err == nil {
				t.Fatalf("token without byte %d accepted", i)
			}
		}
		if _, _, err := c.Decode(tok[:i] + "A" + tok[i:]); err == nil {
			t.Fatalf("token with a byte inserted at %d accepted", i)
		}
	}
}

func TestRefreshWrongKeyAndGenZero(t *testing.T) {
	a, b := newTestCodec(t, 1), newTestCodec(t, 2)
	if _, _, err := b.Decode(a.Encode("sess", 3)); !errors.Is(err, ErrInvalidRefresh) {
		t.Fatalf("token of another key accepted: %v", err)
	}
	// A token of generation 0, correctly MACed, is still refused.
	var raw [genLen + macLen]byte
	a.mac(raw[genLen:genLen], "sess", raw[:genLen])
	tok := "sess." + a.b64.EncodeToString(raw[:])
	if _, _, err := a.Decode(tok); !errors.Is(err, ErrInvalidRefresh) {
		t.Fatalf("generation 0 accepted: %v", err)
	}
	// The MAC binds the session id: a secret moved to another session fails.
	good := a.Encode("sessA", 3)
	if _, _, err := a.Decode("sessB" + good[5:]); err == nil {
		t.Fatal("secret of another session accepted")
	}
}

func TestRefreshRejectsGarbage(t *testing.T) {
	c := newTestCodec(t, 1)
	good := c.Encode("sess", 1)
	secret := good[5:]
	for name, tok := range map[string]string{
		"empty":         "",
		"dot":           ".",
		"no dot":        "sess" + secret,
		"no sid":        "." + secret,
		"no secret":     "sess.",
		"two dots":      "sess." + secret[:20] + "." + secret[20:],
		"sid too long":  strings.Repeat("a", 65) + "." + secret,
		"sid bad chars": "se/s." + secret,
		"sid unicode":   "séss." + secret,
		"padded":        good + "==",
		"std alphabet":  "sess." + strings.NewReplacer("-", "+", "_", "/").Replace(secret),
		"huge":          strings.Repeat("a", 1<<20),
		"just over 200": strings.Repeat("a", 146) + "." + secret,
		"nul":           "sess\x00." + secret,
		"short secret":  "sess." + secret[:53],
		"long secret":   good + "A",
	} {
		if _, _, err := c.Decode(tok); !errors.Is(err, ErrInvalidRefresh) {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}
}

func TestRefreshCodecConstruction(t *testing.T) {
	if _, err := NewRefreshCodec(make([]byte, 31)); err == nil {
		t.Fatal("31-byte key accepted")
	}
	key := bytes.Repeat([]byte{9}, 32)
	c, err := NewRefreshCodec(key)
	if err != nil {
		t.Fatal(err)
	}
	tok := c.Encode("s", 1)
	key[0] ^= 1 // the codec must have copied the key
	if _, _, err := c.Decode(tok); err != nil {
		t.Fatal("codec shares the caller's key slice")
	}
	for _, bad := range []func(){
		func() { c.Encode("", 1) },
		func() { c.Encode("a.b", 1) },
		func() { c.Encode("s", 0) },
		func() { c.Encode(strings.Repeat("a", 65), 1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("Encode of invalid input did not panic")
				}
			}()
			bad()
		}()
	}
}
