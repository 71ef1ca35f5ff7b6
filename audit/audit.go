// Package audit records Gatehouse's security events (API.md: sign-ins,
// failed sign-ins of existing accounts, changes of password, email, second
// factors and passkeys, refresh-token reuse, logouts, admin actions). Each
// event is appended to the store's audit log and written as one JSON log
// line with the message "audit".
//
// Recording never fails the request that caused it: a store error is
// logged and counted, and the request carries on. No secret can reach an
// event: its detail admits only the whitelisted keys below, each with a
// value checked against what that key may hold (a fixed word, an id), so a
// password, token or code handed to it by mistake is dropped, not stored.
package audit

import (
	"context"
	"log/slog"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse"
)

// Event types (API.md part 2, "Machines and resource servers").
const (
	TypeSignup           = "signup"
	TypeLogin            = "login"
	TypeMFA              = "mfa"
	TypePasskeyAdded     = "passkey_added"
	TypePasskeyRemoved   = "passkey_removed"
	TypePasswordChanged  = "password_changed"
	TypePasswordReset    = "password_reset"
	TypeEmailVerified    = "email_verified"
	TypeEmailChanged     = "email_changed"
	TypeRefreshReuse     = "refresh_reuse"
	TypeLogout           = "logout"
	TypeAPIKeyCreated    = "api_key_created"
	TypeAPIKeyRevoked    = "api_key_revoked"
	TypeIdentityLinked   = "identity_linked"
	TypeIdentityUnlinked = "identity_unlinked"
	TypeAdmin            = "admin"
)

// Types lists every event type, in API.md's order.
var Types = []string{
	TypeSignup, TypeLogin, TypeMFA, TypePasskeyAdded, TypePasskeyRemoved, TypePasswordChanged,
	TypePasswordReset, TypeEmailVerified, TypeEmailChanged, TypeRefreshReuse, TypeLogout,
	TypeAPIKeyCreated, TypeAPIKeyRevoked, TypeIdentityLinked, TypeIdentityUnlinked, TypeAdmin,
}

// ValidType reports whether t is one of Types.
func ValidType(t string) bool { return slices.Contains(Types, t) }

// Outcomes.
const (
	Success = "success"
	Failure = "failure"
)

// Detail keys: the only keys an event's detail may carry.
const (
	// KeyMethod is how the user proved who they are: amr words ("pwd",
	// "otp mfa", ...) or second-factor names ("totp", "passkey").
	KeyMethod = "method"
	// KeyReason says why something failed (wrong_password, disabled, ...).
	KeyReason = "reason"
	// KeyScope is a logout's reach: local, others, global, or session (one
	// session ended from the session list).
	KeyScope = "scope"
	// KeyAction says what an admin or a second-factor change did.
	KeyAction = "action"
	// KeyRole is the role an admin gave.
	KeyRole = "role"
	// KeyAdminID is the admin who acted.
	KeyAdminID = "admin_id"
	// KeyTargetSessionID is the session an action ended.
	KeyTargetSessionID = "target_session_id"
	// KeyPasskeyID, KeyAPIKeyID and KeyIdentityID name what was added or
	// removed, by Gatehouse's own id (never a key or credential).
	KeyPasskeyID  = "passkey_id"
	KeyAPIKeyID   = "api_key_id"
	KeyIdentityID = "identity_id"
	// KeyProvider is an external identity provider's configured name.
	KeyProvider = "provider"
	// KeyClientID is the client_id of an OAuth client (never its secret).
	KeyClientID = "client_id"
)

// Failure reasons (KeyReason).
const (
	ReasonWrongPassword    = "wrong_password"
	ReasonNoPassword       = "no_password"
	ReasonDisabled         = "disabled"
	ReasonEmailNotVerified = "email_not_verified"
	ReasonMFAFailed        = "mfa_failed"
	ReasonWrongCode        = "wrong_code"
)

// Actions (KeyAction) of admin and mfa events.
const (
	ActionRoleChange    = "role_change"
	ActionDisable       = "disable"
	ActionEnable        = "enable"
	ActionEndSession    = "end_session"
	ActionLogoutUser    = "logout_user"
	ActionMFAReset      = "mfa_reset"
	ActionAPIKeyRevoke  = "api_key_revoke"
	ActionTOTPEnabled   = "totp_enabled"
	ActionTOTPDisabled  = "totp_disabled"
	ActionRecoveryCodes = "recovery_codes_regenerated"
	// OAuth clients registered and removed (admin events).
	ActionOAuthClientCreated = "oauth_client_created"
	ActionOAuthClientRemoved = "oauth_client_removed"
)

// Detail is an event's map of non-secret facts, by the Key* constants.
type Detail map[string]string

var (
	idValue   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	nameValue = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)
)

func oneOf(words ...string) func(string) bool {
	return func(v string) bool { return slices.Contains(words, v) }
}

// methodWords are the words a method may be made of: the amr values of
// API.md and the second-factor names.
var methodWords = []string{"pwd", "otp", "recovery", "hwk", "email", "fed", "mfa", "totp", "recovery_code", "passkey"}

// allowed maps each whitelisted key to the check its values must pass.
var allowed = map[string]func(string) bool{
	KeyMethod: func(v string) bool {
		words := strings.Split(v, " ")
		if len(words) > 8 {
			return false
		}
		for _, w := range words {
			if !slices.Contains(methodWords, w) {
				return false
			}
		}
		return true
	},
	KeyReason: oneOf(ReasonWrongPassword, ReasonNoPassword, ReasonDisabled, ReasonEmailNotVerified, ReasonMFAFailed, ReasonWrongCode),
	KeyScope:  oneOf("local", "others", "global", "session"),
	KeyAction: oneOf(ActionRoleChange, ActionDisable, ActionEnable, ActionEndSession, ActionLogoutUser, ActionMFAReset,
		ActionAPIKeyRevoke, ActionTOTPEnabled, ActionTOTPDisabled, ActionRecoveryCodes,
		ActionOAuthClientCreated, ActionOAuthClientRemoved),
	KeyRole:            oneOf(string(gatehouse.RoleUser), string(gatehouse.RoleAdmin)),
	KeyAdminID:         idValue.MatchString,
	KeyTargetSessionID: idValue.MatchString,
	KeyPasskeyID:       idValue.MatchString,
	KeyAPIKeyID:        idValue.MatchString,
	KeyIdentityID:      idValue.MatchString,
	KeyProvider:        nameValue.MatchString,
	KeyClientID:        idValue.MatchString,
}

// Event is one security event as the service reports it. IP and UserAgent
// may be left empty: Record fills them from the request (WithRequest).
type Event struct {
	Type      string
	UserID    string
	SessionID string
	IP        string
	UserAgent string
	Outcome   string // Success (the default) or Failure
	Detail    Detail
}

// Observer counts what the recorder does, for metrics.
type Observer interface {
	AuditRecorded(eventType string)
	AuditFailed()
}

// Recorder stores events and logs them. A nil *Recorder records nothing,
// so tools that run the service without a log need no stand-in.
type Recorder struct {
	log      gatehouse.AuditLog
	logger   *slog.Logger
	observer Observer
	now      func() time.Time
}

// NewRecorder returns a Recorder appending to log. observer may be nil.
func NewRecorder(log gatehouse.AuditLog, logger *slog.Logger, observer Observer) *Recorder {
	return &Recorder{log: log, logger: logger, observer: observer, now: time.Now}
}

// writeTimeout bounds the append: an audit write outlives the client's
// request (a hung-up attacker must not erase their trace) but not a stuck
// database.
const writeTimeout = 5 * time.Second

// maxUserAgent matches what sessions keep of a user agent.
const maxUserAgent = 512

// Record stores e and writes its log line. It never fails the caller: an
// event it cannot store is logged and counted.
func (r *Recorder) Record(ctx context.Context, e Event) {
	if r == nil {
		return
	}
	if !ValidType(e.Type) {
		r.logger.Error("audit event of unknown type not recorded", "type", e.Type)
		r.failed()
		return
	}
	if req := RequestFrom(ctx); req != nil {
		if e.IP == "" {
			e.IP = req.IP
		}
		if e.UserAgent == "" {
			e.UserAgent = req.UserAgent
		}
	}
	if e.Outcome != Failure {
		e.Outcome = Success
	}
	ev := gatehouse.AuditEvent{
		Time:      r.now().UTC().Truncate(time.Microsecond),
		Type:      e.Type,
		UserID:    cleanID(e.UserID),
		SessionID: cleanID(e.SessionID),
		IP:        cleanIP(e.IP),
		UserAgent: cleanText(e.UserAgent, maxUserAgent),
		Outcome:   e.Outcome,
		Detail:    r.cleanDetail(e.Type, e.Detail),
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	id, err := r.log.AppendAudit(wctx, ev)
	if err != nil {
		r.logger.Error("audit event not stored", "type", ev.Type, "user_id", ev.UserID, "err", err)
		r.failed()
	} else if r.observer != nil {
		r.observer.AuditRecorded(ev.Type)
	}
	ev.ID = id
	r.logger.LogAttrs(ctx, slog.LevelInfo, "audit", Attrs(ev)...)
}

// Attrs are the log attributes of a stored event (id 0: not stored).
func Attrs(ev gatehouse.AuditEvent) []slog.Attr {
	attrs := []slog.Attr{
		slog.Int64("id", ev.ID),
		slog.String("type", ev.Type),
		slog.String("outcome", ev.Outcome),
		slog.String("user_id", ev.UserID),
		slog.String("session_id", ev.SessionID),
		slog.String("ip", ev.IP),
		slog.String("user_agent", ev.UserAgent),
	}
	if len(ev.Detail) > 0 {
		keys := make([]string, 0, len(ev.Detail))
		for k := range ev.Detail {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		detail := make([]any, 0, len(keys))
		for _, k := range keys {
			detail = append(detail, slog.String(k, ev.Detail[k]))
		}
		attrs = append(attrs, slog.Group("detail", detail...))
	}
	return attrs
}

func (r *Recorder) failed() {
	if r.observer != nil {
		r.observer.AuditFailed()
	}
}

// cleanDetail keeps the whitelisted keys whose values pass their check.
// Anything else is a programming mistake: it is logged by key alone (the
// value may be exactly what must not be written anywhere) and dropped.
func (r *Recorder) cleanDetail(typ string, d Detail) map[string]string {
	if len(d) == 0 {
		return nil
	}
	out := make(map[string]string, len(d))
	for k, v := range d {
		check, ok := allowed[k]
		if !ok || !check(v) {
			r.logger.Error("audit detail dropped: key not allowed or value not of its form", "type", typ, "key", cleanText(k, 32))
			continue
		}
		out[k] = v
	}
	return out
}

// cleanID keeps an id only when it has the shape of Gatehouse's ids.
func cleanID(s string) string {
	if s == "" || idValue.MatchString(s) {
		return s
	}
	return ""
}

// cleanIP keeps an IP address in its canonical form, or nothing.
func cleanIP(s string) string {
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return ""
	}
	return addr.String()
}

// cleanText makes s valid UTF-8 of at most n bytes, cut on a rune boundary.
func cleanText(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// Request is what the HTTP layer knows of the request an event comes
// from: the client's address and user agent, and once a Bearer token is
// verified, who the caller is (the admin of an admin action).
type Request struct {
	IP        string
	UserAgent string
	// ActorID and ActorSessionID are set once the caller is
	// authenticated, by the goroutine serving the request.
	ActorID        string
	ActorSessionID string
}

type requestKey struct{}

// WithRequest returns ctx carrying req.
func WithRequest(ctx context.Context, req *Request) context.Context {
	return context.WithValue(ctx, requestKey{}, req)
}

// RequestFrom returns the request ctx carries, or nil.
func RequestFrom(ctx context.Context) *Request {
	req, _ := ctx.Value(requestKey{}).(*Request)
	return req
}
