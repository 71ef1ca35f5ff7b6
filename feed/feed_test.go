package feed

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/revoke"
)

// memLog is an in-memory revocation log numbering entries as a store does.
type memLog struct {
	mu      sync.Mutex
	entries []gatehouse.Revocation
	err     error
}

func (l *memLog) add(revs ...gatehouse.Revocation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range revs {
		r.Seq = int64(len(l.entries) + 1)
		l.entries = append(l.entries, r)
	}
}

func (l *memLog) RevocationsAfter(_ context.Context, after int64, now time.Time, limit int) ([]gatehouse.Revocation, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return nil, l.err
	}
	var out []gatehouse.Revocation
	for _, r := range l.entries {
		if r.Seq > after && r.ExpiresAt.After(now) && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}

func (l *memLog) PruneRevocations(context.Context, time.Time) error { return nil }

func rev(kind gatehouse.RevocationKind, subject string, at time.Time) gatehouse.Revocation {
	return gatehouse.Revocation{Kind: kind, Subject: subject, At: at, ExpiresAt: at.Add(15 * time.Minute)}
}

// newFeed returns a Feed over log with a started Revoker polling it often.
func newFeed(t *testing.T, log *memLog, heartbeat time.Duration) *Feed {
	t.Helper()
	r := revoke.New(log, nil, revoke.Config{PollInterval: 20 * time.Millisecond}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); r.Wait() })
	return New(log, r, Config{Heartbeat: heartbeat})
}

func TestPageShowsEveryKind(t *testing.T) {
	log := &memLog{}
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	log.add(rev(gatehouse.RevokeSession, "s1", at), rev(gatehouse.RevokeUserBefore, "u1", at),
		rev(gatehouse.RevokeToken, "j1", at), rev("api_key", "k1", at), rev("future_kind", "x", at))
	f := New(log, nil, Config{Now: func() time.Time { return at }})
	p, err := f.Page(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(p)
	want := `{"revocations":[` +
		`{"kind":"session","session_id":"s1","at":"2030-01-02T03:04:05Z"},` +
		`{"kind":"user","user_id":"u1","before":"2030-01-02T03:04:05Z","at":"2030-01-02T03:04:05Z"},` +
		`{"kind":"token","jti":"j1","at":"2030-01-02T03:04:05Z"},` +
		`{"kind":"api_key","id":"k1","at":"2030-01-02T03:04:05Z"}],"cursor":"5"}`
	if string(b) != want {
		t.Fatalf("page:\n got %s\nwant %s", b, want)
	}
	p, err = f.Page(t.Context(), 2)
	if err != nil || len(p.Revocations) != 2 || p.Revocations[0].JTI != "j1" || p.Cursor != "5" {
		t.Fatalf("page after 2 = %+v, %v", p, err)
	}
	p, err = f.Page(t.Context(), 5)
	if err != nil || len(p.Revocations) != 0 || p.Cursor != "5" {
		t.Fatalf("page after the end = %+v, %v; want empty with the same cursor", p, err)
	}
	log.err = errors.New("database down")
	if _, err := f.Page(t.Context(), 0); err == nil {
		t.Fatal("Page hid a store failure")
	}
}

func TestParseCursor(t *testing.T) {
	for _, ok := range []string{"0", "17", "999999999999999999"} {
		if _, err := ParseCursor(ok); err != nil {
			t.Errorf("ParseCursor(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-1", "+1", "1.5", "1e3", " 1", "0x10", "9999999999999999999", "١"} {
		if n, err := ParseCursor(bad); err == nil {
			t.Errorf("ParseCursor(%q) = %d, want an error", bad, n)
		}
	}
}

// sse reads events from a stream: each is its id and data, or a heartbeat.
type sse struct {
	id, data  string
	heartbeat bool
}

func readEvents(t *testing.T, sc *bufio.Scanner, n int) []sse {
	t.Helper()
	var out []sse
	var cur sse
	for len(out) < n && sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur != (sse{}) {
				out = append(out, cur)
			}
			cur = sse{}
		case strings.HasPrefix(line, ": "):
			cur.heartbeat = true
		case strings.HasPrefix(line, "id: "):
			cur.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		}
	}
	if len(out) < n {
		t.Fatalf("stream ended after %d events, want %d (%v)", len(out), n, sc.Err())
	}
	return out
}

func streamServer(t *testing.T, f *Feed, after int64) (*bufio.Scanner, *http.Response) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := f.Stream(w, r, after); err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return bufio.NewScanner(resp.Body), resp
}

func TestStreamDeliversBacklogThenLive(t *testing.T) {
	log := &memLog{}
	now := time.Now()
	log.add(rev(gatehouse.RevokeSession, "old", now), rev(gatehouse.RevokeSession, "seen", now))
	f := newFeed(t, log, time.Hour)
	sc, resp := streamServer(t, f, 1)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	ev := readEvents(t, sc, 1)
	if ev[0].id != "2" || !strings.Contains(ev[0].data, `"session_id":"seen"`) {
		t.Fatalf("first event %+v, want id 2 for the entry after the cursor", ev[0])
	}
	log.add(rev(gatehouse.RevokeUserBefore, "u", now))
	ev = readEvents(t, sc, 1)
	if ev[0].id != "3" || !strings.Contains(ev[0].data, `"user_id":"u"`) {
		t.Fatalf("live event %+v, want id 3", ev[0])
	}
}

func TestStreamHeartbeat(t *testing.T) {
	f := newFeed(t, &memLog{}, 30*time.Millisecond)
	sc, _ := streamServer(t, f, 0)
	if ev := readEvents(t, sc, 1); !ev[0].heartbeat {
		t.Fatalf("idle stream sent %+v, want a heartbeat", ev[0])
	}
}

func TestCloseEndsStreams(t *testing.T) {
	f := newFeed(t, &memLog{}, time.Hour)
	sc, _ := streamServer(t, f, 0)
	done := make(chan struct{})
	go func() {
		for sc.Scan() {
		}
		close(done)
	}()
	time.Sleep(50 * time.Millisecond)
	f.Close()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("stream still open after Close")
	}
	// New streams are refused once closed.
	w := httptest.NewRecorder()
	if err := f.Stream(w, httptest.NewRequest("GET", "/", nil), 0); !errors.Is(err, gatehouse.ErrUnavailable) {
		t.Fatalf("Stream after Close: %v", err)
	}
}

func TestStreamStoreDownBeforeHeaders(t *testing.T) {
	log := &memLog{}
	now := time.Now()
	for i := range 5000 { // more than the revoker's tail holds
		log.add(rev(gatehouse.RevokeSession, "s"+string(rune('a'+i%26)), now))
	}
	f := newFeed(t, log, time.Hour)
	log.mu.Lock()
	log.err = errors.New("database down")
	log.mu.Unlock()
	w := httptest.NewRecorder()
	// Cursor 0 is older than memory holds: the store must be asked, and
	// its failure returned before any header is written.
	if err := f.Stream(w, httptest.NewRequest("GET", "/", nil), 0); err == nil {
		t.Fatal("Stream hid a store failure")
	}
	if w.Code != http.StatusOK || w.Body.Len() != 0 || w.Header().Get("Content-Type") != "" {
		t.Fatalf("Stream wrote before failing: %d %q", w.Code, w.Body.String())
	}
}

// TestStreamOutlivesServerTimeouts: the server's ReadTimeout and
// WriteTimeout are set once per request; a stream lasts longer and must
// not be cut by them.
func TestStreamOutlivesServerTimeouts(t *testing.T) {
	log := &memLog{}
	f := newFeed(t, log, 50*time.Millisecond)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = f.Stream(w, r, 0)
	}))
	srv.Config.ReadTimeout = 200 * time.Millisecond
	srv.Config.WriteTimeout = 200 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	time.Sleep(600 * time.Millisecond)
	log.add(rev(gatehouse.RevokeSession, "late", time.Now()))
	deadline := time.Now().Add(2 * time.Second)
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"session_id":"late"`) {
			return
		}
		if time.Now().After(deadline) {
			break
		}
	}
	t.Fatalf("the stream did not deliver an entry made after the server's timeouts (%v)", sc.Err())
}
