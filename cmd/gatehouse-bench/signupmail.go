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
	name    string // what the server is, for row names
	label   string // short name for logs
	srv     *server
	mailOn  bool
	created atomic.Int64 // sign-ups answered 201, warm-up included
	seq     atomic.Int64 // email counter, kept across slices so every address is new
	sent    func() int64 // mail delivered so far (nil with --no-mail)
	closed  signupPhase  // 16 workers in a closed loop: saturation
	open    signupPhase  // fixed arrival rate: equal offered load
}

// signupPhase is one side's measurement in one mode (closed or open loop).
type signupPhase struct {
	res        result // measured slices combined
	p50s, p99s []time.Duration
	maxDrain   time.Duration
	drainErr   string
	cpu0, cpu1 time.Duration // server CPU time when the phase began and ended
	n0, n1     int64         // sign-ups created when the phase began and ended
	// open loop only
	scheduled   uint64
	maxLag      time.Duration
	maxInFlight int64
}

// cpuPerSignup is the server's CPU time (the mail worker's included) per
// sign-up created during the phase, warm-ups and drains included. Unlike
// latency it hardly depends on what else the shared machine runs, so it
// tells a real cost from noise.
func (p *signupPhase) cpuPerSignup() time.Duration {
	if p.n1 <= p.n0 {
		return 0
	}
	return (p.cpu1 - p.cpu0) / time.Duration(p.n1-p.n0)
}

// signupMail measures POST /auth/signup with mail on (file outbox, and
// SMTP to a sink in the harness) against --no-mail, on fresh SQLite
// servers started side by side, in two modes:
//
//   - closed loop: o.workers workers each send the next sign-up as soon as
//     the last is answered. On a small machine that saturates the CPUs
//     with argon2id, so it measures each server's capacity and its CPU
//     per sign-up; its latency is workers / throughput and tells nothing
//     about whether sending sits on the request path.
//   - open loop: sign-ups arrive at a fixed rate, the same for every
//     server, set to o.signupLoad times the capacity the --no-mail server
//     showed in the closed loop of this run; latency is counted from each
//     request's scheduled arrival. That is the latency comparison at equal
//     offered load the target is about.
//
// With o.signupControl a second --no-mail server runs as one more side: its
// ratios to the first are the run's noise floor, what two identical
// servers differ by on this machine in this run.
//
// In each mode the per-side duration is cut into slices run in an ABBA
// order (off, control, file, smtp, smtp, file, control, off, ...), so a linear drift of the
// shared machine's load lands equally on every side; in the open loop the
// servers of one round get the same arrival pattern. After each mail-on
// slice the harness waits until that server has sent everything it
// queued: the send cost stays inside its own slice instead of leaking into
// the next side's measurement, and the wait is reported.
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

	off := &signupSide{name: "signup --no-mail, reference", label: "signup-nomail"}
	srv, err := start(off.label, "--no-mail")
	if err != nil {
		return fail(err.Error())
	}
	defer srv.stop()
	off.srv = srv

	sides := []*signupSide{off}
	if o.signupControl {
		// The same server twice: what the ratios show between these two is
		// the machine's noise, the floor under any difference mail makes.
		ctl := &signupSide{name: "signup --no-mail, control (a second server, same flags)", label: "signup-control"}
		if srv, err = start(ctl.label, "--no-mail"); err != nil {
			return fail(err.Error())
		}
		defer srv.stop()
		ctl.srv = srv
		sides = append(sides, ctl)
	}

	mailDir := filepath.Join(dir, "signup-file", "outbox")
	file := &signupSide{name: "signup-mail, file outbox", label: "signup-file", mailOn: true,
		sent: func() int64 { return countEML(mailDir) }}
	if srv, err = start(file.label, "--mail-dir", mailDir); err != nil {
		return fail(err.Error())
	}
	defer srv.stop()
	file.srv = srv
	sides = append(sides, file)

	if o.signupSMTP {
		sink, err := startSMTPSink()
		if err != nil {
			return fail("smtp sink: " + err.Error())
		}
		defer sink.close()
		s := &signupSide{name: "signup-mail, SMTP to a loopback sink", label: "signup-smtp", mailOn: true,
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
	closedSlice := slice
	if o.signupClosedD > 0 {
		closedSlice = o.signupClosedD / time.Duration(rounds)
	}
	client := newClient(o.workers * len(sides))
	defer client.CloseIdleConnections()

	// runPhase runs rounds of one slice per side in ABBA order.
	runPhase := func(phase func(*signupSide) *signupPhase, measure func(s *signupSide, round int) *result) error {
		for _, s := range sides {
			p := phase(s)
			p.cpu0, _ = procCPU(s.srv.pid())
			p.n0 = s.created.Load()
		}
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
					return ctx.Err()
				}
				p := phase(s)
				res := measure(s, r)
				p.res.add(res)
				p.p50s = append(p.p50s, res.hist.quantile(0.50))
				p.p99s = append(p.p99s, res.hist.quantile(0.99))
				if s.mailOn {
					p.drain(ctx, s)
				}
				logf("  %-14s slice %d: %.1f/s p50 %s p99 %s, %d errors", s.label, r+1, res.rps(),
					fmtDur(res.hist.quantile(0.50)), fmtDur(res.hist.quantile(0.99)), res.errors)
			}
		}
		for _, s := range sides {
			p := phase(s)
			p.cpu1, _ = procCPU(s.srv.pid())
			p.n1 = s.created.Load()
		}
		return nil
	}

	logf("signup-mail, closed loop: %d sides x %d slices of %s (+%s warm-up each), %d workers", len(sides), rounds, closedSlice, o.warmup, o.workers)
	if err := runPhase(func(s *signupSide) *signupPhase { return &s.closed }, func(s *signupSide, _ int) *result {
		return runLoad(ctx, o.workers, o.warmup, closedSlice, func(w int) op { return signupOp(client, s, fmt.Sprintf("w%d", w)) })
	}); err != nil {
		return fail(err.Error())
	}
	capacity := off.closed.res.rps()
	rate := o.signupLoad * capacity
	poisson := o.signupArrivals == "poisson"
	if rate > 0 {
		logf("signup-mail, open loop: %s arrivals at %.1f/s (%.2f x the --no-mail capacity of %.1f/s), %d sides x %d slices of %s (+%s warm-up each)",
			o.signupArrivals, rate, o.signupLoad, capacity, len(sides), rounds, slice, o.warmup)
		if err := runPhase(func(s *signupSide) *signupPhase { return &s.open }, func(s *signupSide, round int) *result {
			res := runOpenLoad(ctx, rate, poisson, uint64(round)+1, o.warmup, slice, signupOp(client, s, "o"))
			s.open.scheduled += res.scheduled
			s.open.maxLag = max(s.open.maxLag, res.maxLag)
			s.open.maxInFlight = max(s.open.maxInFlight, res.maxInFlight)
			return &res.result
		}); err != nil {
			return fail(err.Error())
		}
	}

	var rows []row
	// Closed loop: capacity and CPU per sign-up. Its latency is workers /
	// throughput at saturation, so no latency verdict is drawn from it.
	ref := &off.closed
	closedTag := fmt.Sprintf(" (closed loop, %d workers: saturation)", o.workers)
	rows = append(rows, row{scenario: off.name + closedTag, res: &ref.res, value: ref.res.rps(),
		note: fmt.Sprintf("%d sign-ups in the phase, no mail; %s measured in %d slices; server CPU %s per sign-up",
			ref.n1-ref.n0, ref.res.elapsed.Round(time.Millisecond), rounds, fmtDur(ref.cpuPerSignup()))})
	for _, s := range sides[1:] {
		p := &s.closed
		if !s.mailOn {
			rows = append(rows, row{scenario: s.name + closedTag, res: &p.res, value: p.res.rps(),
				refText: fmt.Sprintf("--no-mail %.1f/s, CPU %s/sign-up", ref.res.rps(), fmtDur(ref.cpuPerSignup())),
				ratioText: fmt.Sprintf("throughput %.2f, CPU/sign-up %.2f (noise floor)",
					ratio(time.Duration(p.res.requests), time.Duration(ref.res.requests)), ratio(p.cpuPerSignup(), ref.cpuPerSignup())),
				note: fmt.Sprintf("%d sign-ups in the phase, no mail; server CPU %s per sign-up", p.n1-p.n0, fmtDur(p.cpuPerSignup()))})
			continue
		}
		note := fmt.Sprintf("%d sign-ups in the phase; longest wait for the outbox to empty after a slice %s; server CPU %s per sign-up (mail worker included); p50 %.2f, p99 %.2f of --no-mail (median of the %d per-round ratios: p50 %.2f, p99 %.2f), which at saturation follow the throughput and are no test of the target",
			p.n1-p.n0, p.maxDrain.Round(time.Millisecond), fmtDur(p.cpuPerSignup()),
			ratio(p.res.hist.quantile(0.50), ref.res.hist.quantile(0.50)), ratio(p.res.hist.quantile(0.99), ref.res.hist.quantile(0.99)),
			rounds, medianRatio(p.p50s, ref.p50s), medianRatio(p.p99s, ref.p99s))
		if p.drainErr != "" {
			note += "; " + p.drainErr
		}
		rows = append(rows, row{scenario: s.name + closedTag, res: &p.res, value: p.res.rps(),
			refText: fmt.Sprintf("--no-mail %.1f/s, CPU %s/sign-up", ref.res.rps(), fmtDur(ref.cpuPerSignup())),
			ratioText: fmt.Sprintf("throughput %.2f, CPU/sign-up %.2f (no target)",
				ratio(time.Duration(p.res.requests), time.Duration(ref.res.requests)), ratio(p.cpuPerSignup(), ref.cpuPerSignup())),
			note: note})
	}
	if rate <= 0 {
		return rows
	}

	// Open loop: latency at the same offered load, against the target.
	ref = &off.open
	openTag := fmt.Sprintf(" (open loop, %s %.1f/s = %.2f x capacity)", o.signupArrivals, rate, o.signupLoad)
	openNote := func(p *signupPhase) string {
		return fmt.Sprintf("%d arrivals scheduled in %s measured (%d slices), %d answered, %.1f/s; at most %d in flight; dispatcher at most %s behind schedule; server CPU %s per sign-up",
			p.scheduled, p.res.elapsed.Round(time.Millisecond), rounds, p.res.requests, p.res.rps(), p.maxInFlight, fmtDur(p.maxLag), fmtDur(p.cpuPerSignup()))
	}
	rows = append(rows, row{scenario: off.name + openTag, res: &ref.res, value: ref.res.rps(), note: openNote(ref) + ", no mail"})
	refP50, refP99 := ref.res.hist.quantile(0.50), ref.res.hist.quantile(0.99)
	// With a control, the mail sides are judged against the answers of both
	// --no-mail servers together: the same configuration with twice the
	// samples, so the yardstick's own p99 moves less from run to run. The
	// ratios to the first server alone are in the note.
	pooled, refErrors, controlled := ref.res.hist, ref.res.errors, false
	for _, s := range sides[1:] {
		if !s.mailOn {
			pooled.merge(&s.open.res.hist)
			refErrors, controlled = refErrors+s.open.res.errors, true
		}
	}
	pooledName := "--no-mail"
	if controlled {
		pooledName = "both --no-mail servers"
	}
	poolP50, poolP99 := pooled.quantile(0.50), pooled.quantile(0.99)
	for _, s := range sides[1:] {
		p := &s.open
		p50, p99 := p.res.hist.quantile(0.50), p.res.hist.quantile(0.99)
		r50, r99 := ratio(p50, refP50), ratio(p99, refP99)
		if !s.mailOn {
			// The control: no verdict, it is the yardstick for the others.
			rows = append(rows, row{scenario: s.name + openTag, res: &p.res, value: p.res.rps(),
				refText:   fmt.Sprintf("--no-mail p50 %s p99 %s", fmtDur(refP50), fmtDur(refP99)),
				ratioText: fmt.Sprintf("p50 %.2f, p99 %.2f (noise floor)", r50, r99),
				note: openNote(p) + fmt.Sprintf(", no mail; median of the %d per-round ratios: p50 %.2f, p99 %.2f",
					rounds, medianRatio(p.p50s, ref.p50s), medianRatio(p.p99s, ref.p99s))})
			continue
		}
		v50, v99 := ratio(p50, poolP50), ratio(p99, poolP99)
		// No measured request on either side is no evidence, not a pass.
		pass := v50 > 0 && v50 <= 1.10 && v99 > 0 && v99 <= 1.10 && p.drainErr == "" && p.res.errors == 0 && refErrors == 0
		note := openNote(p) + fmt.Sprintf(" (mail worker included; %.2f of --no-mail); %d mails delivered for %d sign-ups in all; longest wait for the outbox to empty after a slice %s",
			ratio(p.cpuPerSignup(), ref.cpuPerSignup()), s.sent(), s.created.Load(), p.maxDrain.Round(time.Millisecond))
		if controlled {
			note += fmt.Sprintf("; to the first --no-mail server alone: p50 %.2f, p99 %.2f", r50, r99)
		}
		// Each round measures every side within seconds of the others, so
		// the median of the per-round ratios is less moved by a burst of
		// load on the shared machine than the pooled percentiles are.
		note += fmt.Sprintf("; median of the %d per-round ratios: p50 %.2f, p99 %.2f",
			rounds, medianRatio(p.p50s, ref.p50s), medianRatio(p.p99s, ref.p99s))
		if p.drainErr != "" {
			note += "; " + p.drainErr
		}
		rows = append(rows, row{scenario: s.name + openTag, res: &p.res, value: p.res.rps(),
			refText:   fmt.Sprintf("%s p50 %s p99 %s", pooledName, fmtDur(poolP50), fmtDur(poolP99)),
			ratioText: fmt.Sprintf("p50 %.2f, p99 %.2f (≤ 1.10)", v50, v99),
			note:      note, passOverride: &pass})
	}
	return rows
}

// signupOp signs up a new address per request (unique within the side's
// server, across slices); 201 is the expected answer.
func signupOp(c *http.Client, s *signupSide, tag string) op {
	url := s.srv.base + "/auth/signup"
	return func(ctx context.Context) bool {
		email := fmt.Sprintf("signup-%d-%s@bench.example.com", s.seq.Add(1), tag)
		status, _, err := postJSON(ctx, c, url, credentials(email))
		if err == nil && status == http.StatusCreated {
			s.created.Add(1)
			return true
		}
		return false
	}
}

// drain waits until the side's server has delivered one mail per sign-up
// so far, and remembers the longest wait in the phase.
func (p *signupPhase) drain(ctx context.Context, s *signupSide) {
	t0 := time.Now()
	deadline := t0.Add(2 * time.Minute)
	for s.sent() < s.created.Load() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			if p.drainErr == "" {
				p.drainErr = fmt.Sprintf("outbox not empty 2 min after a slice: %d of %d sent", s.sent(), s.created.Load())
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.maxDrain = max(p.maxDrain, time.Since(t0))
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
