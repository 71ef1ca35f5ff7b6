package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// signupSide is one of the servers the signup-mail scenario compares.
type signupSide struct {
	name     string // row name
	label    string // short name for logs
	srv      *server
	mailOn   bool
	created  atomic.Int64 // sign-ups answered 201, warm-up included
	seq      atomic.Int64 // email counter, kept across slices so every address is new
	res      result       // measured slices combined
	sent     func() int64 // mail delivered so far (nil with --no-mail)
	maxDrain time.Duration
	drainErr string
	cpu0     time.Duration   // server CPU time before the first slice
	p50s     []time.Duration // per round, for the paired ratios
	p99s     []time.Duration
}

// cpuPerSignup is the server's CPU time (the mail worker's included) per
// sign-up since the first slice. Unlike latency it hardly depends on what
// else the shared machine runs, so it tells a real cost from noise.
func (s *signupSide) cpuPerSignup() time.Duration {
	cpu, err := procCPU(s.srv.pid())
	if err != nil || s.created.Load() == 0 {
		return 0
	}
	return (cpu - s.cpu0) / time.Duration(s.created.Load())
}

// signupMail measures POST /auth/signup with mail on (file outbox, and
// SMTP to a sink in the harness) against --no-mail, on fresh SQLite
// servers started side by side. The per-side duration is cut into slices
// run in an ABBA order (off, file, smtp, smtp, file, off, ...), so a
// linear drift of the shared machine's load lands equally on every side.
// After each mail-on slice the harness waits until that server has sent
// everything it queued: the send cost stays inside its own slice instead
// of leaking into the next side's measurement, and the wait is reported.
func signupMail(ctx context.Context, o *options, bin, dir string) []row {
	fail := func(msg string) []row { return []row{{scenario: "signup-mail", failed: msg}} }
	// Same rate-limit settings on every side, so the only difference is mail.
	common := []string{"--rate-limit-mail", "off", "--rate-limit-mail-ip", "off"}
	start := func(label string, extra ...string) (*server, error) {
		sub := filepath.Join(dir, label)
		if err := os.MkdirAll(sub, 0o700); err != nil {
			return nil, err
		}
		args := append([]string{"--database", "sqlite:" + filepath.Join(sub, "gh.db")}, common...)
		return startServer(ctx, bin, dir, label, append(args, extra...)...)
	}

	off := &signupSide{name: "signup (--no-mail, SQLite, reference)", label: "signup-nomail"}
	srv, err := start(off.label, "--no-mail")
	if err != nil {
		return fail(err.Error())
	}
	defer srv.stop()
	off.srv = srv

	mailDir := filepath.Join(dir, "signup-file", "outbox")
	file := &signupSide{name: "signup-mail (file outbox, SQLite)", label: "signup-file", mailOn: true,
		sent: func() int64 { return countEML(mailDir) }}
	if srv, err = start(file.label, "--mail-dir", mailDir); err != nil {
		return fail(err.Error())
	}
	defer srv.stop()
	file.srv = srv
	sides := []*signupSide{off, file}

	if o.signupSMTP {
		sink, err := startSMTPSink()
		if err != nil {
			return fail("smtp sink: " + err.Error())
		}
		defer sink.close()
		s := &signupSide{name: "signup-mail (SMTP to a loopback sink, SQLite)", label: "signup-smtp", mailOn: true,
			sent: sink.received.Load}
		if srv, err = start(s.label, "--smtp-url", "smtp://"+sink.addr, "--mail-from", "Gatehouse bench <noreply@example.com>"); err != nil {
			return fail(err.Error())
		}
		defer srv.stop()
		s.srv = srv
		sides = append(sides, s)
	}

	rounds := max(o.signupRounds, 1)
	slice := o.dur / time.Duration(rounds)
	client := newClient(o.workers * len(sides))
	defer client.CloseIdleConnections()
	for _, s := range sides {
		s.cpu0, _ = procCPU(s.srv.pid())
	}
	logf("signup-mail: %d sides x %d slices of %s (+%s warm-up each), %d workers", len(sides), rounds, slice, o.warmup, o.workers)
	for r := range rounds {
		order := sides
		if r%2 == 1 {
			order = make([]*signupSide, len(sides))
			for i, s := range sides {
				order[len(sides)-1-i] = s
			}
		}
		for _, s := range order {
			if ctx.Err() != nil {
				return fail(ctx.Err().Error())
			}
			res := runLoad(ctx, o.workers, o.warmup, slice, func(w int) op { return signupOp(client, s, w) })
			s.res.add(res)
			s.p50s = append(s.p50s, res.hist.quantile(0.50))
			s.p99s = append(s.p99s, res.hist.quantile(0.99))
			if s.mailOn {
				s.drain(ctx)
			}
			logf("  %-14s slice %d: %.1f/s p50 %s p99 %s, %d errors", s.label, r+1, res.rps(),
				fmtDur(res.hist.quantile(0.50)), fmtDur(res.hist.quantile(0.99)), res.errors)
		}
	}

	rows := make([]row, 0, len(sides))
	ref := &off.res
	rows = append(rows, row{scenario: off.name, res: ref, value: ref.rps(),
		note: fmt.Sprintf("%d sign-ups, no mail; %s measured in %d slices; server CPU %s per sign-up",
			off.created.Load(), ref.elapsed.Round(time.Millisecond), rounds, fmtDur(off.cpuPerSignup()))})
	refP50, refP99 := ref.hist.quantile(0.50), ref.hist.quantile(0.99)
	for _, s := range sides[1:] {
		p50, p99 := s.res.hist.quantile(0.50), s.res.hist.quantile(0.99)
		r50, r99 := ratio(p50, refP50), ratio(p99, refP99)
		sent := s.sent()
		// No measured request on either side is no evidence, not a pass.
		pass := r50 > 0 && r50 <= 1.10 && r99 > 0 && r99 <= 1.10 && s.drainErr == ""
		note := fmt.Sprintf("%d sign-ups, %d mails delivered; longest wait for the outbox to empty after a slice %s; sign-ups measured %.2f of --no-mail; server CPU %s per sign-up (mail worker included)",
			s.created.Load(), sent, s.maxDrain.Round(time.Millisecond), ratio(time.Duration(s.res.requests), time.Duration(ref.requests)), fmtDur(s.cpuPerSignup()))
		// Each round measures every side within seconds of the others, so
		// the median of the per-round ratios is less moved by a burst of
		// load on the shared machine than the pooled percentiles are.
		note += fmt.Sprintf("; median of the %d per-round ratios: p50 %.2f, p99 %.2f",
			rounds, medianRatio(s.p50s, off.p50s), medianRatio(s.p99s, off.p99s))
		if s.drainErr != "" {
			note += "; " + s.drainErr
		}
		rows = append(rows, row{scenario: s.name, res: &s.res, value: s.res.rps(),
			refText:   fmt.Sprintf("--no-mail p50 %s p99 %s", fmtDur(refP50), fmtDur(refP99)),
			ratioText: fmt.Sprintf("p50 %.2f, p99 %.2f (≤ 1.10)", r50, r99),
			note:      note, passOverride: &pass})
	}
	return rows
}

// signupOp signs up a new address per request (unique within the side's
// server, across slices); 201 is the expected answer.
func signupOp(c *http.Client, s *signupSide, worker int) op {
	url := s.srv.base + "/auth/signup"
	return func(ctx context.Context) bool {
		email := fmt.Sprintf("signup-%d-w%d@bench.example.com", s.seq.Add(1), worker)
		status, _, err := postJSON(ctx, c, url, credentials(email))
		if err == nil && status == http.StatusCreated {
			s.created.Add(1)
			return true
		}
		return false
	}
}

// drain waits until the side's server has delivered one mail per sign-up
// so far, and remembers the longest wait.
func (s *signupSide) drain(ctx context.Context) {
	t0 := time.Now()
	deadline := t0.Add(2 * time.Minute)
	for s.sent() < s.created.Load() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			if s.drainErr == "" {
				s.drainErr = fmt.Sprintf("outbox not empty 2 min after a slice: %d of %d sent", s.sent(), s.created.Load())
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.maxDrain = max(s.maxDrain, time.Since(t0))
}

// add merges another measurement (a slice) into r.
func (r *result) add(o *result) {
	r.requests += o.requests
	r.errors += o.errors
	r.elapsed += o.elapsed
	r.hist.merge(&o.hist)
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// medianRatio is the median over rounds of a[i]/b[i].
func medianRatio(a, b []time.Duration) float64 {
	var rs []float64
	for i := range min(len(a), len(b)) {
		if b[i] > 0 {
			rs = append(rs, ratio(a[i], b[i]))
		}
	}
	if len(rs) == 0 {
		return 0
	}
	slices.Sort(rs)
	if n := len(rs); n%2 == 0 {
		return (rs[n/2-1] + rs[n/2]) / 2
	}
	return rs[len(rs)/2]
}

// procCPU is the user plus system CPU time of a process (/proc/PID/stat,
// in clock ticks of 10 ms: USER_HZ is 100 on Linux).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields count from after it.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var utime, stime int64
	if _, err := fmt.Sscan(f[11], &utime); err != nil {
		return 0, err
	}
	if _, err := fmt.Sscan(f[12], &stime); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// countEML counts the finished .eml files of the file outbox (the sender
// writes a .tmp- file and renames it, so those are left out).
func countEML(dir string) int64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range ents {
		if name := e.Name(); strings.HasSuffix(name, ".eml") && !strings.HasPrefix(name, ".") {
			n++
		}
	}
	return n
}

// smtpSink is an SMTP server on loopback that accepts every message and
// counts it, standing in for a local relay; it offers no STARTTLS, which
// the server's sender accepts on loopback only.
type smtpSink struct {
	srv      *smtp.Server
	addr     string
	received atomic.Int64
}

func startSMTPSink() (*smtpSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	k := &smtpSink{addr: ln.Addr().String()}
	k.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &sinkSession{received: &k.received}, nil
	}))
	k.srv.Domain = "localhost"
	k.srv.ReadTimeout = 30 * time.Second
	k.srv.WriteTimeout = 30 * time.Second
	go k.srv.Serve(ln) //nolint:errcheck // returns when closed
	return k, nil
}

func (k *smtpSink) close() { _ = k.srv.Close() }

type sinkSession struct{ received *atomic.Int64 }

func (*sinkSession) Reset()                               {}
func (*sinkSession) Logout() error                        { return nil }
func (*sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *sinkSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.received.Add(1)
	return nil
}
