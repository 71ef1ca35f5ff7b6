package sqlite_test

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
)

// TestAuditEventsAppendOnly proves the schema itself refuses to change an
// audit event: even SQL that bypasses the Store cannot rewrite history
// (only deletion, which retention needs, remains).
func TestAuditEventsAppendOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gatehouse.db")
	s := mustOpen(t, path)
	id, err := s.AppendAudit(t.Context(), gatehouse.AuditEvent{Time: time.Now(), Type: "login", UserID: "u1", Outcome: "failure"})
	if err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer db.Close()
	_, err = db.ExecContext(t.Context(), `UPDATE audit_events SET outcome = 'success' WHERE id = ?`, id)
	if err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Fatalf("UPDATE of an audit event: err = %v, want the append-only refusal", err)
	}
	es, err := s.AuditEvents(t.Context(), gatehouse.AuditFilter{Limit: 1})
	if err != nil || len(es) != 1 || es[0].Outcome != "failure" {
		t.Errorf("after the refused UPDATE: %+v, %v; want the event unchanged", es, err)
	}
}
