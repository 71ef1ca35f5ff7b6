package e2e

// Faults around mail: the SMTP server down or hanging while requests queue
// mail, two instances sharing PostgreSQL draining one outbox, and a restart
// with mail still queued.

import (
	"net/http"
	"testing"
	"time"
)

// mailFast is how long a request that queues mail may take even when the
// SMTP server is down or hangs: sending is off the request path. A send
// on the request path would wait for the hanging server up to the send
// timeout (30 s); 3 s leaves room for a sign-up's argon2id under -race on
// a loaded CI machine (one took 1.26 s) while still telling the two apart.
const mailFast = 3 * time.Second

// mailTimed runs f and fails when it takes mailFast or longer.
func mailTimed(t *testing.T, what string, f func()) {
	t.Helper()
	atkTimed(t, what, mailFast, f)
}

// mailSignupTimed signs a new account up and asserts the request is fast.
func mailSignupTimed(t *testing.T, s *server, what string) *device {
	t.Helper()
	var d *device
	mailTimed(t, what, func() { d = s.newUser(t, true) })
	return d
}

// TestMailFaultSMTPDown: with the SMTP server down (its port refuses),
// signup and forgot answer at normal speed; once the server is up again on
// the same port, the queued mail arrives, each message once, and its links
// work.
func TestMailFaultSMTPDown(t *testing.T) {
	t.Parallel()
	hrEachBackend(t, func(t *testing.T, backend string) {
		c := mailNewCapture(t) // down
		s := mailStart(t, backend, c).s
		u1 := mailSignupTimed(t, s, "signup with the SMTP server down")
		u2 := mailSignupTimed(t, s, "another signup with the SMTP server down")
		mailTimed(t, "forgot with the SMTP server down", func() { mailForgot(t, s, u2.email) })
		mailTimed(t, "magic-link with the SMTP server down", func() { mailMagic(t, s, u1.email) })
		// Give the worker time to fail at least once before the server
		// comes back (a refused connection leaves nothing to poll for).
		time.Sleep(1500 * time.Millisecond)
		u1.assertAlive(t, "sessions while mail cannot be sent")
		c.Start()

		v, _ := c.AwaitLink(t, u1.email, "verify-email", 1)
		c.AwaitLink(t, u1.email, "magic-link", 1)
		c.AwaitLink(t, u2.email, "verify-email", 1)
		rl, _ := c.AwaitLink(t, u2.email, "reset-password", 1)
		expect(t, mailUse(t, s, "verify-email", v.Token), http.StatusOK, "")
		expect(t, mailUse(t, s, "reset-password", rl.Token), http.StatusNoContent, "")
		c.Quiet(t, u1.email, 2, 2*time.Second)
		c.Quiet(t, u2.email, 2, 0)
	})
}

// TestMailFaultSMTPHanging: an SMTP server that accepts connections and
// never answers does not slow requests down; once it is replaced by a
// working one on the same port, the mail arrives, once.
func TestMailFaultSMTPHanging(t *testing.T) {
	t.Parallel()
	hrEachBackend(t, func(t *testing.T, backend string) {
		c := mailNewCapture(t)
		c.Hang()
		s := mailStart(t, backend, c).s
		u1 := mailSignupTimed(t, s, "signup with a hanging SMTP server")
		mailTimed(t, "forgot with a hanging SMTP server", func() { mailForgot(t, s, u1.email) })
		// The worker is now stuck on the hanging server.
		if !eventually(15*time.Second, func() bool { return c.HungConns() > 0 }) {
			t.Errorf("the sender never connected to the SMTP server")
		}
		u2 := mailSignupTimed(t, s, "signup while the sender hangs")
		mailTimed(t, "forgot while the sender hangs", func() { mailForgot(t, s, u2.email) })
		mailTimed(t, "magic-link while the sender hangs", func() { mailMagic(t, s, u2.email) })
		mailTimed(t, "login while the sender hangs", func() { s.login(t, u1.email, u1.password, false) })
		mailTimed(t, "healthz while the sender hangs", func() {
			expect(t, s.do(t, "GET", "/healthz", nil), http.StatusOK, "")
		})

		c.Start() // closes the hanging connections
		c.AwaitLink(t, u1.email, "verify-email", 1)
		c.AwaitLink(t, u1.email, "reset-password", 1)
		c.AwaitLink(t, u2.email, "verify-email", 1)
		c.AwaitLink(t, u2.email, "reset-password", 1)
		ml, _ := c.AwaitLink(t, u2.email, "magic-link", 1)
		_, r := mailVerifyMagic(t, s, true, map[string]any{"token": ml.Token})
		expect(t, r, http.StatusOK, "")
		c.Quiet(t, u1.email, 2, 2*time.Second)
		c.Quiet(t, u2.email, 3, 0)
	})
}

// TestMailFaultNoDoubleSendTwoInstances: two instances sharing PostgreSQL
// drain one outbox, with the SMTP server up and after an outage: every
// queued message (every token) is delivered exactly once.
func TestMailFaultNoDoubleSendTwoInstances(t *testing.T) {
	t.Parallel()
	cl, _ := prodNewCluster(t)
	c := mailStartSMTP(t)
	s1 := cl.start(t, mailFlags(c)...)
	s2 := cl.start(t, mailFlags(c)...)
	both := []*server{s1, s2}

	const users = 10
	var devs []*device
	for i := 0; i < users; i++ {
		devs = append(devs, both[i%2].newUser(t, true))
	}
	for i, d := range devs {
		mailForgot(t, both[(i+1)%2], d.email)
	}
	// An outage: both workers retry the same messages when it ends. It
	// starts once everything sent so far has arrived (verification and
	// reset for every user) and the last answers have had time to reach
	// the senders: an outage that cuts a connection after the server took
	// the message but before its "250" arrived leaves the sender no way
	// to know, and SMTP then delivers at least once, which is not what
	// this test is about.
	for _, d := range devs {
		c.Await(t, d.email, 2)
	}
	time.Sleep(500 * time.Millisecond)
	c.Down()
	for i, d := range devs {
		mailMagic(t, both[i%2], d.email)
	}
	time.Sleep(1500 * time.Millisecond) // both workers fail at least once
	c.Start()

	for _, d := range devs {
		c.AwaitLink(t, d.email, "verify-email", 1)
		c.AwaitLink(t, d.email, "reset-password", 1)
		c.AwaitLink(t, d.email, "magic-link", 1)
	}
	// Duplicates would show up during the grace period.
	time.Sleep(3 * time.Second)
	perToken := map[string]int{}
	for _, m := range c.All() {
		seen := map[string]bool{}
		for _, l := range mailLinks(m, "") {
			if !seen[l.Token] {
				seen[l.Token] = true
				perToken[l.Token]++
			}
		}
	}
	for tok, n := range perToken {
		if n != 1 {
			t.Errorf("token %s was delivered %d times, want once", abbrev(tok), n)
		}
	}
	if len(perToken) != 3*users {
		t.Errorf("%d distinct tokens delivered, want %d", len(perToken), 3*users)
	}
	for _, d := range devs {
		if n := len(c.To(d.email)); n != 3 {
			t.Errorf("%s received %d messages, want 3", d.email, n)
		}
	}
}

// TestMailFaultRestartKeepsQueue: mail queued while the SMTP server is down
// survives a restart of Gatehouse: SMTP down, signup and forgot, stop the
// binary, start SMTP, start the binary again: the mail arrives, once.
func TestMailFaultRestartKeepsQueue(t *testing.T) {
	t.Parallel()
	hrEachBackend(t, func(t *testing.T, backend string) {
		c := mailNewCapture(t)
		s := mailStart(t, backend, c).s
		u := mailSignupTimed(t, s, "signup with the SMTP server down")
		mailTimed(t, "forgot with the SMTP server down", func() { mailForgot(t, s, u.email) })
		if code := s.Stop(); code != 0 {
			t.Errorf("exit code %d on SIGTERM with mail queued", code)
		}
		c.Start()
		s.Start()
		v, _ := c.AwaitLink(t, u.email, "verify-email", 1)
		rl, _ := c.AwaitLink(t, u.email, "reset-password", 1)
		expect(t, mailUse(t, s, "verify-email", v.Token), http.StatusOK, "")
		expect(t, mailUse(t, s, "reset-password", rl.Token), http.StatusNoContent, "")
		c.Quiet(t, u.email, 2, 2*time.Second)
	})
}
