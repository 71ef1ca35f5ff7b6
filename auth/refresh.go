package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/audit"
	"github.com/gatehouse/gatehouse/token"
)

// Refresh rotates a refresh token (DESIGN.md, "Refresh tokens"): one atomic
// rotation in the common case; otherwise the session row tells a grace
// replay (same successor again) from reuse (session revoked).
func (s *Service) Refresh(ctx context.Context, raw string, c Client) (Grant, error) {
	sess, u, now, err := s.rotate(ctx, s.RefreshCodec, raw, c, nil)
	if err != nil {
		return Grant{}, err
	}
	return s.grant(u, sess, now)
}

// rotate is the rotation behind Refresh and the OAuth refresh_token grant:
// codec decodes the token (each kind of session has its own, so a token of
// one never passes for the other), and check, when not nil, vets the
// session before anything is written (what it reads never changes: the
// client and certificate a session is bound to).
func (s *Service) rotate(ctx context.Context, codec *token.RefreshCodec, raw string, c Client, check func(gatehouse.Session) error) (gatehouse.Session, gatehouse.User, time.Time, error) {
	fail := func(err error) (gatehouse.Session, gatehouse.User, time.Time, error) {
		return gatehouse.Session{}, gatehouse.User{}, time.Time{}, err
	}
	if err := s.limit(ctx, "refresh:ip:"+ipLimitKey(c.IP), s.cfg.RefreshRate); err != nil {
		s.Observer.Refresh("rate_limited")
		return fail(err)
	}
	sid, gen, err := codec.Decode(raw)
	if err != nil {
		s.Observer.Refresh("invalid")
		return fail(ErrInvalidRefresh)
	}
	if check != nil {
		sess, err := s.Store.SessionByID(ctx, sid)
		if errors.Is(err, gatehouse.ErrNotFound) {
			s.Observer.Refresh("invalid")
			return fail(ErrInvalidRefresh)
		}
		if err != nil {
			return fail(fmt.Errorf("refresh: %w", err))
		}
		if err := check(sess); err != nil {
			s.Observer.Refresh("invalid")
			return fail(err)
		}
	}
	now := s.now()
	sess, u, err := s.Store.RotateSession(ctx, sid, gen, now, now.Add(-s.cfg.IdleTTL))
	if err == nil {
		s.Observer.Refresh("ok")
		return sess, u, now, nil
	}
	if !errors.Is(err, gatehouse.ErrNotFound) {
		return fail(fmt.Errorf("refresh: %w", err))
	}
	sess, err = s.Store.SessionByID(ctx, sid)
	if errors.Is(err, gatehouse.ErrNotFound) {
		s.Observer.Refresh("invalid")
		return fail(ErrInvalidRefresh)
	}
	if err != nil {
		return fail(fmt.Errorf("refresh: %w", err))
	}
	switch {
	case sess.Revoked():
		s.Observer.Refresh("revoked")
		if sess.RevokeReason == ReasonReuse {
			return fail(ErrRefreshReused)
		}
		return fail(ErrInvalidRefresh)
	case !now.Before(sess.ExpiresAt) || !sess.LastUsedAt.After(now.Add(-s.cfg.IdleTTL)):
		s.Observer.Refresh("expired")
		return fail(ErrInvalidRefresh)
	case gen >= sess.Gen:
		// A genuine token of the current generation that did not rotate:
		// its user is disabled (sessions are revoked on disable, so this
		// is only a race with that). Not theft.
		s.Observer.Refresh("invalid")
		return fail(ErrInvalidRefresh)
	case gen+1 == sess.Gen && now.Sub(sess.RotatedAt) <= s.cfg.ReuseGrace:
		u, err := s.Store.UserByID(ctx, sess.UserID)
		if err != nil {
			return fail(fmt.Errorf("refresh grace: %w", err))
		}
		if u.Disabled {
			return fail(ErrInvalidRefresh)
		}
		s.Observer.Refresh("grace")
		return sess, u, now, nil
	}
	// An earlier generation of a live session, outside the grace window:
	// someone holds a copy of a token that was already rotated.
	if err := s.revokeSession(ctx, sess.ID, ReasonReuse, now); err != nil && !errors.Is(err, gatehouse.ErrNotFound) {
		return fail(fmt.Errorf("revoke reused session: %w", err))
	}
	s.Observer.Refresh("reused")
	s.recordAudit(ctx, audit.Event{Type: audit.TypeRefreshReuse, UserID: sess.UserID, SessionID: sess.ID,
		IP: c.IP, UserAgent: c.UserAgent, Outcome: audit.Failure})
	s.Logger.Warn("refresh token reuse detected; session revoked", "session_id", sess.ID, "user_id", sess.UserID, "ip", c.IP)
	return fail(ErrRefreshReused)
}
