package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"

	_ "modernc.org/sqlite" // the storage check reads the server's database file
)

// storageSnapshot is what the storage check compares before and after the
// rotations: the session's rows and the on-disk size of the sessions table
// and its indexes (SQLite's dbstat virtual table, page bytes in use).
type storageSnapshot struct {
	sessionRows  int64 // rows of the rotated session
	tableRows    int64 // rows of the whole sessions table
	revocations  int64
	sessionBytes int64 // pages of table sessions and its indexes
	payloadBytes int64 // payload bytes of those pages
}

func (s storageSnapshot) String() string {
	return fmt.Sprintf("session rows %d, sessions table rows %d, revocations %d, sessions pages %d B (payload %d B)",
		s.sessionRows, s.tableRows, s.revocations, s.sessionBytes, s.payloadBytes)
}

func snapshotSQLite(ctx context.Context, path, sid string) (storageSnapshot, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		return storageSnapshot{}, err
	}
	defer db.Close()
	var s storageSnapshot
	err = db.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM sessions WHERE id = ?),
		(SELECT count(*) FROM sessions),
		(SELECT count(*) FROM revocations),
		(SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name = 'sessions' OR name IN (SELECT name FROM sqlite_master WHERE tbl_name = 'sessions' AND type = 'index')),
		(SELECT coalesce(sum(payload), 0) FROM dbstat WHERE name = 'sessions' OR name IN (SELECT name FROM sqlite_master WHERE tbl_name = 'sessions' AND type = 'index'))`,
		sid).Scan(&s.sessionRows, &s.tableRows, &s.revocations, &s.sessionBytes, &s.payloadBytes)
	return s, err
}

// storageCheck rotates one fresh session n times, one refresh after the
// other, and snapshots the database before and after.
func storageCheck(ctx context.Context, c *http.Client, srv *server, dbPath, email string, n int) (before, after storageSnapshot, rotated int, err error) {
	t, err := login(ctx, c, srv.base, email)
	if err != nil {
		return before, after, 0, err
	}
	if before, err = snapshotSQLite(ctx, dbPath, t.SessionID); err != nil {
		return before, after, 0, fmt.Errorf("snapshot: %w", err)
	}
	do := refreshOp(c, srv.base, t.RefreshToken, nil)
	for i := 0; i < n; i++ {
		if do(ctx) {
			rotated++
		}
	}
	after, err = snapshotSQLite(ctx, dbPath, t.SessionID)
	if err != nil {
		err = fmt.Errorf("snapshot: %w", err)
	}
	return before, after, rotated, err
}
