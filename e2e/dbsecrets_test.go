package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// secretForms are the byte strings that must not appear in any file the
// server keeps: the token, its secret, their SHA-256 in the usual encodings,
// and the raw bytes behind the secret.
func secretForms(t *testing.T, tok string) map[string][]byte {
	t.Helper()
	forms := map[string][]byte{}
	_, secret := splitRefresh(t, tok)
	add := func(label string, b []byte) {
		forms[label] = b
	}
	for label, v := range map[string][]byte{"token": []byte(tok), "secret": []byte(secret)} {
		add(label, v)
		h := sha256.Sum256(v)
		add("sha256-raw("+label+")", h[:])
		add("sha256-hex("+label+")", []byte(hex.EncodeToString(h[:])))
		add("sha256-HEX("+label+")", []byte(strings.ToUpper(hex.EncodeToString(h[:]))))
		add("sha256-b64("+label+")", []byte(base64.StdEncoding.EncodeToString(h[:])))
		add("sha256-b64raw("+label+")", []byte(base64.RawStdEncoding.EncodeToString(h[:])))
		add("sha256-b64url("+label+")", []byte(base64.URLEncoding.EncodeToString(h[:])))
		add("sha256-b64rawurl("+label+")", []byte(base64.RawURLEncoding.EncodeToString(h[:])))
		add("b64("+label+")", []byte(base64.StdEncoding.EncodeToString(v)))
	}
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.StdEncoding} {
		raw, err := enc.DecodeString(secret)
		if err != nil || len(raw) < 16 {
			continue
		}
		add("decoded secret", raw)
		h := sha256.Sum256(raw)
		add("sha256-raw(decoded secret)", h[:])
		add("sha256-hex(decoded secret)", []byte(hex.EncodeToString(h[:])))
		add("sha256-b64rawurl(decoded secret)", []byte(base64.RawURLEncoding.EncodeToString(h[:])))
		add("hex(decoded secret)", []byte(hex.EncodeToString(raw)))
		if len(raw) >= 32 {
			add("last 32 bytes of decoded secret (MAC)", raw[len(raw)-32:])
			add("hex(last 32 bytes of decoded secret)", []byte(hex.EncodeToString(raw[len(raw)-32:])))
		}
		break
	}
	return forms
}

func TestDatabaseHoldsNoSecrets(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	var tokens []string
	var passwords []string
	collect := func(d *device) {
		d.mu.Lock()
		defer d.mu.Unlock()
		tokens = append(tokens, d.history...)
	}

	for _, body := range []bool{false, true} {
		d := s.newUser(t, body)
		passwords = append(passwords, d.password)
		for i := 0; i < 3; i++ {
			d.refreshOK(t)
		}
		// A grace replay too.
		prev := d.history[len(d.history)-2]
		r := d.presentRefresh(t, prev)
		expect(t, r, http.StatusOK, "")
		l := d.another(t, body)
		l.refreshOK(t)
		collect(d)
		collect(l)
	}
	if len(tokens) < 10 {
		t.Fatalf("collected only %d refresh tokens", len(tokens))
	}

	scan := func(phase string) {
		t.Helper()
		entries, err := os.ReadDir(s.dir)
		if err != nil {
			t.Fatal(err)
		}
		scanned := 0
		for _, e := range entries {
			if e.IsDir() || e.Name() == "gh.db.key" {
				continue
			}
			data, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			scanned++
			for _, tok := range tokens {
				for label, form := range secretForms(t, tok) {
					if bytes.Contains(data, form) {
						t.Errorf("%s: %s contains %s of refresh token %s", phase, e.Name(), label, abbrev(tok))
					}
				}
			}
			for _, pw := range passwords {
				if bytes.Contains(data, []byte(pw)) {
					t.Errorf("%s: %s contains a plaintext password", phase, e.Name())
				}
			}
		}
		if scanned == 0 {
			t.Errorf("%s: no database files found in %s", phase, s.dir)
		}
	}
	scan("while running")

	// The logs are server-side storage too.
	logs := s.stderr.String()
	for _, tok := range tokens {
		_, secret := splitRefresh(t, tok)
		if strings.Contains(logs, secret) {
			t.Errorf("server logs contain refresh token %s", abbrev(tok))
		}
	}
	for _, pw := range passwords {
		if strings.Contains(logs, pw) {
			t.Errorf("server logs contain a plaintext password")
		}
	}

	if code := s.Stop(); code != 0 {
		t.Errorf("exit code %d on SIGTERM", code)
	}
	scan("after shutdown")

	// Password hashes are argon2id PHC strings at or above OWASP's minimum.
	var all []byte
	entries, _ := os.ReadDir(s.dir)
	for _, e := range entries {
		if e.Name() != "gh.db.key" {
			b, _ := os.ReadFile(filepath.Join(s.dir, e.Name()))
			all = append(all, b...)
		}
	}
	phc := regexp.MustCompile(`\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$`)
	matches := phc.FindAllSubmatch(all, -1)
	if len(matches) == 0 {
		t.Errorf("no argon2id PHC hash ($argon2id$v=19$m=...,t=...,p=...$) found in the database")
	}
	for _, m := range matches {
		mem, _ := strconv.Atoi(string(m[1]))
		iter, _ := strconv.Atoi(string(m[2]))
		par, _ := strconv.Atoi(string(m[3]))
		if mem < 19456 || iter < 2 || par < 1 {
			t.Errorf("password hash parameters %s below OWASP's minimum m=19456,t=2,p=1", m[0])
		}
	}

	fi, err := os.Stat(filepath.Join(s.dir, "gh.db.key"))
	if err != nil {
		t.Fatalf("key file gh.db.key beside the database: %v", err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("gh.db.key mode = %o, want 0600", perm)
	}
	if fi.Size() == 0 {
		t.Errorf("gh.db.key is empty")
	}
	// The key file is reused after a restart: old tokens still refresh.
	key1, _ := os.ReadFile(filepath.Join(s.dir, "gh.db.key"))
	s.Start()
	key2, _ := os.ReadFile(filepath.Join(s.dir, "gh.db.key"))
	if !bytes.Equal(key1, key2) {
		t.Errorf("gh.db.key changed across a restart")
	}
}
