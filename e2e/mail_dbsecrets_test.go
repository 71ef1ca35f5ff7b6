package e2e

// "No secrets in the database" (dbsecrets_test.go) extended to the mail
// flows: the one-time secrets and the outbox.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// mailCodeForms are byte strings that give a 6-digit code away: the code
// with the text around it in the mail, and its unkeyed hashes (a code has
// only a million values, so any unkeyed hash of it is as good as the code).
func mailCodeForms(m *mailMsg, code string) map[string][]byte {
	forms := map[string][]byte{}
	h := sha256.Sum256([]byte(code))
	forms["sha256-raw(code)"] = h[:]
	forms["sha256-hex(code)"] = []byte(hex.EncodeToString(h[:]))
	if i := strings.Index(m.Text, code); i >= 0 {
		lo, hi := max(0, i-24), min(len(m.Text), i+len(code)+24)
		if i-lo >= 8 {
			forms["code with the text before it"] = []byte(m.Text[lo : i+len(code)])
			forms["code with the text before it (CRLF)"] = []byte(strings.ReplaceAll(m.Text[lo:i+len(code)], "\n", "\r\n"))
		}
		if hi-i-len(code) >= 8 {
			forms["code with the text after it"] = []byte(m.Text[i:hi])
			forms["code with the text after it (CRLF)"] = []byte(strings.ReplaceAll(m.Text[i:hi], "\n", "\r\n"))
		}
	}
	return forms
}

// mailOutboxRows counts the rows of every outbox table of the SQLite file,
// and fails when there is none.
func mailOutboxRows(t *testing.T, dbPath string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%outbox%'`)
	if err != nil {
		t.Fatalf("listing tables: %v", err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	if len(tables) == 0 {
		t.Fatalf("no outbox table (name containing \"outbox\") in %s", dbPath)
	}
	total := 0
	for _, tb := range tables {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM "`+tb+`"`).Scan(&n); err != nil {
			t.Fatalf("counting %s: %v", tb, err)
		}
		total += n
	}
	return total
}

// TestMailDatabaseHoldsNoSecrets: after every mail flow (tokens used,
// voided and still outstanding), neither the SQLite file nor its WAL holds
// any mailed token, its secret part or their hashes, a link, or a code with
// its context; the outbox keeps no message once it is sent; the logs hold
// none of it either.
func TestMailDatabaseHoldsNoSecrets(t *testing.T) {
	t.Parallel()
	c := mailStartSMTP(t)
	s := startServer(t, mailFlags(c)...)

	var links []mailLink
	var msgs []*mailMsg
	type codeOf struct {
		m    *mailMsg
		code string
	}
	var codes []codeOf
	keep := func(l mailLink, m *mailMsg) {
		links = append(links, l)
		msgs = append(msgs, m)
	}

	// Verification: the signup link voided by a resent one, which is used.
	u := s.newUser(t, true)
	keep(c.AwaitLink(t, u.email, "verify-email", 1))
	l, m := mailTokenFor(t, s, c, u, "verify-email")
	keep(l, m)
	expect(t, mailUse(t, s, "verify-email", l.Token), http.StatusOK, "")
	// Reset: one voided, one used.
	keep(mailTokenFor(t, s, c, u, "reset-password"))
	l, m = mailTokenFor(t, s, c, u, "reset-password")
	keep(l, m)
	u.password = newPassword()
	r := s.do(t, "POST", "/auth/password/reset", map[string]any{"token": l.Token, "new_password": u.password})
	expect(t, r, http.StatusNoContent, "")
	u = s.login(t, u.email, u.password, true)
	// Magic links: by link, by code, and one left outstanding.
	l, m = mailTokenFor(t, s, c, u, "magic-link")
	keep(l, m)
	codes = append(codes, codeOf{m, mailCode(t, m)})
	_, r = mailVerifyMagic(t, s, true, map[string]any{"token": l.Token})
	expect(t, r, http.StatusOK, "")
	l, m = mailTokenFor(t, s, c, u, "magic-link")
	keep(l, m)
	code := mailCode(t, m)
	codes = append(codes, codeOf{m, code})
	_, r = mailVerifyMagic(t, s, true, map[string]any{"email": u.email, "code": code})
	expect(t, r, http.StatusOK, "")
	l, m = mailTokenFor(t, s, c, u, "magic-link")
	keep(l, m)
	codes = append(codes, codeOf{m, mailCode(t, m)})
	// Email change: one voided, one confirmed.
	keep(mailTokenFor(t, s, c, u, "change-email"))
	l, m = mailTokenFor(t, s, c, u, "change-email")
	keep(l, m)
	r = mailUse(t, s, "change-email", l.Token)
	expect(t, r, http.StatusOK, "")
	// A second user's verification link, never used, and a reset link
	// left outstanding.
	w := s.newUser(t, true)
	keep(c.AwaitLink(t, w.email, "verify-email", 1))
	keep(mailTokenFor(t, s, c, w, "reset-password"))

	// Every mail was delivered; the outbox empties.
	if !eventually(15*time.Second, func() bool { return mailOutboxRows(t, s.dbPath) == 0 }) {
		t.Errorf("the outbox still holds %d message(s) after every mail was delivered", mailOutboxRows(t, s.dbPath))
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
			for _, l := range links {
				for label, form := range secretForms(t, l.Token) {
					if bytes.Contains(data, form) {
						t.Errorf("%s: %s contains %s of a %s token %s", phase, e.Name(), label, l.Action, abbrev(l.Token))
					}
				}
				if bytes.Contains(data, []byte(l.URL)) {
					t.Errorf("%s: %s contains a %s link", phase, e.Name(), l.Action)
				}
			}
			for _, cd := range codes {
				for label, form := range mailCodeForms(cd.m, cd.code) {
					if bytes.Contains(data, form) {
						t.Errorf("%s: %s contains the %s", phase, e.Name(), label)
					}
				}
			}
			for _, m := range msgs {
				for _, body := range []string{m.Text, m.HTML} {
					if body = strings.TrimSpace(body); len(body) >= 32 && bytes.Contains(data, []byte(body)) {
						t.Errorf("%s: %s contains the body of message %s", phase, e.Name(), m)
					}
				}
			}
		}
		if scanned == 0 {
			t.Errorf("%s: no database files found in %s", phase, s.dir)
		}
	}
	scan("while running")

	logs := s.stderr.String()
	for _, l := range links {
		_, secret := mailSplit(t, l.Token)
		if strings.Contains(logs, secret) {
			t.Errorf("server logs contain a %s token", l.Action)
		}
	}
	for _, cd := range codes {
		for label, form := range mailCodeForms(cd.m, cd.code) {
			if strings.Contains(logs, string(form)) {
				t.Errorf("server logs contain the %s", label)
			}
		}
	}

	if code := s.Stop(); code != 0 {
		t.Errorf("exit code %d on SIGTERM", code)
	}
	scan("after shutdown")
	if n := mailOutboxRows(t, s.dbPath); n != 0 {
		t.Errorf("after shutdown the outbox holds %d message(s)", n)
	}
}
