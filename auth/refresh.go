package auth

import (
	"context"
	"errors"
	"fmt"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/audit"
)

// Refresh rotates a refresh token (DESIGN.md, "Refresh tokens"): one atomic
// rotation in the common case; otherwise the session row tells a grace
// replay (same successor again) from reuse (session revoked).
func (s *Service) Refresh(ctx context.Context, raw string, c Client) (Grant, error) {
	if err := s.limit(ctx, "refresh:ip:"+ipLimitKey(c.IP), s.cfg.RefreshRate); err != nil {
		s.Observer.Refresh("rate_limited")
		return Grant{}, err
	}
	sid, gen, err := s.RefreshCodec.Decode(raw)
	if err != nil {
		s.Observer.Refresh("invalid")
		return Grant{}, ErrInvalidRefresh
	}
	now := s.now()
	sess, u, err := s.Store.RotateSession(ctx, sid, gen, now, now.Add(-s.cfg.IdleTTL))
	if err == nil {
		s.Observer.Refresh("ok")
		return s.grant(u, sess, now)
	}
	if !errors.Is(err, gatehouse.ErrNotFound) {
		return Grant{}, fmt.Errorf("refresh: %w", err)
	}
	sess, err = s.Store.SessionByID(ctx, sid)
	if errors.Is(err, gatehouse.ErrNotFound) {
		s.Observer.Refresh("invalid")
		return Grant{}, ErrInvalidRefresh
	}
	if err != nil {
		return Grant{}, fmt.Errorf("refresh: %w", err)
	}
	switch {
	case sess.Revoked():
		s.Observer.Refresh("revoked")
		if sess.RevokeReason == ReasonReuse {
			return Grant{}, ErrRefreshReused
		}
		return Grant{}, ErrInvalidRefresh
	case !now.Before(sess.ExpiresAt) || !sess.LastUsedAt.After(now.Add(-s.cfg.IdleTTL)):
		s.Observer.Refresh("expired")
		return Grant{}, ErrInvalidRefresh
	case gen >= sess.Gen:
		// A genuine token of the current generation that did not rotate:
		// its user is disabled (sessions are revoked on disable, so this
		// is only a race with that). Not theft.
		s.Observer.Refresh("invalid")
		return Grant{}, ErrInvalidRefresh
	case gen+1 == sess.Gen && now.Sub(sess.RotatedAt) <= s.cfg.ReuseGrace:
		u, err := s.Store.UserByID(ctx, sess.UserID)
		if err != nil {
			return Grant{}, fmt.Errorf("refresh grace: %w", err)
		}
		if u.Disabled {
			return Grant{}, ErrInvalidRefresh
		}
		s.Observer.Refresh("grace")
		return s.grant(u, sess, now)
	}
	// An earlier generation of a live session, outside the grace window:
	// someone holds a copy of a token that was already rotated.
	if err := s.revokeSession(ctx, sess.ID, ReasonReuse, now); err != nil && !errors.Is(err, gatehouse.ErrNotFound) {
		return Grant{}, fmt.Errorf("revoke reused session: %w", err)
	}
	s.Observer.Refresh("reused")
	s.recordAudit(ctx, audit.Event{Type: audit.TypeRefreshReuse, UserID: sess.UserID, SessionID: sess.ID,
		IP: c.IP, UserAgent: c.UserAgent, Outcome: audit.Failure})
	s.Logger.Warn("refresh token reuse detected; session revoked", "session_id", sess.ID, "user_id", sess.UserID, "ip", c.IP)
	return Grant{}, ErrRefreshReused
}
