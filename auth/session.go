package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/audit"
	"github.com/gatehouse/gatehouse/revoke"
	"github.com/gatehouse/gatehouse/token"
)

// MaxCutoffAhead caps how far past the clock a user's token cutoff
// (TokensValidAfter) may be pushed by changes in quick succession; a change
// that would push it further is refused as rate limited.
const MaxCutoffAhead = 10 * time.Second

// revocationExpiry is how long a session revocation made at now matters:
// until every access token of the session has expired. Tokens are stamped
// no earlier than their user's cutoff, which may lie up to MaxCutoffAhead
// (rounded up to the second) past the clock, so the latest of them expires
// that much later than a token issued now.
func (s *Service) revocationExpiry(now time.Time) time.Time {
	return now.Add(MaxCutoffAhead + time.Second + s.cfg.AccessTTL + s.cfg.Leeway + time.Second)
}

// maxStaleSessionRetries bounds how often startSession re-reads a user that
// keeps changing under it before giving up with 503.
const maxStaleSessionRetries = 3

// startSession creates a session for u and signs its first tokens: every
// way of signing in ends here. The row is inserted only while u is still
// at the version read (Store.CreateSession), and the access token is
// stamped from a clock reading taken before that insert; a change of
// role, enabled state or password that commits after the insert dates its
// cutoff after that reading (UpdateUser), so the token cannot outlive the
// change. When the user changed between the read and the insert, recheck
// (nil: nothing to recheck) decides on the fresh row whether the sign-in
// still stands.
func (s *Service) startSession(ctx context.Context, u gatehouse.User, c Client, amr []string, recheck func(context.Context, gatehouse.User) error) (Grant, error) {
	return s.startSessionWith(ctx, u, c, amr, recheck, nil)
}

// oauthBinding shapes a session that an OAuth client was authorized for:
// its id was chosen when the authorization code was minted (so a second
// redemption of the code can find and revoke it), and it carries the
// Gatehouse session it was authorized from, the client, the granted scopes
// and the certificate its tokens are bound to.
type oauthBinding struct {
	sessionID string
	parentID  string
	client    gatehouse.OAuthClient
	scope     string
	cert      string
}

func (s *Service) startSessionWith(ctx context.Context, u gatehouse.User, c Client, amr []string, recheck func(context.Context, gatehouse.User) error, ob *oauthBinding) (Grant, error) {
	for attempt := 0; ; attempt++ {
		now := s.now()
		sess := s.newSession(u.ID, c, now)
		sess.AMR = amr
		aud := ""
		if ob != nil {
			sess.ID, sess.ClientID, sess.Scope, sess.CertThumbprint = ob.sessionID, ob.client.ID, ob.scope, ob.cert
			sess.ParentID = ob.parentID
			sess.Transport = gatehouse.TransportBody
			aud = ob.client.Audience
		}
		err := s.Store.CreateSession(ctx, sess, u.Version)
		if err == nil {
			s.recordLogin(ctx, u.ID, sess.ID, c, amr, "")
			return s.grantFor(u, sess, now, aud)
		}
		if !errors.Is(err, gatehouse.ErrStale) {
			return Grant{}, fmt.Errorf("create session: %w", err)
		}
		if attempt == maxStaleSessionRetries {
			return Grant{}, fmt.Errorf("create session: user keeps changing: %w", gatehouse.ErrUnavailable)
		}
		fresh, err := s.Store.UserByID(ctx, u.ID)
		if errors.Is(err, gatehouse.ErrNotFound) {
			return Grant{}, ErrInvalidCredentials
		}
		if err != nil {
			return Grant{}, fmt.Errorf("create session: reread user: %w", err)
		}
		if fresh.Disabled {
			return Grant{}, ErrInvalidCredentials
		}
		if recheck != nil {
			if err := recheck(ctx, fresh); err != nil {
				return Grant{}, err
			}
		}
		u = fresh
	}
}

func (s *Service) newSession(userID string, c Client, now time.Time) gatehouse.Session {
	if c.Transport == "" {
		c.Transport = gatehouse.TransportCookie
	}
	return gatehouse.Session{
		ID:         newSessionID(),
		UserID:     userID,
		Gen:        1,
		CreatedAt:  now,
		RotatedAt:  now,
		LastUsedAt: now,
		ExpiresAt:  now.Add(s.cfg.MaxAge),
		// Header values may hold any bytes; stored text must be UTF-8
		// (PostgreSQL refuses anything else).
		UserAgent: truncate(strings.ToValidUTF8(c.UserAgent, "\uFFFD"), 512),
		IP:        c.IP,
		Transport: c.Transport,
	}
}

// grant issues an access token and the refresh token of the session's
// current generation.
func (s *Service) grant(u gatehouse.User, sess gatehouse.Session, now time.Time) (Grant, error) {
	return s.grantFor(u, sess, now, "")
}

// grantFor is grant with the access token's audience (empty: Gatehouse's
// own). A session authorized for an OAuth client gets the client's claims
// and a refresh token of the OAuth codec, which /auth/refresh never takes.
func (s *Service) grantFor(u gatehouse.User, sess gatehouse.Session, now time.Time, aud string) (Grant, error) {
	// Tokens are stamped no earlier than the user's TokensValidAfter, so a
	// token issued in the same second as a role change is not mistaken for
	// one issued before it.
	base := now
	if u.TokensValidAfter.After(base) {
		base = u.TokensValidAfter
	}
	// iat rounds up to the whole second (JWT times are seconds), so the
	// token lives at least the configured lifetime from now and expires_in
	// never overstates it; iat is then at most a second ahead, well inside
	// every verifier's leeway.
	iat := ceilSecond(base)
	exp := iat.Add(s.cfg.AccessTTL)
	if aud == "" {
		aud = s.cfg.Audience
	}
	codec := s.RefreshCodec
	if sess.ClientID != "" {
		codec = s.OAuth.RefreshCodec
	}
	access, err := s.Signer.Sign(token.Claims{
		Issuer:         s.cfg.Issuer,
		Audience:       aud,
		Subject:        u.ID,
		SessionID:      sess.ID,
		ID:             newSessionID(), // jti: the same 128 random bits
		Role:           u.Role,
		AMR:            sess.AMR,
		IssuedAt:       iat,
		ExpiresAt:      exp,
		ClientID:       sess.ClientID,
		Scope:          sess.Scope,
		CertThumbprint: sess.CertThumbprint,
	})
	if err != nil {
		return Grant{}, fmt.Errorf("sign access token: %w", err)
	}
	return Grant{
		AccessToken:      access,
		ExpiresIn:        s.cfg.AccessTTL.Truncate(time.Second),
		Session:          sess,
		User:             u,
		RefreshToken:     codec.Encode(sess.ID, sess.Gen),
		RefreshExpiresAt: s.SessionExpiry(sess),
	}, nil
}

// Authenticate verifies a Bearer access token and checks it against the
// revocation sets.
func (s *Service) Authenticate(ctx context.Context, raw string) (Principal, error) {
	claims, err := s.Signer.Verify(ctx, raw, s.Now())
	if err != nil {
		if errors.Is(err, gatehouse.ErrUnavailable) {
			// An unknown kid could not be looked up in the store: we
			// cannot tell whether the token is good, so fail closed.
			return Principal{}, fmt.Errorf("verify access token: %w", err)
		}
		return Principal{}, ErrInvalidToken
	}
	if claims.ClientID != "" {
		// A token the OAuth provider issued to an app is for that app's
		// resource servers (userinfo, introspection, forward-auth), never
		// for Gatehouse's own account and admin API.
		return Principal{}, ErrInvalidToken
	}
	if err := s.Revoker.Check(claims.SessionID, claims.Subject, claims.IssuedAt); err != nil {
		if errors.Is(err, revoke.ErrRevoked) {
			return Principal{}, ErrInvalidToken
		}
		return Principal{}, fmt.Errorf("revocation check: %w", err)
	}
	return Principal{UserID: claims.Subject, SessionID: claims.SessionID, Role: claims.Role, IssuedAt: claims.IssuedAt}, nil
}

// SessionFromRefresh resolves a refresh token presented to logout to its
// session. Only the current token, or its predecessor within the grace
// window, identifies the session; anything else revokes nothing.
func (s *Service) SessionFromRefresh(ctx context.Context, raw string) (gatehouse.Session, error) {
	return s.sessionFromRefresh(ctx, s.RefreshCodec, raw)
}

func (s *Service) sessionFromRefresh(ctx context.Context, codec *token.RefreshCodec, raw string) (gatehouse.Session, error) {
	sid, gen, err := codec.Decode(raw)
	if err != nil {
		return gatehouse.Session{}, ErrInvalidRefresh
	}
	sess, err := s.Store.SessionByID(ctx, sid)
	if errors.Is(err, gatehouse.ErrNotFound) {
		return gatehouse.Session{}, ErrInvalidRefresh
	}
	if err != nil {
		return gatehouse.Session{}, fmt.Errorf("logout: %w", err)
	}
	now := s.now()
	current := gen == sess.Gen || (gen+1 == sess.Gen && now.Sub(sess.RotatedAt) <= s.cfg.ReuseGrace)
	// An ended session's token identifies nothing: else a stolen token of
	// a session already revoked would log its user out everywhere, again
	// and again.
	live := !sess.Revoked() && now.Before(sess.ExpiresAt) && sess.LastUsedAt.After(now.Add(-s.cfg.IdleTTL))
	if !current || !live {
		return gatehouse.Session{}, ErrInvalidRefresh
	}
	return sess, nil
}

// Logout ends the session sid of user userID (scope local), every other
// session of the user (others), or all of them (global).
func (s *Service) Logout(ctx context.Context, userID, sid, scope string) error {
	now := s.now()
	var err error
	switch scope {
	case "", ScopeLocal:
		scope = ScopeLocal
		err = s.revokeSession(ctx, sid, ReasonLogout, now)
		if errors.Is(err, gatehouse.ErrNotFound) {
			return nil // already ended: logout is idempotent
		}
	case ScopeOthers:
		err = s.revokeUserSessions(ctx, userID, sid, ReasonLogout, now)
	case ScopeGlobal:
		err = s.revokeUserSessions(ctx, userID, "", ReasonLogout, now)
	default:
		return invalid("scope", "must be local, others or global")
	}
	if err == nil {
		s.recordAudit(ctx, audit.Event{Type: audit.TypeLogout, UserID: userID, SessionID: sid,
			Detail: audit.Detail{audit.KeyScope: scope}})
	}
	return err
}

// Sessions lists the live sessions of a user.
func (s *Service) Sessions(ctx context.Context, userID string) ([]gatehouse.Session, error) {
	now := s.now()
	list, err := s.Store.ListSessions(ctx, userID, now, now.Add(-s.cfg.IdleTTL))
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return list, nil
}

// EndOwnSession ends one of the caller's sessions; another user's session
// is reported as not found so that ids cannot be probed.
func (s *Service) EndOwnSession(ctx context.Context, p Principal, sid string) error {
	sess, err := s.Store.SessionByID(ctx, sid)
	if err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	if sess.UserID != p.UserID || sess.Revoked() {
		return gatehouse.ErrNotFound
	}
	if err := s.revokeSession(ctx, sid, ReasonLogout, s.now()); err != nil {
		return err
	}
	s.recordAudit(ctx, audit.Event{Type: audit.TypeLogout, UserID: p.UserID, SessionID: p.SessionID,
		Detail: audit.Detail{audit.KeyScope: "session", audit.KeyTargetSessionID: sid}})
	return nil
}

// Me returns the caller's user.
func (s *Service) Me(ctx context.Context, p Principal) (gatehouse.User, error) {
	readAt := s.Now()
	if u, ok := s.users.get(p.UserID, p.IssuedAt, readAt); ok {
		return u, nil
	}
	u, err := s.Store.UserByID(ctx, p.UserID)
	if errors.Is(err, gatehouse.ErrNotFound) {
		return gatehouse.User{}, ErrInvalidToken
	}
	if err != nil {
		return gatehouse.User{}, fmt.Errorf("me: %w", err)
	}
	// Read with the user and cached with it, so that /auth/me costs no
	// second query when cached and keeps answering from the cache while
	// the database is away (fail-open instances).
	if u.Passkeys, err = s.PasskeyCount(ctx, u.ID); err != nil {
		return gatehouse.User{}, fmt.Errorf("me: %w", err)
	}
	s.users.put(u, readAt, s.Now())
	return u, nil
}

func (s *Service) revokeSession(ctx context.Context, sid, reason string, now time.Time) error {
	// A revocation must not be rolled back because the client hung up
	// (a thief's replay on a flaky connection, a logout tab closed).
	ctx, cancel := detach(ctx)
	defer cancel()
	exp := s.revocationExpiry(now)
	if err := s.Store.RevokeSession(ctx, sid, reason, now, exp); err != nil {
		return fmt.Errorf("revoke session: %w", err)
	}
	s.Revoker.Record(ctx, gatehouse.Revocation{Kind: gatehouse.RevokeSession, Subject: sid, At: now, ExpiresAt: exp})
	s.Observer.Revoked(reason, 1)
	return nil
}

func (s *Service) revokeUserSessions(ctx context.Context, userID, keep, reason string, now time.Time) error {
	ctx, cancel := detach(ctx)
	defer cancel()
	exp := s.revocationExpiry(now)
	ids, err := s.Store.RevokeUserSessions(ctx, userID, keep, reason, now, exp)
	if err != nil {
		return fmt.Errorf("revoke sessions: %w", err)
	}
	revs := make([]gatehouse.Revocation, len(ids))
	for i, id := range ids {
		revs[i] = gatehouse.Revocation{Kind: gatehouse.RevokeSession, Subject: id, At: now, ExpiresAt: exp}
	}
	s.Revoker.Record(ctx, revs...)
	s.Observer.Revoked(reason, len(ids))
	return nil
}

// SessionExpiry is when a session ends if nothing else happens: the
// earlier of idle expiry and absolute expiry.
func (s *Service) SessionExpiry(sess gatehouse.Session) time.Time {
	idle := sess.LastUsedAt.Add(s.cfg.IdleTTL)
	if sess.ExpiresAt.Before(idle) {
		return sess.ExpiresAt
	}
	return idle
}
