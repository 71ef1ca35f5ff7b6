package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/audit"
)

// RequireAdmin checks that the principal may use the admin endpoints. The
// role comes from the token; a role change revokes the tokens issued
// before it, so a demoted admin's token stops working at once.
func RequireAdmin(p Principal) error {
	if p.Role != gatehouse.RoleAdmin {
		return ErrForbidden
	}
	return nil
}

// ListUsers pages through users in id order.
func (s *Service) ListUsers(ctx context.Context, after string, limit int) ([]gatehouse.User, error) {
	users, err := s.Store.ListUsers(ctx, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return users, nil
}

// UserSessions lists any user's live sessions.
func (s *Service) UserSessions(ctx context.Context, userID string) ([]gatehouse.Session, error) {
	if _, err := s.Store.UserByID(ctx, userID); err != nil {
		return nil, fmt.Errorf("user sessions: %w", err)
	}
	return s.Sessions(ctx, userID)
}

// UpdateUser changes a user's role and/or disabled flag. Both revoke the
// access tokens issued before the change; disabling also ends every
// session.
func (s *Service) UpdateUser(ctx context.Context, userID string, role *gatehouse.Role, disabled *bool) (gatehouse.User, error) {
	if role != nil && !role.Valid() {
		return gatehouse.User{}, invalid("role", "must be user or admin")
	}
	before, err := s.Store.UserByID(ctx, userID)
	if err != nil {
		return gatehouse.User{}, fmt.Errorf("update user: %w", err)
	}
	changed := (role != nil && *role != before.Role) || (disabled != nil && *disabled != before.Disabled)
	disabling := disabled != nil && *disabled
	if !changed {
		if disabling {
			// A retry after a failed disable must still end the sessions.
			if err := s.revokeUserSessions(ctx, userID, "", ReasonDisabled, s.now()); err != nil {
				return gatehouse.User{}, err
			}
		}
		return before, nil
	}
	// The last enabled admin may not demote or disable themselves (nor be
	// demoted or disabled by anyone): the instance would be left without
	// an admin. Asked before any revocation, so a refused change costs
	// nothing; the guarded write below is what holds under concurrency.
	removesAdmin := before.Role == gatehouse.RoleAdmin && !before.Disabled &&
		((role != nil && *role != gatehouse.RoleAdmin) || disabling)
	if removesAdmin {
		other, err := s.Store.OtherEnabledAdmin(ctx, userID)
		if err != nil {
			return gatehouse.User{}, fmt.Errorf("update user: %w", err)
		}
		if !other {
			return gatehouse.User{}, ErrLastAdmin
		}
	}
	now := s.now()
	// Every token issued so far has an iat of at most ceilSecond(now),
	// so a cutoff past that rejects them all; every token issued from now
	// on is stamped at or after it. The second second of margin covers
	// instance clocks a little apart. Two changes must also get distinct
	// cutoffs, or a token issued between them (stamped at the first
	// cutoff) survives the second: hence at least one second past the
	// previous cutoff. That pushes the cutoff ahead of the clock when
	// changes come quickly, and every revocation entry has to live until
	// cutoff + AccessTTL, so how far ahead it may go is capped.
	cutoff := ceilSecond(now).Add(2 * time.Second)
	if next := before.TokensValidAfter.Add(time.Second); next.After(cutoff) {
		cutoff = next
	}
	if limit := ceilSecond(now).Add(MaxCutoffAhead); cutoff.After(limit) {
		return gatehouse.User{}, &RateLimitError{RetryAfter: cutoff.Sub(limit)}
	}
	ctx, cancel := detach(ctx)
	defer cancel()
	// The revocation is recorded before the change it enforces: if the
	// update then fails, the extra revocation only costs the user a
	// refresh, and a retry finds the change still to do. The other order
	// could leave a change made and its revocation lost.
	if err := s.revokeUserBefore(ctx, userID, cutoff); err != nil {
		return gatehouse.User{}, err
	}
	if disabling {
		if err := s.revokeUserSessions(ctx, userID, "", ReasonDisabled, now); err != nil {
			return gatehouse.User{}, err
		}
	}
	// Conditional on leaving an enabled admin: of two admins demoting each
	// other at once, one is refused here. That one's tokens were revoked
	// above (and, when disabling, its sessions ended): a refresh or a new
	// sign-in, a small price for a race that needs two admins.
	u, err := s.Store.UpdateUserKeepingAdmin(ctx, userID, role, disabled, cutoff)
	s.users.forget(userID)
	if errors.Is(err, gatehouse.ErrLastAdmin) {
		// The cutoff is recorded: raise the row's to match, so that tokens
		// issued from now on are stamped past it and work at once.
		if _, err := s.Store.UpdateUser(ctx, userID, nil, nil, cutoff); err != nil {
			return gatehouse.User{}, fmt.Errorf("update user: %w", err)
		}
		s.users.forget(userID)
		return gatehouse.User{}, ErrLastAdmin
	}
	if err != nil {
		return gatehouse.User{}, fmt.Errorf("update user: %w", err)
	}
	// A login or refresh that read the user before the update committed
	// stamps its token from a clock reading taken before its read, so
	// before now (the update advanced the user's version: a session
	// insert after it fails). If the update took long enough for that
	// reading to reach the cutoff, move the cutoff past it.
	if late := ceilSecond(s.now()).Add(2 * time.Second); late.After(u.TokensValidAfter) {
		if err := s.revokeUserBefore(ctx, userID, late); err != nil {
			return gatehouse.User{}, err
		}
		if u, err = s.Store.UpdateUser(ctx, userID, nil, nil, late); err != nil {
			return gatehouse.User{}, fmt.Errorf("update user: %w", err)
		}
		s.users.forget(userID)
	}
	if disabling {
		// Sessions that logins in flight inserted before the version
		// changed: ended now, so re-enabling the account cannot revive them.
		if err := s.revokeUserSessions(ctx, userID, "", ReasonDisabled, s.now()); err != nil {
			return gatehouse.User{}, err
		}
	}
	if role != nil && *role != before.Role {
		s.recordAdmin(ctx, userID, audit.ActionRoleChange, audit.Detail{audit.KeyRole: string(*role)})
	}
	if disabled != nil && *disabled != before.Disabled {
		action := audit.ActionEnable
		if *disabled {
			action = audit.ActionDisable
		}
		s.recordAdmin(ctx, userID, action, nil)
	}
	return u, nil
}

// revokeUserBefore records that the user's access tokens issued before
// cutoff are revoked.
func (s *Service) revokeUserBefore(ctx context.Context, userID string, cutoff time.Time) error {
	rev := gatehouse.Revocation{Kind: gatehouse.RevokeUserBefore, Subject: userID, At: cutoff,
		ExpiresAt: cutoff.Add(s.cfg.AccessTTL + s.cfg.Leeway + time.Second)}
	if err := s.Store.AddRevocation(ctx, rev); err != nil {
		return fmt.Errorf("update user: record revocation: %w", err)
	}
	s.Revoker.Record(ctx, rev)
	s.Observer.Revoked("user_update", 1)
	return nil
}

// AdminEndSession ends any session.
func (s *Service) AdminEndSession(ctx context.Context, sid string) error {
	if err := s.revokeSession(ctx, sid, ReasonAdmin, s.now()); err != nil {
		return err
	}
	// Read after the revocation, which alone decides the answer: only
	// the audit record needs to know whose session it was.
	userID := ""
	if sess, err := s.Store.SessionByID(ctx, sid); err == nil {
		userID = sess.UserID
	} else {
		s.Logger.Warn("audit: session ended by an admin not found again", "session_id", sid, "err", err)
	}
	s.recordAdmin(ctx, userID, audit.ActionEndSession, audit.Detail{audit.KeyTargetSessionID: sid})
	return nil
}

// AdminLogoutUser ends every session of a user.
func (s *Service) AdminLogoutUser(ctx context.Context, userID string) error {
	if _, err := s.Store.UserByID(ctx, userID); err != nil {
		return fmt.Errorf("logout user: %w", err)
	}
	if err := s.revokeUserSessions(ctx, userID, "", ReasonAdmin, s.now()); err != nil {
		return err
	}
	s.recordAdmin(ctx, userID, audit.ActionLogoutUser, nil)
	return nil
}
