package e2e

// Helpers of the adversarial suite (attack_*_test.go). Everything here is
// prefixed atk so that it cannot clash with the functional suite's names.

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // read the server's signing keys, as an attacker with the master key would

	"github.com/gatehouse/gatehouse/masterkey"
)

// atkMasterKey is the master secret of servers started by atkStartServer,
// so tests can play an insider who holds the signing key and check that
// only the one claim or header under test makes a token fail.
var atkMasterKey = bytes.Repeat([]byte{0x5a}, 32)

// atkStartServer starts a server with a master secret the test knows.
func atkStartServer(t *testing.T, extra ...string) *server {
	t.Helper()
	args := append([]string{"--master-key", base64.StdEncoding.EncodeToString(atkMasterKey)}, extra...)
	return startServer(t, args...)
}

var atkB64 = base64.RawURLEncoding

// atkJWT assembles a compact JWS from raw header and payload JSON.
func atkJWT(header, payload []byte, sign func(input []byte) []byte) string {
	in := atkB64.EncodeToString(header) + "." + atkB64.EncodeToString(payload)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(in))
	}
	return in + "." + atkB64.EncodeToString(sig)
}

// atkJSON marshals v or fails the test.
func atkJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func atkHS256(key []byte) func([]byte) []byte {
	return func(in []byte) []byte {
		m := hmac.New(sha256.New, key)
		m.Write(in)
		return m.Sum(nil)
	}
}

func atkEd25519(priv ed25519.PrivateKey) func([]byte) []byte {
	return func(in []byte) []byte { return ed25519.Sign(priv, in) }
}

func atkES256(priv *ecdsa.PrivateKey) func([]byte) []byte {
	return func(in []byte) []byte {
		h := sha256.Sum256(in)
		r, s, err := ecdsa.Sign(rand.Reader, priv, h[:])
		if err != nil {
			panic(err)
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	}
}

// atkDecodeSeg decodes one base64url JWT segment into a map.
func atkDecodeSeg(t *testing.T, seg string) map[string]any {
	t.Helper()
	b, err := atkB64.DecodeString(seg)
	if err != nil {
		t.Fatalf("segment %q: %v", abbrev(seg), err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("segment %q: %v", abbrev(seg), err)
	}
	return m
}

// atkServerKey is the server's current signing key, unsealed from its
// database with the master secret (the server must have been started by
// atkStartServer). It returns the kid, the algorithm and a signer.
func atkServerKey(t *testing.T, s *server, alg string) (kid string, sign func([]byte) []byte) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+s.dbPath+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var sealed []byte
	err = db.QueryRowContext(context.Background(),
		`SELECT id, sealed FROM signing_keys WHERE algorithm = ? ORDER BY created_at DESC, rowid DESC LIMIT 1`, alg).Scan(&kid, &sealed)
	if err != nil {
		t.Fatalf("reading the %s signing key: %v", alg, err)
	}
	block, err := aes.NewCipher(masterkey.Derive(atkMasterKey, masterkey.PurposeSeal))
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	ns := aead.NonceSize()
	if len(sealed) < 1+ns {
		t.Fatalf("sealed key too short")
	}
	raw, err := aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], []byte(kid+"\x00"+alg))
	if err != nil {
		t.Fatalf("unsealing the signing key: %v", err)
	}
	switch alg {
	case "EdDSA":
		return kid, atkEd25519(ed25519.NewKeyFromSeed(raw))
	case "ES256":
		priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), raw)
		if err != nil {
			t.Fatal(err)
		}
		return kid, atkES256(priv)
	case "HS256":
		return kid, atkHS256(raw)
	}
	t.Fatalf("unknown alg %s", alg)
	return "", nil
}

// atkExpectInvalidToken presents tok as a Bearer token to a protected
// endpoint and asserts 401 invalid_token with RFC 6750's error attribute.
func atkExpectInvalidToken(t *testing.T, s *server, label, tok string) {
	t.Helper()
	atkExpectInvalidAuthz(t, s, label, "Bearer "+tok)
}

func atkExpectInvalidAuthz(t *testing.T, s *server, label, authz string) {
	t.Helper()
	for _, ep := range []struct{ method, path string }{{"GET", "/auth/me"}, {"GET", "/auth/sessions"}, {"GET", "/admin/users"}} {
		r := s.do(t, ep.method, ep.path, nil, hdr("Authorization", authz))
		if !expect(t, r, http.StatusUnauthorized, "invalid_token") {
			t.Errorf("  ^ case %q", label)
			continue
		}
		if got := r.Header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
			t.Errorf("case %q: %s %s: WWW-Authenticate = %q, want Bearer error=\"invalid_token\"", label, ep.method, ep.path, got)
		}
	}
}

// atkRaw sends a request without the harness's checks or t.Fatal, for use
// from many goroutines and for answers net/http itself produces.
func atkRaw(s *server, method, path string, body []byte, header map[string]string) (status int, h http.Header, b []byte, err error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := s.hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer res.Body.Close()
	b, err = io.ReadAll(res.Body)
	return res.StatusCode, res.Header, b, err
}

// atkMedian of durations.
func atkMedian(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// atkRSS is the resident set size of a process in bytes (Linux).
func atkRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// atkPid is the server's process id.
func atkPid(s *server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid
}
