package e2e

// Regression tests for the operational items of issue 10, in
// hardening_ops_*_test.go. This file: header and connection limits (item 8).

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// opsRawRequest writes req (a complete HTTP/1.1 request) on a new connection
// to addr and returns the status of the answer, reading for at most timeout.
func opsRawRequest(addr, req string, timeout time.Duration) (int, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, req); err != nil {
		return 0, err
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	return res.StatusCode, nil
}

func (s *server) addr() string { return strings.TrimPrefix(s.base, "http://") }

// TestHardeningOpsHeaderLimit: SECURITY.md promises a 64 KiB limit on the
// request header block; net/http's default is 1 MiB (plus 4 KiB of slack).
func TestHardeningOpsHeaderLimit(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	get := func(pad int) string {
		return "GET /healthz HTTP/1.1\r\nHost: " + s.addr() + "\r\nX-Pad: " + strings.Repeat("a", pad) + "\r\nConnection: close\r\n\r\n"
	}
	st, err := opsRawRequest(s.addr(), get(70<<10), 10*time.Second)
	if err != nil || st != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("70 KiB header: status %d (err %v), want 431", st, err)
	}
	// Just under the limit is still served, so the limit is not far lower
	// than documented.
	st, err = opsRawRequest(s.addr(), get(60<<10), 10*time.Second)
	if err != nil || st != http.StatusOK {
		t.Errorf("60 KiB header: status %d (err %v), want 200", st, err)
	}
}

// TestHardeningOpsConnectionLimit: with --max-connections 5, five
// connections that never finish their headers hold every slot; a sixth
// request waits instead of being served, and is served once they close.
func TestHardeningOpsConnectionLimit(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--max-connections", "5")
	s.tr.CloseIdleConnections()
	var slow []net.Conn
	defer func() {
		for _, c := range slow {
			c.Close()
		}
	}()
	for range 5 {
		c, err := net.DialTimeout("tcp", s.addr(), 5*time.Second)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		slow = append(slow, c)
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	type result struct {
		status int
		err    error
		at     time.Time
	}
	done := make(chan result, 1)
	go func() {
		st, err := opsRawRequest(s.addr(), "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 20*time.Second)
		done <- result{st, err, time.Now()}
	}()
	select {
	case r := <-done:
		t.Fatalf("a sixth connection was served (%d, %v) while five held every slot of --max-connections 5", r.status, r.err)
	case <-time.After(1500 * time.Millisecond):
	}
	released := time.Now()
	for _, c := range slow {
		c.Close()
	}
	slow = nil
	select {
	case r := <-done:
		if r.err != nil || r.status != http.StatusOK {
			t.Fatalf("waiting request after the slots freed: %d, %v; want 200", r.status, r.err)
		}
		t.Logf("waiting request served %v after the slow connections closed", r.at.Sub(released).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting request was not served within 10s of the slots freeing")
	}
	// Many requests in a row still work (slots are given back).
	for i := range 20 {
		if r := s.do(t, "GET", "/healthz", nil); r.Status != http.StatusOK {
			t.Fatalf("request %d after the limit test: %s", i, r)
		}
	}
	// Idle keep-alive connections holding every slot give one up to a new
	// client instead of making it wait for their idle timeout.
	s.tr.CloseIdleConnections()
	for range 5 {
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		res, err := (&http.Client{Transport: validated(t, tr), Timeout: 10 * time.Second}).Get(s.base + "/healthz")
		if err != nil {
			t.Fatalf("keep-alive client: %v", err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	start := time.Now()
	st, err := opsRawRequest(s.addr(), "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 10*time.Second)
	if err != nil || st != http.StatusOK || time.Since(start) > 3*time.Second {
		t.Errorf("a new client while idle keep-alive connections held every slot: %d, %v after %v", st, err, time.Since(start).Round(time.Millisecond))
	}
}
