package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse"
)

// The audit log. Ids come from an identity column; of concurrent appends
// the ids are handed out in the order the inserts run, which is all the
// newest-first listing needs.

var _ gatehouse.AuditLog = (*Store)(nil)

const auditCols = `id, time, type, user_id, session_id, ip, user_agent, outcome, detail`

// AppendAudit inserts e and returns the id the identity column gave it.
func (s *Store) AppendAudit(ctx context.Context, e gatehouse.AuditEvent) (int64, error) {
	detail := e.Detail
	if detail == nil {
		detail = map[string]string{}
	}
	var id int64
	err := s.pool.QueryRow(ctx, `INSERT INTO audit_events
		(time, type, user_id, session_id, ip, user_agent, outcome, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
		e.Time, e.Type, e.UserID, e.SessionID, e.IP, e.UserAgent, e.Outcome, detail).Scan(&id)
	if err != nil {
		return 0, wrap("append audit event", err)
	}
	return id, nil
}

// AuditEvents returns the newest events matching f, walking the primary
// key (or the user or type index) downwards from the cursor.
func (s *Store) AuditEvents(ctx context.Context, f gatehouse.AuditFilter) ([]gatehouse.AuditEvent, error) {
	if f.Limit <= 0 {
		return nil, nil
	}
	var where []string
	var args []any
	arg := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.UserID != "" {
		arg("user_id = $%d", f.UserID)
	}
	if f.Type != "" {
		arg("type = $%d", f.Type)
	}
	if f.Before > 0 {
		arg("id < $%d", f.Before)
	}
	q := `SELECT ` + auditCols + ` FROM audit_events`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, f.Limit)
	q += fmt.Sprintf(` ORDER BY id DESC LIMIT $%d`, len(args))
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, wrap("audit events", err)
	}
	defer rows.Close()
	var out []gatehouse.AuditEvent
	for rows.Next() {
		var e gatehouse.AuditEvent
		if err := rows.Scan(&e.ID, &e.Time, &e.Type, &e.UserID, &e.SessionID, &e.IP, &e.UserAgent, &e.Outcome, &e.Detail); err != nil {
			return nil, wrap("audit events", err)
		}
		e.Time = e.Time.UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("audit events", err)
	}
	return out, nil
}

// PruneAudit deletes a batch of events past retention. SKIP LOCKED lets
// several instances prune at once without waiting on each other's batches.
func (s *Store) PruneAudit(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM audit_events WHERE id IN (
			SELECT id FROM audit_events WHERE time < $1
			LIMIT $2 FOR UPDATE SKIP LOCKED)`, before, limit)
	if err != nil {
		return 0, wrap("prune audit events", err)
	}
	return int(tag.RowsAffected()), nil
}
