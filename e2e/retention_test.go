package e2e

import (
	"database/sql"
	"errors"
	"testing"
	"time"

	_ "modernc.org/sqlite" // read the server's database file
)

// sessionStored reports whether the server's SQLite file still holds a row
// for session id (read-only, beside the running server).
func sessionStored(t *testing.T, dbPath, id string) bool {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatalf("open %s: %v", dbPath, err)
	}
	defer db.Close()
	var one int
	err = db.QueryRow(`SELECT 1 FROM sessions WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false
	}
	if err != nil {
		t.Fatalf("query sessions: %v", err)
	}
	return true
}

// TestEndedSessionsAreDeletedAfterRetention: session rows, with their IP
// and user agent, used to be kept forever. With --session-retention they go
// once they have been ended that long; live sessions stay.
func TestEndedSessionsAreDeletedAfterRetention(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--session-retention=2s")
	ended := s.newUser(t, true)
	live := s.newUser(t, true)
	r := ended.do(t, "POST", "/auth/logout", nil, bearer(ended.Access()))
	if !expect(t, r, 204, "") {
		return
	}
	if !sessionStored(t, s.dbPath, ended.sid) {
		t.Fatal("the ended session is gone at once; retention should keep it for 2s")
	}
	if !eventually(15*time.Second, func() bool { return !sessionStored(t, s.dbPath, ended.sid) }) {
		t.Fatal("a session ended more than the retention period ago is still stored")
	}
	if !sessionStored(t, s.dbPath, live.sid) {
		t.Fatal("a live session was deleted")
	}
	live.assertAlive(t, "live session after the retention sweep")
}
