package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
)

// memLog is an in-memory gatehouse.AuditLog that can be made to fail.
type memLog struct {
	mu     sync.Mutex
	events []gatehouse.AuditEvent
	err    error
}

func (m *memLog) AppendAudit(ctx context.Context, e gatehouse.AuditEvent) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return 0, m.err
	}
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	m.events = append(m.events, e)
	return int64(len(m.events)), nil
}

func (m *memLog) AuditEvents(context.Context, gatehouse.AuditFilter) ([]gatehouse.AuditEvent, error) {
	return nil, nil
}

func (m *memLog) PruneAudit(context.Context, time.Time, int) (int, error) { return 0, nil }

type counts struct {
	recorded map[string]int
	failed   int
}

func (c *counts) AuditRecorded(t string) { c.recorded[t]++ }
func (c *counts) AuditFailed()           { c.failed++ }

func newTestRecorder(t *testing.T) (*Recorder, *memLog, *counts, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	log := &memLog{}
	c := &counts{recorded: map[string]int{}}
	r := NewRecorder(log, slog.New(slog.NewJSONHandler(&buf, nil)), c)
	return r, log, c, &buf
}

// logLines decodes the JSON log lines of buf.
func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestRecordStoresAndLogs(t *testing.T) {
	r, log, c, buf := newTestRecorder(t)
	ctx := WithRequest(context.Background(), &Request{IP: "192.0.2.7", UserAgent: "test-agent/1.0"})
	r.Record(ctx, Event{Type: TypeLogin, UserID: "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee", SessionID: "AAAAAAAAAAAAAAAAAAAAAA",
		Detail: Detail{KeyMethod: "pwd otp mfa"}})
	if len(log.events) != 1 {
		t.Fatalf("stored %d events, want 1", len(log.events))
	}
	e := log.events[0]
	if e.Type != TypeLogin || e.Outcome != Success || e.IP != "192.0.2.7" || e.UserAgent != "test-agent/1.0" ||
		e.Detail[KeyMethod] != "pwd otp mfa" || e.Time.IsZero() || e.Time.Location() != time.UTC {
		t.Errorf("stored %+v: want a login success from the request's IP and agent, UTC time, the method kept", e)
	}
	if c.recorded[TypeLogin] != 1 || c.failed != 0 {
		t.Errorf("observer saw %v recorded, %d failed; want one login", c.recorded, c.failed)
	}
	lines := logLines(t, buf)
	if len(lines) != 1 {
		t.Fatalf("log lines: %v, want one", lines)
	}
	l := lines[0]
	detail, _ := l["detail"].(map[string]any)
	if l["msg"] != "audit" || l["type"] != TypeLogin || l["id"] != float64(1) || l["ip"] != "192.0.2.7" || detail[KeyMethod] != "pwd otp mfa" {
		t.Errorf("log line %v: want msg audit with the event's fields and id", l)
	}
}

func TestRecordExplicitClientWins(t *testing.T) {
	r, log, _, _ := newTestRecorder(t)
	ctx := WithRequest(context.Background(), &Request{IP: "192.0.2.7", UserAgent: "from-request"})
	r.Record(ctx, Event{Type: TypeSignup, IP: "2001:db8::1", UserAgent: "explicit", Outcome: "bogus"})
	e := log.events[0]
	if e.IP != "2001:db8::1" || e.UserAgent != "explicit" || e.Outcome != Success {
		t.Errorf("stored %+v: want the event's own IP and agent, and an unknown outcome read as success", e)
	}
}

// TestDetailWhitelist proves that only whitelisted keys with values of
// their form are stored or logged: a secret passed by mistake, under any
// key, never lands anywhere.
func TestDetailWhitelist(t *testing.T) {
	const (
		password = "correct horse battery staple"
		refresh  = "AbCdEfGhIjKlMnOpQrStUv.c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"
		jwt      = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln"
		code     = "123456"
	)
	r, log, _, buf := newTestRecorder(t)
	r.Record(context.Background(), Event{Type: TypeLogin, UserID: "u-1", Outcome: Failure, Detail: Detail{
		KeyReason:          ReasonWrongPassword, // kept
		KeyMethod:          "pwd",               // kept
		"password":         password,            // unknown key
		"refresh_token":    refresh,
		"code":             code,
		KeyReason + " ":    "x",
		KeyScope:           password, // known key, value not of its form
		KeyTargetSessionID: refresh,
		KeyAdminID:         jwt,
		KeyMethod + "x":    "pwd",
		KeyRole:            "root",
		KeyProvider:        "Not A Name!",
	}})
	got := log.events[0].Detail
	if len(got) != 2 || got[KeyReason] != ReasonWrongPassword || got[KeyMethod] != "pwd" {
		t.Errorf("stored detail %v, want only reason and method", got)
	}
	for _, secret := range []string{password, refresh, jwt, code} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("the log holds %q:\n%s", secret, buf.String())
		}
	}
	if !strings.Contains(buf.String(), "audit detail dropped") {
		t.Errorf("dropping detail should be logged as the mistake it is:\n%s", buf.String())
	}
}

func TestRecordCleansFields(t *testing.T) {
	r, log, _, _ := newTestRecorder(t)
	r.Record(context.Background(), Event{Type: TypeLogout, UserID: "not an id!", SessionID: "has.dot",
		IP: "not-an-ip", UserAgent: strings.Repeat("é", 400) + "\xff"})
	e := log.events[0]
	if e.UserID != "" || e.SessionID != "" || e.IP != "" {
		t.Errorf("stored ids/ip %q %q %q: want malformed ones dropped", e.UserID, e.SessionID, e.IP)
	}
	if len(e.UserAgent) > maxUserAgent || !strings.HasPrefix(e.UserAgent, "éé") || strings.Contains(e.UserAgent, "\xff") {
		t.Errorf("user agent of %d bytes, want at most %d of valid UTF-8", len(e.UserAgent), maxUserAgent)
	}
}

func TestRecordFailureIsCountedNotFatal(t *testing.T) {
	r, log, c, buf := newTestRecorder(t)
	log.err = errors.New("database is down")
	r.Record(context.Background(), Event{Type: TypePasswordChanged, UserID: "u-1"})
	if c.failed != 1 || c.recorded[TypePasswordChanged] != 0 {
		t.Errorf("observer: %d failed, %v recorded; want one failure", c.failed, c.recorded)
	}
	if !strings.Contains(buf.String(), "audit event not stored") || !strings.Contains(buf.String(), `"msg":"audit"`) {
		t.Errorf("want the failure logged and the event's log line still written:\n%s", buf.String())
	}
}

func TestRecordOutlivesTheRequest(t *testing.T) {
	r, log, _, _ := newTestRecorder(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the client hung up
	r.Record(ctx, Event{Type: TypeRefreshReuse, UserID: "u-1", Outcome: Failure})
	if len(log.events) != 1 {
		t.Errorf("an event of a cancelled request was not stored")
	}
}

func TestRecordUnknownType(t *testing.T) {
	r, log, c, _ := newTestRecorder(t)
	r.Record(context.Background(), Event{Type: "made_up"})
	if len(log.events) != 0 || c.failed != 1 {
		t.Errorf("unknown type: %d stored, %d failed; want none stored, one failure", len(log.events), c.failed)
	}
}

func TestNilRecorder(t *testing.T) {
	var r *Recorder
	r.Record(context.Background(), Event{Type: TypeLogin}) // must not panic
	if RequestFrom(context.Background()) != nil {
		t.Error("RequestFrom of a bare context should be nil")
	}
}
