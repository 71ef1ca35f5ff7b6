package main

import (
	"net"
	"net/http"
	"sync"
)

// limitListener bounds the connections open at once (--max-connections).
// Each connection costs buffers and a goroutine before it has sent a single
// byte worth checking, so without a bound unauthenticated slow clients
// could take the process's memory. Accept waits for a free slot; the
// connections beyond the limit wait in the kernel's accept queue, and are
// served, in order, as slots free up.
//
// A connection that is idle between keep-alive requests gives its slot up
// when someone is waiting for one, so that idle browsers cannot starve new
// clients; ConnState must be wired to the http.Server for that.
type limitListener struct {
	net.Listener
	slots chan struct{}
	done  chan struct{}
	once  sync.Once

	mu      sync.Mutex
	idle    map[net.Conn]struct{}
	waiting bool
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{
		Listener: ln,
		slots:    make(chan struct{}, n),
		done:     make(chan struct{}),
		idle:     map[net.Conn]struct{}{},
	}
}

func (l *limitListener) Accept() (net.Conn, error) {
	if !l.acquire() {
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

// acquire takes a slot, waiting for one if need be; false when closed.
func (l *limitListener) acquire() bool {
	select {
	case l.slots <- struct{}{}:
		return true
	case <-l.done:
		return false
	default:
	}
	l.mu.Lock()
	l.waiting = true
	idle := l.idle
	l.idle = map[net.Conn]struct{}{}
	l.mu.Unlock()
	for c := range idle {
		c.Close()
	}
	defer func() {
		l.mu.Lock()
		l.waiting = false
		l.mu.Unlock()
	}()
	select {
	case l.slots <- struct{}{}:
		return true
	case <-l.done:
		return false
	}
}

// connState tracks idle keep-alive connections (http.Server.ConnState).
func (l *limitListener) connState(c net.Conn, state http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if state != http.StateIdle {
		delete(l.idle, c)
		return
	}
	if l.waiting {
		// Closing between requests is what an idle timeout does too;
		// clients retry on a fresh connection.
		c.Close()
		return
	}
	l.idle[c] = struct{}{}
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn gives its slot back when closed, once.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
