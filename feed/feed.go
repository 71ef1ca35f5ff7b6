// Package feed serves the revocation feed: the entries of the revocation log
// still able to matter, for resource servers that verify Gatehouse's access
// tokens themselves. A reader keeps a cursor (the log's Seq, a position,
// not a time, so no clocks need to agree) and asks for what came after it,
// either as one JSON page or as a Server-Sent Events stream that stays open.
//
// The feed is fed from the same records the instances use: a page is read
// from the store; a stream is served from the instance's Revoker, which
// learns of entries made on any instance through the database poll and,
// when Redis is there, at once through the bus.
package feed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse"
)

// PageSize bounds the entries of one JSON page or one read of a stream.
const PageSize = 1000

// DefaultHeartbeat is how often an idle stream sends a comment line, so that
// proxies keep it open and readers notice a dead connection.
const DefaultHeartbeat = 15 * time.Second

// Log reads the store's revocation log.
type Log interface {
	RevocationsAfter(ctx context.Context, after int64, now time.Time, limit int) ([]gatehouse.Revocation, error)
}

// Source is the instance's view of the log (a *revoke.Revoker).
type Source interface {
	// Tail returns entries after the cursor from memory; ok is false when
	// the cursor is older than memory holds.
	Tail(after int64, now time.Time, limit int) (revs []gatehouse.Revocation, ok bool)
	// Changed returns a channel closed when new entries are read.
	Changed() <-chan struct{}
	// Listen makes the source read new entries back at once while a stream
	// is open; stop ends that.
	Listen() (stop func())
}

// Item is one revocation as the feed shows it. Exactly one of SessionID,
// UserID (with Before), JTI or ID is set, by Kind.
type Item struct {
	Kind      string     `json:"kind"`
	SessionID string     `json:"session_id,omitempty"`
	UserID    string     `json:"user_id,omitempty"`
	Before    *time.Time `json:"before,omitempty"`
	JTI       string     `json:"jti,omitempty"`
	ID        string     `json:"id,omitempty"`
	At        time.Time  `json:"at"`
}

// Page is the JSON answer.
type Page struct {
	Revocations []Item `json:"revocations"`
	Cursor      string `json:"cursor"`
}

// itemOf converts a log entry; ok is false for a kind this version does not
// know how to show (skipped; the cursor moves past it).
func itemOf(r gatehouse.Revocation) (Item, bool) {
	it := Item{Kind: string(r.Kind), At: r.At.UTC()}
	switch r.Kind {
	case gatehouse.RevokeSession:
		it.SessionID = r.Subject
	case gatehouse.RevokeUserBefore:
		// A user entry's At is the instant before which the user's tokens
		// were issued; it is also when the entry was made.
		before := r.At.UTC()
		it.UserID, it.Before = r.Subject, &before
	case gatehouse.RevokeToken:
		it.JTI = r.Subject
	case gatehouse.RevokeAPIKey:
		it.ID = r.Subject
	default:
		return Item{}, false
	}
	return it, true
}

// FormatCursor and ParseCursor convert between a Seq and the cursor string
// of the API: a decimal number, opaque to clients.
func FormatCursor(seq int64) string { return strconv.FormatInt(seq, 10) }

// ErrBadCursor: the cursor is not one this server hands out.
var ErrBadCursor = errors.New("cursor must be a non-negative decimal number of at most 18 digits")

// ParseCursor parses a cursor given by a client.
func ParseCursor(s string) (int64, error) {
	if s == "" || len(s) > 18 {
		return 0, ErrBadCursor
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, ErrBadCursor
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, ErrBadCursor
	}
	return n, nil
}

// Feed answers feed requests of one instance.
type Feed struct {
	log       Log
	source    Source
	now       func() time.Time
	heartbeat time.Duration

	// closed ends every stream (server shutdown): net/http's Shutdown waits
	// for handlers, and a stream would otherwise never return.
	closeOnce sync.Once
	closed    chan struct{}
}

// Config tunes a Feed; zero values take the defaults.
type Config struct {
	Heartbeat time.Duration
	Now       func() time.Time
}

// New returns a Feed reading pages from log and streams from source.
func New(log Log, source Source, cfg Config) *Feed {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Feed{log: log, source: source, now: cfg.Now, heartbeat: cfg.Heartbeat, closed: make(chan struct{})}
}

// Close ends every open stream and refuses new ones; register it with
// http.Server.RegisterOnShutdown.
func (f *Feed) Close() { f.closeOnce.Do(func() { close(f.closed) }) }

// Page reads one page after the cursor from the store: the store, not this
// instance's memory, so that a page is as fresh as the database.
func (f *Feed) Page(ctx context.Context, after int64) (Page, error) {
	revs, err := f.log.RevocationsAfter(ctx, after, f.now(), PageSize)
	if err != nil {
		return Page{}, fmt.Errorf("revocation feed: %w", err)
	}
	p := Page{Revocations: []Item{}, Cursor: FormatCursor(after)}
	for _, r := range revs {
		if it, ok := itemOf(r); ok {
			p.Revocations = append(p.Revocations, it)
		}
		p.Cursor = FormatCursor(r.Seq)
	}
	return p, nil
}

// read returns entries after the cursor: from memory when it holds them,
// else from the store.
func (f *Feed) read(ctx context.Context, after int64) ([]gatehouse.Revocation, error) {
	now := f.now()
	if revs, ok := f.source.Tail(after, now, PageSize); ok {
		return revs, nil
	}
	revs, err := f.log.RevocationsAfter(ctx, after, now, PageSize)
	if err != nil {
		return nil, fmt.Errorf("revocation feed: %w", err)
	}
	return revs, nil
}

// Stream serves an SSE stream from the cursor after until the client goes,
// the feed is closed, or the store fails (the client reconnects with
// Last-Event-ID and loses nothing). Headers are written here; an error
// returned before the first byte (the store down) is the caller's to
// answer, later ones end the stream.
func (f *Feed) Stream(w http.ResponseWriter, r *http.Request, after int64) error {
	select {
	case <-f.closed:
		return fmt.Errorf("revocation feed: shutting down: %w", gatehouse.ErrUnavailable)
	default:
	}
	stop := f.source.Listen()
	defer stop()
	ctx := r.Context()
	rc := http.NewResponseController(w)

	// The first read comes before the headers, so that a store that is
	// down gets a problem answer instead of an empty stream.
	changed := f.source.Changed()
	revs, err := f.read(ctx, after)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	// retry: how long an EventSource waits before reconnecting.
	if err := f.write(rc, w, []byte("retry: 1000\n\n")); err != nil {
		return nil
	}

	beat := time.NewTicker(f.heartbeat)
	defer beat.Stop()
	cursor := after
	var buf []byte
	for {
		buf = buf[:0]
		for _, rev := range revs {
			if rev.Seq <= cursor {
				continue
			}
			cursor = rev.Seq
			it, ok := itemOf(rev)
			if !ok {
				continue
			}
			data, err := json.Marshal(it)
			if err != nil {
				return nil
			}
			buf = fmt.Appendf(buf, "id: %d\ndata: %s\n\n", rev.Seq, data)
		}
		if len(buf) > 0 {
			if err := f.write(rc, w, buf); err != nil {
				return nil // the client went away
			}
		}
		if len(revs) < PageSize {
			select {
			case <-ctx.Done():
				return nil
			case <-f.closed:
				return nil
			case <-beat.C:
				if err := f.write(rc, w, []byte(": heartbeat\n\n")); err != nil {
					return nil
				}
				continue // nothing new: no read needed
			case <-changed:
			}
		}
		changed = f.source.Changed()
		if revs, err = f.read(ctx, cursor); err != nil {
			return nil // the client reconnects from its Last-Event-ID
		}
	}
}

// write sends b and flushes it, with a write deadline that the server's
// WriteTimeout would otherwise set once for the whole stream.
func (f *Feed) write(rc *http.ResponseController, w http.ResponseWriter, b []byte) error {
	_ = rc.SetWriteDeadline(time.Now().Add(f.heartbeat + 10*time.Second))
	if _, err := w.Write(b); err != nil {
		return err
	}
	return rc.Flush()
}
