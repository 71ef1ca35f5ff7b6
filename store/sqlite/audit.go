package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse"
)

// The audit log: appended through the writer, read from the read pool.

var _ gatehouse.AuditLog = (*Store)(nil)

const auditCols = `id, time, type, user_id, session_id, ip, user_agent, outcome, detail`

// AppendAudit inserts e; SQLite assigns the id.
func (s *Store) AppendAudit(ctx context.Context, e gatehouse.AuditEvent) (int64, error) {
	detail, err := encodeDetail(e.Detail)
	if err != nil {
		return 0, fmt.Errorf("sqlite: append audit event: %w", err)
	}
	var id int64
	err = s.write.QueryRowContext(ctx, `INSERT INTO audit_events
		(time, type, user_id, session_id, ip, user_agent, outcome, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		micros(e.Time), e.Type, e.UserID, e.SessionID, e.IP, e.UserAgent, e.Outcome, detail).Scan(&id)
	if err != nil {
		return 0, wrap("append audit event", err)
	}
	return id, nil
}

// encodeDetail is the JSON object stored in the detail column ("{}" for
// none).
func encodeDetail(d map[string]string) (string, error) {
	if len(d) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("encode detail: %w", err)
	}
	return string(b), nil
}

// AuditEvents returns the newest events matching f, walking the primary
// key (or the user or type index) downwards from the cursor.
func (s *Store) AuditEvents(ctx context.Context, f gatehouse.AuditFilter) ([]gatehouse.AuditEvent, error) {
	if f.Limit <= 0 {
		return nil, nil
	}
	var where []string
	var args []any
	if f.UserID != "" {
		where, args = append(where, "user_id = ?"), append(args, f.UserID)
	}
	if f.Type != "" {
		where, args = append(where, "type = ?"), append(args, f.Type)
	}
	if f.Before > 0 {
		where, args = append(where, "id < ?"), append(args, f.Before)
	}
	q := `SELECT ` + auditCols + ` FROM audit_events`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY id DESC LIMIT ?`
	rows, err := s.read.QueryContext(ctx, q, append(args, f.Limit)...)
	if err != nil {
		return nil, wrap("audit events", err)
	}
	defer rows.Close()
	var out []gatehouse.AuditEvent
	for rows.Next() {
		var (
			e      gatehouse.AuditEvent
			at     int64
			detail string
		)
		if err := rows.Scan(&e.ID, &at, &e.Type, &e.UserID, &e.SessionID, &e.IP, &e.UserAgent, &e.Outcome, &detail); err != nil {
			return nil, wrap("audit events", err)
		}
		e.Time = fromMicros(at)
		if err := json.Unmarshal([]byte(detail), &e.Detail); err != nil {
			return nil, fmt.Errorf("sqlite: audit event %d: detail: %w", e.ID, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("audit events", err)
	}
	return out, nil
}

// PruneAudit deletes a batch of the oldest events past retention; small
// batches keep the writer lock short.
func (s *Store) PruneAudit(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	res, err := s.write.ExecContext(ctx, `DELETE FROM audit_events WHERE id IN (
			SELECT id FROM audit_events WHERE time < ? LIMIT ?)`, micros(before), limit)
	if err != nil {
		return 0, wrap("prune audit events", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, wrap("prune audit events", err)
	}
	return int(n), nil
}
