package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestMailOff: with --no-mail the mail endpoints answer 404 not_configured
// and sign-up queues nothing, while the rest of the server works.
func TestMailOff(t *testing.T) {
	t.Parallel()
	mailDir := filepath.Join(t.TempDir(), "mail")
	s := startServer(t, "--no-mail", "--mail-dir", mailDir)
	d := s.newUser(t, true)
	d.assertAlive(t, "a session made with mail off")
	for _, c := range []struct {
		path string
		body any
		auth bool
	}{
		{"/auth/password/forgot", map[string]any{"email": d.email}, false},
		{"/auth/magic-link", map[string]any{"email": d.email}, false},
		{"/auth/email/verify/send", map[string]any{}, true},
		{"/auth/email/change", map[string]any{"new_email": "other-" + d.email, "current_password": d.password}, true},
	} {
		var opts []reqOpt
		if c.auth {
			opts = append(opts, bearer(d.Access()))
		}
		expect(t, s.do(t, "POST", c.path, c.body, opts...), 404, "not_configured")
	}
	time.Sleep(300 * time.Millisecond) // a queued mail would be written by now
	if entries, err := os.ReadDir(mailDir); err == nil && len(entries) > 0 {
		t.Fatalf("with --no-mail, %d files appeared in the mail folder", len(entries))
	}
}
