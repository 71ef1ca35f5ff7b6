package e2e

// The audit log (API.md part 2, "Machines and resource servers"): every
// flow leaves its event, a failed login of an existing account is a login
// failure while an unknown email leaves no user behind, only admins list
// the log, no endpoint can change it, and no secret reaches a row or an
// audit log line.

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// auditEv is one event as the API answers it.
type auditEv struct {
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

func (e auditEv) String() string {
	s := func(p *string) string {
		if p == nil {
			return "null"
		}
		return *p
	}
	return fmt.Sprintf("#%s %s %s user=%s session=%s ip=%s detail=%v", e.ID, e.Type, e.Outcome, s(e.UserID), s(e.SessionID), s(e.IP), e.Detail)
}

var auditTypes = []string{"signup", "login", "mfa", "passkey_added", "passkey_removed", "password_changed",
	"password_reset", "email_verified", "email_changed", "refresh_reuse", "logout", "api_key_created",
	"api_key_revoked", "identity_linked", "identity_unlinked", "admin"}

// auditPage GETs one page of path (/admin/audit?... or /auth/activity?...)
// and checks the shape of every event.
func auditPage(t *testing.T, s *server, access, path string) ([]auditEv, *string) {
	t.Helper()
	r := s.do(t, "GET", path, nil, bearer(access))
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("%s: Cache-Control %q, want no-store", r.req, cc)
	}
	var body struct {
		Events []auditEv `json:"events"`
		Next   *string   `json:"next"`
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &raw); err != nil || raw["events"] == nil || raw["next"] == nil {
		t.Fatalf("%s: want {\"events\":[...],\"next\":...}", r)
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("%s: %v", r, err)
	}
	prev := int64(0)
	for _, e := range body.Events {
		id, err := strconv.ParseInt(e.ID, 10, 64)
		if err != nil || id <= 0 {
			t.Errorf("%s: event id %q is not a positive number", r.req, e.ID)
		}
		if prev != 0 && id >= prev {
			t.Errorf("%s: ids %d then %d: want newest first", r.req, prev, id)
		}
		prev = id
		if !isRFC3339UTC(e.Time) {
			t.Errorf("%s: event time %q is not RFC 3339 UTC", r.req, e.Time)
		}
		if !slices.Contains(auditTypes, e.Type) {
			t.Errorf("%s: event type %q is not one of API.md's", r.req, e.Type)
		}
		if e.Outcome != "success" && e.Outcome != "failure" {
			t.Errorf("%s: outcome %q", r.req, e.Outcome)
		}
		if e.Detail == nil {
			t.Errorf("%s: event %s has no detail object", r.req, e)
		}
	}
	return body.Events, body.Next
}

// auditAll follows next through every page of path (which has a query).
func auditAll(t *testing.T, s *server, access, path string) []auditEv {
	t.Helper()
	var all []auditEv
	next := ""
	for range 100 {
		p := path
		if next != "" {
			p += "&after=" + url.QueryEscape(next)
		}
		page, n := auditPage(t, s, access, p)
		all = append(all, page...)
		if n == nil {
			return all
		}
		next = *n
	}
	t.Fatalf("%s: more than 100 pages", path)
	return nil
}

// auditFind is the newest event of typ and outcome whose detail has every
// entry of want, or nil.
func auditFind(es []auditEv, typ, outcome string, want map[string]string) *auditEv {
	for i, e := range es {
		if e.Type != typ || e.Outcome != outcome {
			continue
		}
		ok := true
		for k, v := range want {
			ok = ok && e.Detail[k] == v
		}
		if ok {
			return &es[i]
		}
	}
	return nil
}

// auditExpect asserts an event of typ and outcome with want in its detail,
// for user (when not empty), and returns it.
func auditExpect(t *testing.T, es []auditEv, user, typ, outcome string, want map[string]string) *auditEv {
	t.Helper()
	e := auditFind(es, typ, outcome, want)
	if e == nil {
		var have []string
		for _, e := range es {
			have = append(have, e.String())
		}
		t.Errorf("no %s %s event with detail %v; events:\n\t%s", typ, outcome, want, strings.Join(have, "\n\t"))
		return nil
	}
	if user != "" && (e.UserID == nil || *e.UserID != user) {
		t.Errorf("event %s: want user %s", e, user)
	}
	return e
}

// auditRows is every stored audit row, each column as text, one row a line.
func auditRows(t *testing.T, e *hrEnv) []string {
	t.Helper()
	const q = `SELECT CAST(id AS TEXT), CAST(time AS TEXT), type, user_id, session_id, ip, user_agent, outcome, CAST(detail AS TEXT)
		FROM audit_events ORDER BY id`
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if e.backend == "postgres" {
		conn, err := pgx.Connect(ctx, e.db)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer conn.Close(context.Background())
		rows, err := conn.Query(ctx, q)
		if err != nil {
			t.Fatalf("read audit_events: %v", err)
		}
		defer rows.Close()
		return auditRowTexts(t, rows)
	}
	db, err := sql.Open("sqlite", "file:"+e.s.dbPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatalf("open %s: %v", e.s.dbPath, err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		t.Fatalf("read audit_events: %v", err)
	}
	defer rows.Close()
	return auditRowTexts(t, rows)
}

// auditRowTexts reads the nine text columns of each audit row, from pgx
// or database/sql rows alike, as one line per row.
func auditRowTexts(t *testing.T, rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}) []string {
	t.Helper()
	var out []string
	for rows.Next() {
		cols := make([]string, 9)
		dest := make([]any, 9)
		for i := range cols {
			dest[i] = &cols[i]
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatalf("read audit_events: %v", err)
		}
		out = append(out, strings.Join(cols, " | "))
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read audit_events: %v", err)
	}
	return out
}

// auditNoSecrets asserts that no stored audit row and no "audit" log line
// of the server holds any of secrets (label -> value), and that there were
// rows and lines to search.
func auditNoSecrets(t *testing.T, e *hrEnv, secrets map[string]string) {
	t.Helper()
	rows := auditRows(t, e)
	var lines []string
	for _, l := range strings.Split(e.s.stderr.String(), "\n") {
		if strings.Contains(l, `"msg":"audit"`) {
			lines = append(lines, l)
		}
	}
	if len(rows) < 10 || len(lines) < 10 {
		t.Fatalf("only %d audit rows and %d audit log lines: the flows above should have left more", len(rows), len(lines))
	}
	checked := 0
	for label, secret := range secrets {
		if len(secret) < 6 {
			t.Fatalf("secret %s = %q is too short to search for", label, secret)
		}
		checked++
		for _, where := range []struct {
			name  string
			lines []string
		}{{"audit row", rows}, {"audit log line", lines}} {
			for _, l := range where.lines {
				if strings.Contains(l, secret) {
					t.Errorf("%s holds the %s: %s", where.name, label, l)
				}
			}
		}
	}
	t.Logf("searched %d audit rows and %d audit log lines for %d secrets", len(rows), len(lines), checked)
}

// collectTokens adds every token device d has held to secrets.
func collectTokens(secrets map[string]string, label string, d *device) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, tok := range d.history {
		secrets[fmt.Sprintf("%s refresh token %d", label, i)] = tok
		if _, sec, ok := strings.Cut(tok, "."); ok {
			secrets[fmt.Sprintf("%s refresh secret %d", label, i)] = sec
		}
	}
	if d.access != "" {
		secrets[label+" access token"] = d.access
	}
}

// TestAuditFlows runs the password, session, passkey and admin flows on
// each backend and finds each flow's event in the admin listing and the
// user's activity; then it checks access to the log, that no route can
// change it, and that no secret reached it.
func TestAuditFlows(t *testing.T) {
	hrEachBackend(t, func(t *testing.T, backend string) {
		origin := pkPublicURL(t)
		env := hrStart(t, backend, "--reuse-grace", "0s", "--public-url", origin)
		s := env.s
		admin := env.admin(t)
		adminID := admin.user.ID
		secrets := map[string]string{"admin password": admin.password}

		// signup, and login from a second device
		d := s.newUser(t, true)
		uid := d.user.ID
		secrets["password"] = d.password
		d2 := d.another(t, true)

		// a failed login of the account, and of an unknown email
		wrong := "Wrong-" + newPassword()
		secrets["wrong password"] = wrong
		r := s.do(t, "POST", "/auth/login", map[string]any{"email": d.email, "password": wrong})
		expect(t, r, http.StatusUnauthorized, "invalid_credentials")
		unknownPW := newPassword()
		secrets["unknown account's password"] = unknownPW
		r = s.do(t, "POST", "/auth/login", map[string]any{"email": newEmail(), "password": unknownPW})
		expect(t, r, http.StatusUnauthorized, "invalid_credentials")

		// refresh-token reuse (the grace window is off)
		d2.refreshOK(t)
		expect(t, d2.presentRefresh(t, d2.history[0]), http.StatusUnauthorized, "refresh_token_reused")

		// passkey added and removed
		authn := newSoftAuthenticator(origin)
		pkID := pkRegisterFinish(t, s, d.Access(), authn.register(t, pkRegisterBegin(t, s, d.Access())), "Laptop")
		expect(t, s.do(t, "DELETE", "/auth/passkeys/"+pkID, nil, bearer(d.Access())), http.StatusNoContent, "")

		// password change: a wrong current password, then the change
		next := newPassword()
		secrets["new password"] = next
		r = s.do(t, "POST", "/auth/password", map[string]any{"current_password": wrong, "new_password": next}, bearer(d.Access()))
		expect(t, r, http.StatusUnauthorized, "invalid_credentials")
		r = s.do(t, "POST", "/auth/password", map[string]any{"current_password": d.password, "new_password": next}, bearer(d.Access()))
		expect(t, r, http.StatusNoContent, "")
		d.password = next

		// logouts: one session from the list, then this device
		d3 := d.another(t, false)
		expect(t, s.do(t, "DELETE", "/auth/sessions/"+d3.sid, nil, bearer(d.Access())), http.StatusNoContent, "")
		d4 := d.another(t, true)
		expect(t, d4.do(t, "POST", "/auth/logout", nil, bearer(d4.Access())), http.StatusNoContent, "")

		// admin actions
		patch := func(body map[string]any) {
			t.Helper()
			expect(t, s.do(t, "PATCH", "/admin/users/"+uid, body, bearer(admin.Access())), http.StatusOK, "")
		}
		patch(map[string]any{"role": "admin"})
		patch(map[string]any{"role": "user"})
		patch(map[string]any{"disabled": true})
		r = s.do(t, "POST", "/auth/login", map[string]any{"email": d.email, "password": d.password})
		expect(t, r, http.StatusUnauthorized, "invalid_credentials")
		patch(map[string]any{"disabled": false})
		d5 := d.another(t, true)
		expect(t, s.do(t, "DELETE", "/admin/sessions/"+d5.sid, nil, bearer(admin.Access())), http.StatusNoContent, "")
		expect(t, s.do(t, "POST", "/admin/users/"+uid+"/logout", nil, bearer(admin.Access())), http.StatusNoContent, "")
		expect(t, s.do(t, "DELETE", "/admin/users/"+uid+"/mfa", nil, bearer(admin.Access())), http.StatusNoContent, "")
		d6 := d.another(t, true) // signed in again for the activity view

		evs := auditAll(t, s, admin.Access(), "/admin/audit?user_id="+uid+"&limit=3")
		for _, e := range evs {
			if e.UserID == nil || *e.UserID != uid {
				t.Errorf("user_id filter: event %s is not of %s", e, uid)
			}
		}
		auditExpect(t, evs, uid, "signup", "success", map[string]string{"method": "pwd"})
		if e := auditExpect(t, evs, uid, "login", "success", map[string]string{"method": "pwd"}); e != nil {
			if e.SessionID == nil || e.IP == nil || e.UserAgent == nil || !strings.HasPrefix(*e.UserAgent, "e2e-device-") {
				t.Errorf("login event %s: want its session, the client's IP and user agent", e)
			}
		}
		if e := auditExpect(t, evs, uid, "login", "failure", map[string]string{"reason": "wrong_password"}); e != nil && e.SessionID != nil {
			t.Errorf("failed login %s names a session", e)
		}
		auditExpect(t, evs, uid, "login", "failure", map[string]string{"reason": "disabled"})
		if e := auditExpect(t, evs, uid, "refresh_reuse", "failure", nil); e != nil && (e.SessionID == nil || *e.SessionID != d2.sid) {
			t.Errorf("refresh_reuse %s: want session %s", e, d2.sid)
		}
		auditExpect(t, evs, uid, "passkey_added", "success", map[string]string{"passkey_id": pkID})
		auditExpect(t, evs, uid, "passkey_removed", "success", map[string]string{"passkey_id": pkID})
		auditExpect(t, evs, uid, "password_changed", "failure", map[string]string{"reason": "wrong_password"})
		auditExpect(t, evs, uid, "password_changed", "success", nil)
		auditExpect(t, evs, uid, "logout", "success", map[string]string{"scope": "session", "target_session_id": d3.sid})
		auditExpect(t, evs, uid, "logout", "success", map[string]string{"scope": "local"})
		for _, want := range []map[string]string{
			{"action": "role_change", "role": "admin"},
			{"action": "role_change", "role": "user"},
			{"action": "disable"},
			{"action": "enable"},
			{"action": "end_session", "target_session_id": d5.sid},
			{"action": "logout_user"},
			{"action": "mfa_reset"},
		} {
			want["admin_id"] = adminID
			auditExpect(t, evs, uid, "admin", "success", want)
		}

		// An unknown email leaves no event with no user, and every login
		// failure is one of the account's three above.
		logins := auditAll(t, s, admin.Access(), "/admin/audit?type=login&limit=200")
		failures := 0
		for _, e := range logins {
			if e.Type != "login" {
				t.Errorf("type filter: %s", e)
			}
			if e.UserID == nil {
				t.Errorf("login event without a user (the unknown email?): %s", e)
			}
			if e.Outcome == "failure" {
				failures++
			}
		}
		if failures != 2 {
			t.Errorf("%d login failures listed, want 2 (wrong password, disabled)", failures)
		}

		// The user's own activity: their events only, an admin's address,
		// agent and identity left out.
		act := auditAll(t, s, d6.Access(), "/auth/activity?limit=5")
		if len(act) != len(evs) {
			t.Errorf("activity lists %d events, the admin listing %d", len(act), len(evs))
		}
		for _, e := range act {
			if e.UserID == nil || *e.UserID != uid {
				t.Errorf("activity shows an event of someone else: %s", e)
			}
			if e.Type == "admin" && (e.IP != nil || e.UserAgent != nil || e.SessionID != nil || e.Detail["admin_id"] != "") {
				t.Errorf("activity shows an admin's details: %s", e)
			}
		}
		auditExpect(t, act, uid, "password_changed", "success", nil)
		auditExpect(t, act, uid, "admin", "success", map[string]string{"action": "disable"})
		other := s.newUser(t, true)
		if oa, _ := auditPage(t, s, other.Access(), "/auth/activity"); len(oa) != 2 {
			t.Errorf("a new user's activity: %v, want their signup and login only", oa)
		}

		// Admins only; strict queries.
		expect(t, s.do(t, "GET", "/admin/audit", nil, bearer(d6.Access())), http.StatusForbidden, "forbidden")
		expect(t, s.do(t, "GET", "/admin/audit", nil), http.StatusUnauthorized, "")
		expect(t, s.do(t, "GET", "/auth/activity", nil), http.StatusUnauthorized, "")
		for _, q := range []string{"limit=0", "limit=201", "limit=abc", "limit=1&limit=2", "type=bogus", "type=",
			"after=abc", "after=-1", "after=0", "after=01", "user_id=not-a-user", "user_id=", "foo=1"} {
			expect(t, s.do(t, "GET", "/admin/audit?"+q, nil, bearer(admin.Access())), http.StatusBadRequest, "bad_request")
		}
		for _, q := range []string{"limit=0", "after=x", "user_id=" + adminID, "type=login"} {
			expect(t, s.do(t, "GET", "/auth/activity?"+q, nil, bearer(d6.Access())), http.StatusBadRequest, "bad_request")
		}

		// No route changes or removes an event.
		id := evs[0].ID
		for _, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
			for _, p := range []string{"/admin/audit", "/auth/activity"} {
				r := s.do(t, m, p, rawBody(`{"id":"`+id+`","outcome":"success"}`), bearer(admin.Access()), hdr("Content-Type", "application/json"))
				expect(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
			}
			for _, p := range []string{"/admin/audit/" + id, "/auth/activity/" + id, "/admin/audit/events/" + id} {
				r := s.do(t, m, p, rawBody(`{"outcome":"success"}`), bearer(admin.Access()), hdr("Content-Type", "application/json"))
				expect(t, r, http.StatusNotFound, "not_found")
			}
		}
		after := auditAll(t, s, admin.Access(), "/admin/audit?user_id="+uid+"&limit=200")
		if len(after) != len(evs) || after[len(after)-1].ID != evs[len(evs)-1].ID {
			t.Errorf("the log changed under the write attempts: %d events, then %d", len(evs), len(after))
		}

		for label, dv := range map[string]*device{"admin": admin, "d": d, "d2": d2, "d3": d3, "d4": d4, "d5": d5, "d6": d6, "other": other} {
			collectTokens(secrets, label, dv)
		}
		auditNoSecrets(t, env, secrets)
	})
}

// TestAuditMailAndSecondFactors covers the events of the mail flows and of
// second factors, and that none of the one-time secrets they hand out
// (link tokens, codes, the TOTP secret, recovery codes, the mfa_token)
// reaches the log.
func TestAuditMailAndSecondFactors(t *testing.T) {
	hrEachBackend(t, func(t *testing.T, backend string) {
		c := mailStartSMTP(t)
		env := mailStart(t, backend, c)
		s := env.s
		admin := env.admin(t)
		secrets := map[string]string{}

		d := s.newUser(t, true)
		uid := d.user.ID
		secrets["password"] = d.password

		// email verified
		link, _ := c.AwaitLink(t, d.email, "verify-email", 1)
		secrets["verification token"] = link.Token
		expect(t, s.do(t, "POST", "/auth/email/verify", map[string]any{"token": link.Token}), http.StatusOK, "")

		// password reset
		mailForgot(t, s, d.email)
		link, _ = c.AwaitLink(t, d.email, "reset-password", 1)
		secrets["reset token"] = link.Token
		reset := newPassword()
		secrets["reset password"] = reset
		expect(t, s.do(t, "POST", "/auth/password/reset", map[string]any{"token": link.Token, "new_password": reset}), http.StatusNoContent, "")
		d.password = reset
		d = d.another(t, true)

		// email changed
		newAddr := newEmail()
		r := s.do(t, "POST", "/auth/email/change", map[string]any{"new_email": newAddr, "current_password": d.password}, bearer(d.Access()))
		mailAccepted(t, r)
		link, _ = c.AwaitLink(t, newAddr, "change-email", 1)
		secrets["email change token"] = link.Token
		expect(t, s.do(t, "POST", "/auth/email/change/confirm", map[string]any{"token": link.Token}), http.StatusOK, "")
		d.email = newAddr

		// a wrong sign-in code of the account
		mailMagic(t, s, d.email)
		link, m := c.AwaitLink(t, d.email, "magic-link", 1)
		secrets["magic link token"] = link.Token
		code := mailCode(t, m)
		wrongCode := fmt.Sprintf("%06d", (atoiOr(code, 0)+1)%1000000)
		r = s.do(t, "POST", "/auth/magic-link/verify", map[string]any{"email": d.email, "code": wrongCode})
		expect(t, r, http.StatusUnauthorized, "invalid_code")

		// second factors: enabled, a failed and a good second step, new
		// recovery codes, disabled
		f, codes := mfaEnable(t, d)
		secrets["totp secret"] = f.Secret
		for i, rc := range codes {
			secrets[fmt.Sprintf("recovery code %d", i)] = rc
		}
		dm, mfaToken := mfaChallenge(t, s, d.email, d.password, true)
		secrets["mfa token"] = mfaToken
		mfaRefused(t, mfaVerify(t, dm, mfaToken, "totp", f.wrong()), "a wrong TOTP code")
		mfaVerifyOK(t, dm, mfaToken, "recovery_code", codes[0], []string{"pwd", "recovery", "mfa"})
		r = s.do(t, "POST", "/auth/mfa/recovery-codes", map[string]any{"code": f.next(t)}, bearer(d.Access()))
		for i, rc := range mfaRecoveryCodes(t, r) {
			secrets[fmt.Sprintf("new recovery code %d", i)] = rc
		}
		expect(t, s.do(t, "DELETE", "/auth/mfa/totp", map[string]any{"code": f.next(t)}, bearer(d.Access())), http.StatusNoContent, "")

		evs := auditAll(t, s, admin.Access(), "/admin/audit?user_id="+uid+"&limit=200")
		auditExpect(t, evs, uid, "email_verified", "success", nil)
		auditExpect(t, evs, uid, "password_reset", "success", nil)
		auditExpect(t, evs, uid, "email_changed", "success", nil)
		auditExpect(t, evs, uid, "login", "failure", map[string]string{"reason": "wrong_code", "method": "email"})
		auditExpect(t, evs, uid, "mfa", "success", map[string]string{"action": "totp_enabled"})
		auditExpect(t, evs, uid, "login", "failure", map[string]string{"reason": "mfa_failed", "method": "pwd totp"})
		auditExpect(t, evs, uid, "login", "success", map[string]string{"method": "pwd recovery mfa"})
		auditExpect(t, evs, uid, "mfa", "success", map[string]string{"action": "recovery_codes_regenerated"})
		auditExpect(t, evs, uid, "mfa", "success", map[string]string{"action": "totp_disabled"})
		for _, typ := range []string{"email_verified", "password_reset", "email_changed"} {
			if e := auditFind(evs, typ, "success", nil); e != nil && e.IP == nil {
				t.Errorf("%s: want the client's IP", e)
			}
		}

		collectTokens(secrets, "d", d)
		collectTokens(secrets, "dm", dm)
		collectTokens(secrets, "admin", admin)
		auditNoSecrets(t, env, secrets)
	})
}

// TestAuditRetention proves that the housekeeping loop deletes events past
// --audit-retention and keeps newer ones.
func TestAuditRetention(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--audit-retention", "3s", "--session-retention", "1s")
	_, admin := s.makeAdmin(t)
	first := s.newUser(t, true)
	if evs, _ := auditPage(t, s, admin.Access(), "/admin/audit?user_id="+first.user.ID); len(evs) == 0 {
		t.Fatalf("no events of the new user")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		evs, _ := auditPage(t, s, admin.Access(), "/admin/audit?user_id="+first.user.ID)
		if len(evs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events of %s still listed 20s after signup with --audit-retention 3s: %v", first.user.ID, evs)
		}
		// Keep a fresh event coming, to see that retention spares it.
		s.newUser(t, true)
		time.Sleep(500 * time.Millisecond)
	}
	recent := s.newUser(t, true)
	if evs, _ := auditPage(t, s, admin.Access(), "/admin/audit?user_id="+recent.user.ID); len(evs) != 2 {
		t.Errorf("a fresh user's events: %v, want signup and login kept", evs)
	}
	if !regexp.MustCompile(`"msg":"pruned audit events"`).MatchString(s.stderr.String()) {
		t.Errorf("no log line of the pruning")
	}
}
