package httpapi

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/auth"
)

type userJSON struct {
	ID            string `json:"id"`
	Email         string `json:"email"`
	Name          string `json:"name"`
	Role          string `json:"role"`
	EmailVerified bool   `json:"email_verified"`
	CreatedAt     string `json:"created_at"`
	Disabled      *bool  `json:"disabled,omitempty"`
	MFA           *bool  `json:"mfa,omitempty"` // admin views: has a second factor
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func toUserJSON(u gatehouse.User, admin bool) userJSON {
	j := userJSON{ID: u.ID, Email: u.Email, Name: u.Name, Role: string(u.Role), EmailVerified: u.EmailVerified, CreatedAt: rfc3339(u.CreatedAt)}
	if admin {
		d, m := u.Disabled, u.TOTPEnabled
		j.Disabled, j.MFA = &d, &m
	}
	return j
}

type sessionJSON struct {
	ID         string `json:"id"`
	CreatedAt  string `json:"created_at"`
	LastUsedAt string `json:"last_used_at"`
	ExpiresAt  string `json:"expires_at"`
	UserAgent  string `json:"user_agent"`
	IP         string `json:"ip"`
	Current    *bool  `json:"current,omitempty"`
	// ClientID names the app a session was authorized for (OAuth).
	ClientID string `json:"client_id,omitempty"`
}

func (s *Server) toSessionsJSON(list []gatehouse.Session, currentID string, withCurrent bool) []sessionJSON {
	out := make([]sessionJSON, 0, len(list))
	for _, sess := range list {
		j := sessionJSON{
			ID: sess.ID, CreatedAt: rfc3339(sess.CreatedAt), LastUsedAt: rfc3339(sess.LastUsedAt),
			ExpiresAt: rfc3339(s.auth.SessionExpiry(sess)), UserAgent: sess.UserAgent, IP: sess.IP,
			ClientID: sess.ClientID,
		}
		if withCurrent {
			c := sess.ID == currentID
			j.Current = &c
		}
		out = append(out, j)
	}
	return out
}

type tokenResponse struct {
	TokenType    string   `json:"token_type"`
	AccessToken  string   `json:"access_token"`
	ExpiresIn    int      `json:"expires_in"`
	SessionID    string   `json:"session_id"`
	User         userJSON `json:"user"`
	RefreshToken string   `json:"refresh_token,omitempty"`
	// CSRFToken repeats the __Host-csrf_token cookie in cookie mode, for
	// pages on another origin (an allowed one) that cannot read that cookie.
	CSRFToken string `json:"csrf_token,omitempty"`
}

// writeGrant answers with a token response, delivering the refresh token
// the way it came: by cookie (with the CSRF cookie) or in the body.
func (s *Server) writeGrant(w http.ResponseWriter, status int, g auth.Grant, transport gatehouse.Transport) {
	resp := tokenResponse{
		TokenType: "Bearer", AccessToken: g.AccessToken, ExpiresIn: int(g.ExpiresIn.Seconds()),
		SessionID: g.Session.ID, User: toUserJSON(g.User, false),
	}
	if transport == gatehouse.TransportBody {
		resp.RefreshToken = g.RefreshToken
	} else {
		setSessionCookies(w, s.cfg.CSRFKey, g.Session.ID, g.RefreshToken, g.RefreshExpiresAt, time.Now())
		resp.CSRFToken = csrfToken(s.cfg.CSRFKey, g.Session.ID)
	}
	writeJSON(w, status, resp)
}

func (s *Server) client(r *http.Request, transport gatehouse.Transport) auth.Client {
	return auth.Client{IP: clientIP(r, s.cfg.TrustedProxies), UserAgent: r.UserAgent(), Transport: transport}
}

func parseTransport(v string) (gatehouse.Transport, error) {
	switch v {
	case "", "cookie":
		return gatehouse.TransportCookie, nil
	case "body":
		return gatehouse.TransportBody, nil
	}
	return "", invalidField("token_transport", `must be "cookie" or "body"`)
}

func invalidField(field, message string) error {
	return &auth.ValidationError{Fields: []auth.FieldError{{Field: field, Message: message}}}
}

type signupRequest struct {
	Email          string `json:"email"`
	Password       string `json:"password"`
	Name           string `json:"name"`
	TokenTransport string `json:"token_transport"`
}

func (s *Server) signup(w http.ResponseWriter, r *http.Request) error {
	var req signupRequest
	if _, err := readBody(r, &req, false); err != nil {
		return err
	}
	transport, err := parseTransport(req.TokenTransport)
	if err != nil {
		return err
	}
	g, err := s.auth.Signup(r.Context(), auth.SignupInput{Email: req.Email, Password: req.Password, Name: req.Name}, s.client(r, transport))
	if err != nil {
		return err
	}
	s.writeGrant(w, http.StatusCreated, g, transport)
	return nil
}

type loginRequest struct {
	Email          string `json:"email"`
	Password       string `json:"password"`
	TokenTransport string `json:"token_transport"`
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	var req loginRequest
	if _, err := readBody(r, &req, false); err != nil {
		return err
	}
	transport, err := parseTransport(req.TokenTransport)
	if err != nil {
		return err
	}
	var fields []auth.FieldError
	if req.Email == "" {
		fields = append(fields, auth.FieldError{Field: "email", Message: "is required"})
	}
	if req.Password == "" {
		fields = append(fields, auth.FieldError{Field: "password", Message: "is required"})
	}
	if len(fields) > 0 {
		return &auth.ValidationError{Fields: fields}
	}
	g, err := s.auth.Login(r.Context(), auth.LoginInput{Email: req.Email, Password: req.Password}, s.client(r, transport))
	if err != nil {
		return err
	}
	s.writeGrant(w, http.StatusOK, g, transport)
	return nil
}

type refreshRequest struct {
	RefreshToken *string `json:"refresh_token"`
}

// presentedRefresh finds the refresh token of a refresh or logout request:
// in the body (body mode) or in the cookie (cookie mode, which must pass the
// CSRF check). ok is false when there is none.
func (s *Server) presentedRefresh(r *http.Request) (raw string, transport gatehouse.Transport, ok bool, err error) {
	var req refreshRequest
	if _, err := readBody(r, &req, true); err != nil {
		return "", "", false, err
	}
	if req.RefreshToken != nil {
		return *req.RefreshToken, gatehouse.TransportBody, true, nil
	}
	raw, present, err := s.refreshFromCookies(r)
	if err != nil || !present {
		return "", "", false, err
	}
	return raw, gatehouse.TransportCookie, true, nil
}

func (s *Server) refresh(w http.ResponseWriter, r *http.Request) error {
	raw, transport, ok, err := s.presentedRefresh(r)
	if err != nil {
		return err
	}
	if !ok {
		return auth.ErrInvalidRefresh
	}
	g, err := s.auth.Refresh(r.Context(), raw, s.client(r, transport))
	if err != nil {
		if transport == gatehouse.TransportCookie && (errors.Is(err, auth.ErrInvalidRefresh) || errors.Is(err, auth.ErrRefreshReused)) {
			// A dead cookie is useless to the browser; drop it.
			clearSessionCookies(w)
		}
		return err
	}
	s.writeGrant(w, http.StatusOK, g, transport)
	return nil
}

// csrfState answers GET /auth/csrf with the CSRF token of the browser's
// session: {"csrf_token":"..."}, or {"csrf_token":null} when the request
// carries no CSRF cookie bound to one of its refresh cookies. A page on
// another allowed origin (app.example.com beside auth.example.com) cannot
// read this host's __Host-csrf_token cookie, so after a reload it asks
// here. CORS lets only allowed origins read the answer; requests from any
// other origin, or from a same-site or cross-site context without Origin,
// are refused outright, so the token never reaches a page that could not
// already send credentialed requests here.
func (s *Server) csrfState(w http.ResponseWriter, r *http.Request) error {
	origin := r.Header.Get("Origin")
	if ok, reason := s.sameOriginOrAllowed(r, origin, origin != "" && s.originAllowed(origin)); !ok {
		s.logger.Debug("csrf refused", "reason", reason, "path", r.URL.Path)
		return errCSRF
	}
	w.Header().Set("Cache-Control", "no-store")
	// Of several cookies (one may be planted by a sibling subdomain), the
	// CSRF cookie bound to the session of one of the refresh cookies.
	var token *string
	for _, c := range r.CookiesNamed(csrfCookie) {
		if c.Value == "" || len(c.Value) > 128 {
			continue
		}
		for _, rc := range r.CookiesNamed(refreshCookie) {
			if boundTo(s.cfg.CSRFKey, c.Value, rc.Value) {
				v := c.Value
				token = &v
				break
			}
		}
		if token != nil {
			break
		}
	}
	writeJSON(w, http.StatusOK, map[string]*string{"csrf_token": token})
	return nil
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	scope := r.URL.Query().Get("scope")
	switch scope {
	case "", auth.ScopeLocal, auth.ScopeOthers, auth.ScopeGlobal:
	default:
		return invalidField("scope", "must be local, others or global")
	}
	// A Bearer token identifies the session; failing that, a refresh
	// token does, so a native app whose access token has expired can still
	// log out with its refresh token.
	var userID, sid string
	p, bearerErr := s.authenticate(r)
	if bearerErr == nil {
		userID, sid = p.UserID, p.SessionID
		// Check any body the same way as other endpoints.
		if _, err := readBody(r, &refreshRequest{}, true); err != nil {
			return err
		}
	} else {
		if !errors.Is(bearerErr, errNoCredentials) && !errors.Is(bearerErr, auth.ErrInvalidToken) {
			return bearerErr // e.g. revocation state unavailable: 503
		}
		raw, _, ok, err := s.presentedRefresh(r)
		if err != nil {
			return err
		}
		if !ok {
			return bearerErr
		}
		sess, err := s.auth.SessionFromRefresh(r.Context(), raw)
		if err != nil {
			if errors.Is(err, auth.ErrInvalidRefresh) {
				clearSessionCookies(w) // a dead cookie; a 503 keeps it
			}
			return err
		}
		userID, sid = sess.UserID, sess.ID
	}
	if err := s.auth.Logout(r.Context(), userID, sid, scope); err != nil {
		return err
	}
	if scope != auth.ScopeOthers {
		// "others" keeps the caller's session, and so its cookies.
		clearSessionCookies(w)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// authenticate verifies the Bearer token of a request.
func (s *Server) authenticate(r *http.Request) (auth.Principal, error) {
	// Only the Authorization header is read: RFC 6750 also allows tokens
	// in URLs, which leak into logs; Gatehouse never accepts them, so an
	// ?access_token= alone is "no credentials", and beside a header it is
	// a second method of presenting a token, which RFC 6750 forbids.
	if credentialsInURL(r) {
		return auth.Principal{}, errCredentialsInURL
	}
	tok, present := bearerToken(r)
	if !present {
		return auth.Principal{}, errNoCredentials
	}
	if r.URL.RawQuery != "" && r.URL.Query().Has("access_token") {
		return auth.Principal{}, auth.ErrInvalidToken
	}
	if tok == "" {
		return auth.Principal{}, auth.ErrInvalidToken
	}
	p, err := s.auth.Authenticate(r.Context(), tok)
	if err == nil {
		noteActor(r, p)
	}
	return p, err
}

func (s *Server) authenticateAdmin(r *http.Request) (auth.Principal, error) {
	p, err := s.authenticate(r)
	if err != nil {
		return p, err
	}
	return p, auth.RequireAdmin(p)
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticateAny(r)
	if err != nil {
		return err
	}
	u, err := s.auth.Me(r.Context(), p)
	if err != nil {
		return err
	}
	type mfaJSON struct {
		TOTP     bool `json:"totp"`
		Passkeys int  `json:"passkeys"`
	}
	writeJSON(w, http.StatusOK, struct {
		User userJSON `json:"user"`
		MFA  mfaJSON  `json:"mfa"`
	}{toUserJSON(u, false), mfaJSON{TOTP: u.TOTPEnabled, Passkeys: u.Passkeys}})
	return nil
}

func (s *Server) sessions(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	list, err := s.auth.Sessions(r.Context(), p.UserID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": s.toSessionsJSON(list, p.SessionID, true)})
	return nil
}

func (s *Server) deleteSession(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	if _, err := readBody(r, &struct{}{}, true); err != nil {
		return err
	}
	if err := s.auth.EndOwnSession(r.Context(), p, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type passwordRequest struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

func (s *Server) changePassword(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	var req passwordRequest
	if _, err := readBody(r, &req, false); err != nil {
		return err
	}
	if err := s.auth.ChangePassword(r.Context(), p, req.CurrentPassword, req.NewPassword); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// The id shapes Gatehouse issues (UUIDs for users, 128 random bits in
// base64url for sessions), so a malformed pagination cursor is a 422
// rather than an empty page.
var (
	userIDPattern    = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	sessionIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)
)

const (
	defaultPageSize = 50
	maxPageSize     = 200
)

// pageParams reads and checks the limit and after query parameters.
func pageParams(r *http.Request, idPattern *regexp.Regexp, idKind string) (limit int, after string, err error) {
	q := r.URL.Query()
	limit = defaultPageSize
	var fields []auth.FieldError
	if v := q.Get("limit"); q.Has("limit") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize || len(q["limit"]) > 1 {
			fields = append(fields, auth.FieldError{Field: "limit", Message: "must be one integer from 1 to 200"})
		}
		limit = n
	}
	after = q.Get("after")
	if q.Has("after") && (!idPattern.MatchString(after) || len(q["after"]) > 1) {
		fields = append(fields, auth.FieldError{Field: "after", Message: "must be a " + idKind + " id"})
	}
	if len(fields) > 0 {
		return 0, "", &auth.ValidationError{Fields: fields}
	}
	return limit, after, nil
}

func (s *Server) adminListUsers(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.authenticateAdmin(r); err != nil {
		return err
	}
	limit, after, err := pageParams(r, userIDPattern, "user")
	if err != nil {
		return err
	}
	// One extra row tells whether there is a next page.
	users, err := s.auth.ListUsers(r.Context(), after, limit+1)
	if err != nil {
		return err
	}
	var next *string
	if len(users) > limit {
		users = users[:limit]
		id := users[limit-1].ID
		next = &id
	}
	out := make([]userJSON, len(users))
	for i, u := range users {
		out[i] = toUserJSON(u, true)
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out, "next": next})
	return nil
}

func (s *Server) adminUserSessions(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.authenticateAdmin(r); err != nil {
		return err
	}
	limit, after, err := pageParams(r, sessionIDPattern, "session")
	if err != nil {
		return err
	}
	list, err := s.auth.UserSessions(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	// A user's live sessions are few (one per device), so they are paged
	// in memory, in the store's order (newest first).
	if after != "" {
		i := slices.IndexFunc(list, func(sess gatehouse.Session) bool { return sess.ID == after })
		if i < 0 {
			// The cursor's session has ended since: an empty page rather
			// than a restart, so that a paging client cannot loop.
			list = nil
		} else {
			list = list[i+1:]
		}
	}
	var next *string
	if len(list) > limit {
		list = list[:limit]
		id := list[limit-1].ID
		next = &id
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": s.toSessionsJSON(list, "", false), "next": next})
	return nil
}

type updateUserRequest struct {
	Role     *string `json:"role"`
	Disabled *bool   `json:"disabled"`
}

func (s *Server) adminUpdateUser(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.authenticateAdmin(r); err != nil {
		return err
	}
	var req updateUserRequest
	if _, err := readBody(r, &req, false); err != nil {
		return err
	}
	var role *gatehouse.Role
	if req.Role != nil {
		rl := gatehouse.Role(*req.Role)
		role = &rl
	}
	u, err := s.auth.UpdateUser(r.Context(), r.PathValue("id"), role, req.Disabled)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": toUserJSON(u, true)})
	return nil
}

func (s *Server) adminDeleteSession(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.authenticateAdmin(r); err != nil {
		return err
	}
	if _, err := readBody(r, &struct{}{}, true); err != nil {
		return err
	}
	if err := s.auth.AdminEndSession(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) adminLogoutUser(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.authenticateAdmin(r); err != nil {
		return err
	}
	if _, err := readBody(r, &struct{}{}, true); err != nil {
		return err
	}
	if err := s.auth.AdminLogoutUser(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) jwksHandler(w http.ResponseWriter, r *http.Request) error {
	body, err := s.jwks(time.Now())
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=60")
	_, _ = w.Write(body)
	return nil
}

func (s *Server) openIDConfig(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "public, max-age=300")
	doc := map[string]any{
		"issuer":   s.cfg.Issuer,
		"jwks_uri": s.cfg.Issuer + "/.well-known/jwks.json",
	}
	if s.oauth != nil {
		for k, v := range s.oauth.Discovery {
			doc[k] = v
		}
	}
	writeJSON(w, http.StatusOK, doc)
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.ready(ctx); err != nil {
		// Ready names the failing dependencies in fixed words; their
		// driver errors stay in the logs.
		return &requestError{http.StatusServiceUnavailable, "unavailable", "Not ready: " + err.Error() + "."}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}
