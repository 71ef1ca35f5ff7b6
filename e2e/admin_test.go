package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestAdminAccessControl(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	_, admin := s.makeAdmin(t)
	u := s.newUser(t, true)

	type call struct {
		method, path string
		body         any
	}
	calls := []call{
		{"GET", "/admin/users", nil},
		{"GET", "/admin/users/" + u.user.ID + "/sessions", nil},
		{"PATCH", "/admin/users/" + u.user.ID, map[string]any{"role": "admin"}},
		{"DELETE", "/admin/sessions/" + u.sid, nil},
		{"POST", "/admin/users/" + u.user.ID + "/logout", nil},
		{"POST", "/admin/users/" + admin.user.ID + "/logout", nil},
	}
	for _, c := range calls {
		expect(t, s.do(t, c.method, c.path, c.body, bearer(u.Access())), http.StatusForbidden, "forbidden")
		expect(t, s.do(t, c.method, c.path, c.body), http.StatusUnauthorized, "")
	}
	// Nothing above had an effect.
	u.assertAlive(t, "user after refused admin calls")
	if u.user.Role != "user" {
		t.Errorf("non-admin changed its own role: %+v", u.user)
	}
	admin.assertAlive(t, "admin after refused admin calls")
}

func TestAdminListUsersPagination(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	adminID, admin := s.makeAdmin(t)
	want := map[string]bool{adminID: true}
	for i := 0; i < 5; i++ {
		want[s.newUser(t, true).user.ID] = true
	}

	seen := map[string]bool{}
	after := ""
	for page := 0; ; page++ {
		if page > 20 {
			t.Fatalf("pagination does not end")
		}
		q := "/admin/users?limit=2"
		if after != "" {
			q += "&after=" + url.QueryEscape(after)
		}
		r := s.do(t, "GET", q, nil, bearer(admin.Access()))
		if !expect(t, r, http.StatusOK, "") {
			t.FailNow()
		}
		var body struct {
			Users []map[string]any `json:"users"`
			Next  *string          `json:"next"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		if _, ok := r.JSON()["users"].([]any); !ok {
			t.Errorf("%s: users is not an array", r)
		}
		if len(body.Users) > 2 {
			t.Errorf("%s: %d users with limit=2", r, len(body.Users))
		}
		for _, u := range body.Users {
			checkUserObject(t, r.req, u, true)
			id, _ := u["id"].(string)
			if seen[id] {
				t.Errorf("user %s listed twice", id)
			}
			seen[id] = true
		}
		if body.Next == nil || *body.Next == "" {
			break
		}
		if len(body.Users) == 0 {
			t.Fatalf("%s: empty page with a next cursor", r)
		}
		after = *body.Next
	}
	for id := range want {
		if !seen[id] {
			t.Errorf("user %s missing from the paginated listing", id)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("listing has %d users, want %d", len(seen), len(want))
	}

	for _, bad := range []string{"limit=abc", "limit=-1", "limit=2&after=" + url.QueryEscape("not a cursor!")} {
		r := s.do(t, "GET", "/admin/users?"+bad, nil, bearer(admin.Access()))
		expect(t, r, http.StatusUnprocessableEntity, "validation_failed")
	}
}

func TestAdminUserSessions(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	_, admin := s.makeAdmin(t)
	u := s.newUser(t, true)
	u2 := u.another(t, false)

	r := s.do(t, "GET", "/admin/users/"+u.user.ID+"/sessions", nil, bearer(admin.Access()))
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	var body struct {
		Sessions []map[string]any `json:"sessions"`
	}
	json.Unmarshal(r.Body, &body)
	ids := map[string]bool{}
	for _, sess := range body.Sessions {
		for _, k := range []string{"id", "created_at", "last_used_at", "expires_at", "user_agent", "ip"} {
			if _, ok := sess[k].(string); !ok {
				t.Errorf("admin session %v: %s missing or not a string", sess, k)
			}
		}
		if _, ok := sess["current"]; ok {
			t.Errorf("admin session listing carries current: %v", sess)
		}
		id, _ := sess["id"].(string)
		ids[id] = true
	}
	if len(body.Sessions) != 2 || !ids[u.sid] || !ids[u2.sid] {
		t.Errorf("%s\n\twant exactly sessions %s and %s", r, u.sid, u2.sid)
	}
	for _, tok := range []string{u.Refresh(), u2.Refresh()} {
		_, secret := splitRefresh(t, tok)
		if strings.Contains(string(r.Body), tok) || strings.Contains(string(r.Body), secret) {
			t.Errorf("admin session listing contains refresh-token material")
		}
	}

	// DELETE /admin/sessions/{id}: that session only.
	r = s.do(t, "DELETE", "/admin/sessions/"+u2.sid, nil, bearer(admin.Access()))
	expect(t, r, http.StatusNoContent, "")
	u2.assertDead(t, "session deleted by an admin")
	u.assertAlive(t, "other session of the user after admin session delete")
	r = s.do(t, "DELETE", "/admin/sessions/no-such-session", nil, bearer(admin.Access()))
	expect(t, r, http.StatusNotFound, "not_found")

	// POST /admin/users/{id}/logout: every session, no body needed.
	u3 := u.another(t, true)
	r = s.do(t, "POST", "/admin/users/"+u.user.ID+"/logout", nil, bearer(admin.Access()))
	expect(t, r, http.StatusNoContent, "")
	u.assertDead(t, "session after admin logout of the user")
	u3.assertDead(t, "second session after admin logout of the user")
	admin.assertAlive(t, "admin after logging out another user")
	// The user can log in again.
	u.another(t, true).assertAlive(t, "fresh login after admin logout")
}

func TestAdminRoleChange(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	_, admin := s.makeAdmin(t)
	u := s.newUser(t, true)
	oldAccess := u.Access()

	r := s.do(t, "PATCH", "/admin/users/"+u.user.ID, map[string]any{"role": "admin"}, bearer(admin.Access()))
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	pu, _ := r.JSON()["user"].(map[string]any)
	checkUserObject(t, r.req, pu, true)
	if pu["role"] != "admin" || pu["disabled"] != false || pu["id"] != u.user.ID {
		t.Errorf("%s\n\twant user with role admin, disabled false", r)
	}
	// The token issued before the change is rejected at once.
	expect(t, s.meWith(t, oldAccess), http.StatusUnauthorized, "invalid_token")
	expect(t, s.do(t, "GET", "/admin/users", nil, bearer(oldAccess)), http.StatusUnauthorized, "invalid_token")

	// After refresh the new token carries the new role.
	rr := u.refreshOK(t)
	if rr.Status != http.StatusOK {
		t.FailNow()
	}
	if u.user.Role != "admin" {
		t.Errorf("refresh after promotion: user.role = %q, want admin", u.user.Role)
	}
	_, claims := decodeJWT(t, u.Access())
	if claims["role"] != "admin" {
		t.Errorf("refresh after promotion: token role claim = %v, want admin", claims["role"])
	}
	expect(t, s.do(t, "GET", "/admin/users", nil, bearer(u.Access())), http.StatusOK, "")

	// Demote again: the admin token dies, the next one is a user token.
	adminTok := u.Access()
	r = s.do(t, "PATCH", "/admin/users/"+u.user.ID, map[string]any{"role": "user"}, bearer(admin.Access()))
	expect(t, r, http.StatusOK, "")
	expect(t, s.do(t, "GET", "/admin/users", nil, bearer(adminTok)), http.StatusUnauthorized, "invalid_token")
	u.refreshOK(t)
	_, claims = decodeJWT(t, u.Access())
	if claims["role"] != "user" || u.user.Role != "user" {
		t.Errorf("after demotion: role claim %v, user.role %q, want user", claims["role"], u.user.Role)
	}
	expect(t, s.do(t, "GET", "/admin/users", nil, bearer(u.Access())), http.StatusForbidden, "forbidden")

	// Invalid role, unknown user.
	r = s.do(t, "PATCH", "/admin/users/"+u.user.ID, map[string]any{"role": "superuser"}, bearer(admin.Access()))
	expect(t, r, http.StatusUnprocessableEntity, "validation_failed")
	r = s.do(t, "PATCH", "/admin/users/no-such-user", map[string]any{"role": "admin"}, bearer(admin.Access()))
	expect(t, r, http.StatusNotFound, "not_found")
}

func TestAdminDisableUser(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	_, admin := s.makeAdmin(t)
	v := s.newUser(t, true)
	v2 := v.another(t, false)

	r := s.do(t, "PATCH", "/admin/users/"+v.user.ID, map[string]any{"disabled": true}, bearer(admin.Access()))
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	pu, _ := r.JSON()["user"].(map[string]any)
	if pu["disabled"] != true {
		t.Errorf("%s\n\twant user.disabled true", r)
	}
	v.assertDead(t, "session of a disabled user")
	v2.assertDead(t, "cookie session of a disabled user")
	r = s.do(t, "POST", "/auth/login", map[string]any{"email": v.email, "password": v.password})
	expect(t, r, http.StatusUnauthorized, "invalid_credentials")

	// Listed as disabled.
	lr := s.do(t, "GET", "/admin/users?limit=100", nil, bearer(admin.Access()))
	if expect(t, lr, http.StatusOK, "") {
		found := false
		users, _ := lr.JSON()["users"].([]any)
		for _, x := range users {
			m, _ := x.(map[string]any)
			if m["id"] == v.user.ID {
				found = true
				if m["disabled"] != true {
					t.Errorf("disabled user listed with disabled=%v", m["disabled"])
				}
			}
		}
		if !found {
			t.Errorf("disabled user not in listing")
		}
	}

	// Re-enable: login works again, the old sessions stay dead.
	r = s.do(t, "PATCH", "/admin/users/"+v.user.ID, map[string]any{"disabled": false}, bearer(admin.Access()))
	expect(t, r, http.StatusOK, "")
	s.login(t, v.email, v.password, true).assertAlive(t, "re-enabled user")
	v.assertDead(t, "old session after re-enabling")
}
