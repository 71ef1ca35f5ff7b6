package httpapi

import (
	"mime"
	"net/http"
	"strings"

	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/feed"
)

var errInsufficientScope = &requestError{http.StatusForbidden, "insufficient_scope",
	"This credential lacks the scope this endpoint needs."}

// revocations serves GET /auth/revocations: one JSON page after the cursor,
// or with Accept: text/event-stream a stream that stays open.
func (s *Server) revocations(w http.ResponseWriter, r *http.Request) error {
	if s.feed == nil { // a server built without one (tests, tools)
		return &requestError{http.StatusNotFound, "not_configured", "The revocation feed is not configured."}
	}
	p, err := s.authenticateMachine(r)
	if err != nil {
		return err
	}
	if !p.HasScope(auth.ScopeRevocationsRead) {
		// RFC 6750 section 3.1: say which scope would do.
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="`+auth.ScopeRevocationsRead+`"`)
		return errInsufficientScope
	}
	stream := wantsEventStream(r)
	after, err := feedCursor(r, stream)
	if err != nil {
		return err
	}
	if stream {
		return s.feed.Stream(w, r, after)
	}
	page, err := s.feed.Page(r.Context(), after)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// feedCursor reads the cursor: the Last-Event-ID of a reconnecting stream
// wins over the after of its URL (an EventSource reconnects to the URL it
// was opened with), and neither means from the start of what matters.
func feedCursor(r *http.Request, stream bool) (int64, error) {
	q := r.URL.Query()
	if len(q["after"]) > 1 {
		return 0, invalidField("after", "must be given once")
	}
	field, raw, given := "after", q.Get("after"), q.Has("after")
	if ids := r.Header.Values("Last-Event-ID"); stream && len(ids) > 0 && ids[0] != "" {
		if len(ids) > 1 {
			return 0, invalidField("Last-Event-ID", "must be given once")
		}
		field, raw, given = "Last-Event-ID", ids[0], true
	}
	if !given {
		return 0, nil
	}
	n, err := feed.ParseCursor(raw)
	if err != nil {
		return 0, invalidField(field, "must be a cursor returned by this endpoint")
	}
	return n, nil
}

// wantsEventStream reports whether the client asked for text/event-stream.
func wantsEventStream(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err == nil && mt == "text/event-stream" {
				return true
			}
		}
	}
	return false
}
