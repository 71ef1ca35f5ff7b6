package httpapi

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/audit"
	"github.com/gatehouse/gatehouse/auth"
)

// Handlers of the audit log (API.md part 2): the admin listing and the
// caller's own activity. Both only read: no route changes an event.

type auditEventJSON struct {
	ID        string            `json:"id"`
	Time      string            `json:"time"`
	Type      string            `json:"type"`
	UserID    *string           `json:"user_id"`
	SessionID *string           `json:"session_id"`
	IP        *string           `json:"ip"`
	UserAgent *string           `json:"user_agent"`
	Outcome   string            `json:"outcome"`
	Detail    map[string]string `json:"detail"`
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func toAuditEventsJSON(es []gatehouse.AuditEvent) []auditEventJSON {
	out := make([]auditEventJSON, len(es))
	for i, e := range es {
		detail := e.Detail
		if detail == nil {
			detail = map[string]string{}
		}
		out[i] = auditEventJSON{
			ID: strconv.FormatInt(e.ID, 10), Time: rfc3339(e.Time), Type: e.Type,
			UserID: optional(e.UserID), SessionID: optional(e.SessionID), IP: optional(e.IP),
			UserAgent: optional(e.UserAgent), Outcome: e.Outcome, Detail: detail,
		}
	}
	return out
}

// auditQuery is a checked listing query.
type auditQuery struct {
	userID, typ string
	before      int64
	limit       int
}

// parseAuditQuery reads the query of an audit listing strictly: only the
// parameters in allowed, each at most once and well formed, else 400.
func parseAuditQuery(q url.Values, allowed ...string) (auditQuery, error) {
	aq := auditQuery{limit: defaultPageSize}
	for k, v := range q {
		known := false
		for _, a := range allowed {
			known = known || k == a
		}
		if !known {
			return aq, badRequest("Unknown query parameter " + strconv.Quote(k) + ".")
		}
		if len(v) != 1 {
			return aq, badRequest("The query parameter " + strconv.Quote(k) + " must be given once.")
		}
	}
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > maxPageSize {
			return aq, badRequest("limit must be an integer from 1 to 200.")
		}
		aq.limit = n
	}
	if q.Has("after") {
		n, err := strconv.ParseInt(q.Get("after"), 10, 64)
		if err != nil || n < 1 || strconv.FormatInt(n, 10) != q.Get("after") {
			return aq, badRequest("after must be the id of an event, as the previous page's next gave it.")
		}
		aq.before = n
	}
	if q.Has("type") {
		aq.typ = q.Get("type")
		if !audit.ValidType(aq.typ) {
			return aq, badRequest("type must be one of the audit event types.")
		}
	}
	if q.Has("user_id") {
		aq.userID = q.Get("user_id")
		if !userIDPattern.MatchString(aq.userID) {
			return aq, badRequest("user_id must be a user id.")
		}
	}
	return aq, nil
}

// writeAuditPage answers {"events":[...],"next"}, given one event more
// than the page holds when there is a next page.
func writeAuditPage(w http.ResponseWriter, es []gatehouse.AuditEvent, limit int) {
	var next *string
	if len(es) > limit {
		es = es[:limit]
		id := strconv.FormatInt(es[limit-1].ID, 10)
		next = &id
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"events": toAuditEventsJSON(es), "next": next})
}

func (s *Server) adminAudit(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.authenticateAdmin(r); err != nil {
		return err
	}
	q, err := parseAuditQuery(r.URL.Query(), "user_id", "type", "after", "limit")
	if err != nil {
		return err
	}
	es, err := s.auth.AuditEvents(r.Context(), gatehouse.AuditFilter{UserID: q.userID, Type: q.typ, Before: q.before, Limit: q.limit + 1})
	if err != nil {
		return err
	}
	writeAuditPage(w, es, q.limit)
	return nil
}

func (s *Server) activity(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	q, err := parseAuditQuery(r.URL.Query(), "after", "limit")
	if err != nil {
		return err
	}
	es, err := s.auth.Activity(r.Context(), p, q.before, q.limit+1)
	if err != nil {
		return err
	}
	writeAuditPage(w, es, q.limit)
	return nil
}

// auditRequest is what the audit log learns of a request: the client's
// address and agent now, the authenticated caller later (authenticate).
func (s *Server) auditRequest(r *http.Request) *http.Request {
	return r.WithContext(audit.WithRequest(r.Context(), &audit.Request{
		IP: clientIP(r, s.cfg.TrustedProxies), UserAgent: r.UserAgent(),
	}))
}

// noteActor tells the audit log who the authenticated caller is.
func noteActor(r *http.Request, p auth.Principal) {
	if req := audit.RequestFrom(r.Context()); req != nil {
		req.ActorID, req.ActorSessionID = p.UserID, p.SessionID
	}
}
