package auth

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/audit"
)

// The audit log (API.md part 2): every way in and every security change
// reports an event through recordAudit. Recording never fails the request.

// recordAudit records e; the request's IP and user agent are filled in
// from the context when e leaves them empty.
func (s *Service) recordAudit(ctx context.Context, e audit.Event) {
	s.Audit.Record(ctx, e)
}

// recordLogin records a sign-in of u: a success with the session it
// started, or a failure for an existing account with its reason.
func (s *Service) recordLogin(ctx context.Context, userID, sessionID string, c Client, methods []string, reason string) {
	e := audit.Event{
		Type: audit.TypeLogin, UserID: userID, SessionID: sessionID, IP: c.IP, UserAgent: c.UserAgent,
		Detail: audit.Detail{audit.KeyMethod: strings.Join(methods, " ")},
	}
	if reason != "" {
		e.Outcome = audit.Failure
		e.Detail[audit.KeyReason] = reason
	}
	s.recordAudit(ctx, e)
}

// recordAdmin records an admin action on user userID. The admin is the
// authenticated caller of the request; session ids stay in the detail so
// that the user's own activity view shows what happened without the
// admin's session.
func (s *Service) recordAdmin(ctx context.Context, userID, action string, detail audit.Detail) {
	if detail == nil {
		detail = audit.Detail{}
	}
	detail[audit.KeyAction] = action
	if req := audit.RequestFrom(ctx); req != nil && req.ActorID != "" {
		detail[audit.KeyAdminID] = req.ActorID
	}
	s.recordAudit(ctx, audit.Event{Type: audit.TypeAdmin, UserID: userID, Detail: detail})
}

// AuditEvents lists audit events for an admin, newest first.
func (s *Service) AuditEvents(ctx context.Context, f gatehouse.AuditFilter) ([]gatehouse.AuditEvent, error) {
	es, err := s.Store.AuditEvents(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("audit events: %w", err)
	}
	return es, nil
}

// Activity lists the caller's own recent events, newest first: sign-ins
// (failed ones too), security changes, and what admins did to the account.
// An admin's address, user agent and identity are theirs, not the user's,
// so they are left out of the user's view.
func (s *Service) Activity(ctx context.Context, p Principal, before int64, limit int) ([]gatehouse.AuditEvent, error) {
	es, err := s.Store.AuditEvents(ctx, gatehouse.AuditFilter{UserID: p.UserID, Before: before, Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("activity: %w", err)
	}
	for i, e := range es {
		if e.Type != audit.TypeAdmin {
			continue
		}
		e.IP, e.UserAgent, e.SessionID = "", "", ""
		detail := make(map[string]string, len(e.Detail))
		for k, v := range e.Detail {
			if k != audit.KeyAdminID {
				detail[k] = v
			}
		}
		e.Detail = detail
		es[i] = e
	}
	return es, nil
}

// PruneAudit deletes, in batches, the audit events older than retention,
// and returns how many it deleted; one call deletes at most
// retentionBatch*retentionMaxBatches, the next call carries on.
func (s *Service) PruneAudit(ctx context.Context, retention time.Duration) (int, error) {
	before := s.now().Add(-retention)
	total := 0
	for range retentionMaxBatches {
		n, err := s.Store.PruneAudit(ctx, before, retentionBatch)
		total += n
		if err != nil {
			return total, fmt.Errorf("prune audit events: %w", err)
		}
		if n < retentionBatch {
			break
		}
	}
	return total, nil
}
