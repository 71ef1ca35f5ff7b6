package token

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
)

// Fixed key material, so that the checked-in seed corpus holds tokens that
// verify: the fuzzer then starts from inputs that reach every check.
const (
	fuzzKIDEdDSA = "fuzz-eddsa"
	fuzzKIDES256 = "fuzz-es256"
	fuzzKIDHS256 = "fuzz-hs256"
)

// fixtureKeys is a key set holding one fixed key of each algorithm, EdDSA
// signing, all created at t0.
func fixtureKeys(tb testing.TB) (*Keys, *memStore) {
	tb.Helper()
	store := &memStore{}
	k, err := NewKeys(store, testConfig(AlgEdDSA))
	if err != nil {
		tb.Fatal(err)
	}
	for _, fk := range []struct {
		kid, alg string
		raw      byte
	}{{fuzzKIDEdDSA, AlgEdDSA, 0x11}, {fuzzKIDES256, AlgES256, 0x22}, {fuzzKIDHS256, AlgHS256, 0x33}} {
		raw := bytes.Repeat([]byte{fk.raw}, 32)
		store.keys = append(store.keys, gatehouse.SigningKey{ID: fk.kid, Algorithm: fk.alg, Sealed: k.seal(fk.kid, fk.alg, raw), CreatedAt: t0})
	}
	if err := k.Load(context.Background(), t0); err != nil {
		tb.Fatal(err)
	}
	if len(store.keys) != 3 {
		tb.Fatal("fixture Load created a key")
	}
	return k, store
}

// fixtureTokens are valid tokens of each fixture key (at fuzzNow).
func fixtureTokens(tb testing.TB, k *Keys, store *memStore) []string {
	tb.Helper()
	var out []string
	for _, kid := range []string{fuzzKIDEdDSA, fuzzKIDES256, fuzzKIDHS256} {
		alg, priv := privateKey(tb, k, store, kid)
		out = append(out, forge(tb, alg, priv, map[string]any{"kid": kid, "typ": "at+jwt"}, goodClaimsMap()))
	}
	return out
}

var fuzzNow = t0.Add(time.Minute)

func FuzzVerify(f *testing.F) {
	k, store := fixtureKeys(f)
	for _, tok := range fixtureTokens(f, k, store) {
		f.Add(tok)
		seg := strings.Split(tok, ".")
		f.Add(seg[0] + "." + seg[1] + ".")
		f.Add(seg[0] + ".." + seg[2])
		f.Add(tok + "." + seg[2])
	}
	f.Add("")
	f.Add("..")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := k.Verify(context.Background(), raw, fuzzNow)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("error does not wrap ErrInvalidToken: %v", err)
			}
			if !reflect.DeepEqual(c, Claims{}) {
				t.Fatalf("rejected token returned claims %+v", c)
			}
			return
		}
		// Only tokens our keys signed can get here; they must be sane.
		if c.Issuer != testIssuer || c.Audience != testAudience || c.Subject == "" || c.SessionID == "" ||
			c.ID == "" || !c.Role.Valid() || !fuzzNow.Before(c.ExpiresAt.Add(testLeeway)) {
			t.Fatalf("accepted claims %+v", c)
		}
		if len(raw) > maxAccessLen {
			t.Fatal("oversized token accepted")
		}
	})
}

func FuzzRefreshDecode(f *testing.F) {
	c := newTestCodec(f, 1)
	f.Add(c.Encode("sess", 1))
	f.Add(c.Encode("AbC_-09", 1<<63))
	f.Add(c.Encode(strings.Repeat("x", 64), 2))
	f.Add("")
	f.Add(".")
	f.Add("sess.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, raw string) {
		sid, gen, err := c.Decode(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidRefresh) || sid != "" || gen != 0 {
				t.Fatalf("Decode = %q, %d, %v", sid, gen, err)
			}
			return
		}
		// A token has exactly one spelling: the one Encode gives.
		if gen == 0 || !validSID(sid) || c.Encode(sid, gen) != raw {
			t.Fatalf("Decode(%q) accepted %q, %d", raw, sid, gen)
		}
	})
}

// TestFuzzCorpusValidTokens keeps the checked-in seeds meaningful: the
// valid-* tokens must still verify against the fixture keys, or the fuzzer
// would start from inputs that stop at the first check.
func TestFuzzCorpusValidTokens(t *testing.T) {
	k, _ := fixtureKeys(t)
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzVerify", "valid-*"))
	if err != nil || len(files) != 3 {
		t.Fatalf("valid seed files: %v, %v", files, err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[1], "string(") {
			t.Fatalf("%s: unexpected format", name)
		}
		tok, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "string("), ")"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.Verify(context.Background(), tok, fuzzNow); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
