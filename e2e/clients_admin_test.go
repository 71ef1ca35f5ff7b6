package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestClientsAdmin: OAuth clients through /admin/clients and the CLI on the
// same database: the secret is shown once and never listed, bad
// registrations are 422, non-admins 403, and removal is 404 the second
// time; every change through the API is an admin audit event naming the
// client (the CLI, like the other operator commands, records none).
func TestClientsAdmin(t *testing.T) {
	t.Parallel()
	env := hrStart(t, "sqlite")
	s := env.s
	admin := env.admin(t)
	user := s.newUser(t, true)

	body := map[string]any{
		"name": "Billing", "redirect_uris": []string{"https://billing.example.com/cb"},
		"post_logout_redirect_uris": []string{"https://billing.example.com/bye"},
		"scopes":                    []string{"invoices:read"}, "audience": "billing-api", "first_party": true,
	}
	r := s.do(t, "POST", "/admin/clients", body, bearer(admin.Access()))
	if !expect(t, r, http.StatusCreated, "") {
		t.FailNow()
	}
	var created struct {
		Client       map[string]any `json:"client"`
		ClientSecret string         `json:"client_secret"`
	}
	if err := json.Unmarshal(r.Body, &created); err != nil || created.ClientSecret == "" {
		t.Fatalf("%s: want the client and its secret (%v)", r, err)
	}
	c := created.Client
	id, _ := c["client_id"].(string)
	if !strings.HasPrefix(id, "gh_client_") || c["name"] != "Billing" || c["first_party"] != true || c["public"] != false ||
		c["audience"] != "billing-api" || c["tls_client_auth"] != "" {
		t.Errorf("client = %v", c)
	}
	if g, _ := c["grants"].([]any); len(g) != 2 || g[0] != "authorization_code" || g[1] != "refresh_token" {
		t.Errorf("default grants = %v", c["grants"])
	}

	r = s.do(t, "POST", "/admin/clients", map[string]any{"name": "Phone", "public": true,
		"redirect_uris": []string{"http://127.0.0.1:9999/cb"}}, bearer(admin.Access()))
	expect(t, r, http.StatusCreated, "")
	if _, has := r.JSON()["client_secret"]; has {
		t.Errorf("%s: a public client got a secret", r)
	}
	publicID, _ := r.JSON()["client"].(map[string]any)["client_id"].(string)

	// A client made with the CLI on the same database shows up too.
	res := runCLI(t, "", nil, "client", "create", "--name", "Batch", "--grant", "client_credentials",
		"--tls-client-auth", "CN=batch", "--database", env.db)
	if res.code != 0 {
		t.Fatalf("client create: exit %d: %s", res.code, res.stderr)
	}
	var cli struct {
		ClientID string `json:"client_id"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &cli); err != nil {
		t.Fatalf("client create printed %q: %v", res.stdout, err)
	}

	r = s.do(t, "GET", "/admin/clients", nil, bearer(admin.Access()))
	expect(t, r, http.StatusOK, "")
	list, _ := r.JSON()["clients"].([]any)
	if len(list) != 3 || strings.Contains(string(r.Body), created.ClientSecret) || strings.Contains(string(r.Body), "secret") {
		t.Errorf("%s: want three clients, no secret", r)
	}
	if len(list) == 3 {
		last, _ := list[2].(map[string]any)
		if last["client_id"] != cli.ClientID || last["tls_client_auth"] != "CN=batch" {
			t.Errorf("the CLI's client in the list: %v", last)
		}
	}
	res = runCLI(t, "", nil, "client", "list", "--database", env.db)
	if res.code != 0 || !strings.Contains(res.stdout, id) || !strings.Contains(res.stdout, publicID) {
		t.Errorf("client list: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}

	for name, bad := range map[string]map[string]any{
		"no name":          {"redirect_uris": []string{"https://a.example.com/cb"}},
		"http redirect":    {"name": "A", "redirect_uris": []string{"http://a.example.com/cb"}},
		"no redirect":      {"name": "A"},
		"empty grants":     {"name": "A", "redirect_uris": []string{"https://a.example.com/cb"}, "grants": []string{}},
		"unknown grant":    {"name": "A", "redirect_uris": []string{"https://a.example.com/cb"}, "grants": []string{"password"}},
		"public with cc":   {"name": "A", "public": true, "grants": []string{"client_credentials"}},
		"standard scope":   {"name": "A", "redirect_uris": []string{"https://a.example.com/cb"}, "scopes": []string{"email"}},
		"spaced audience":  {"name": "A", "redirect_uris": []string{"https://a.example.com/cb"}, "audience": "a b"},
		"public tls":       {"name": "A", "public": true, "redirect_uris": []string{"https://a.example.com/cb"}, "tls_client_auth": "CN=a"},
		"two-line tls dn ": {"name": "A", "grants": []string{"client_credentials"}, "tls_client_auth": "CN=a\nCN=b"},
	} {
		if r := s.do(t, "POST", "/admin/clients", bad, bearer(admin.Access())); !expect(t, r, http.StatusUnprocessableEntity, "validation_failed") {
			t.Errorf("case %s", name)
		}
	}
	expect(t, s.do(t, "POST", "/admin/clients", map[string]any{"name": "A", "secret": "x"}, bearer(admin.Access())), http.StatusBadRequest, "bad_request")
	expect(t, s.do(t, "POST", "/admin/clients", body, bearer(user.Access())), http.StatusForbidden, "forbidden")
	expect(t, s.do(t, "GET", "/admin/clients", nil, bearer(user.Access())), http.StatusForbidden, "forbidden")
	expect(t, s.do(t, "DELETE", "/admin/clients/"+id, nil, bearer(user.Access())), http.StatusForbidden, "forbidden")
	expect(t, s.do(t, "GET", "/admin/clients", nil), http.StatusUnauthorized, "invalid_token")

	expect(t, s.do(t, "DELETE", "/admin/clients/"+id, nil, bearer(admin.Access())), http.StatusNoContent, "")
	expect(t, s.do(t, "DELETE", "/admin/clients/"+id, nil, bearer(admin.Access())), http.StatusNotFound, "not_found")
	r = s.do(t, "GET", "/admin/clients", nil, bearer(admin.Access()))
	if strings.Contains(string(r.Body), id) {
		t.Errorf("%s: the removed client is listed", r)
	}

	events := auditAll(t, s, admin.Access(), "/admin/audit?type=admin&limit=200")
	for _, want := range []map[string]string{
		{"action": "oauth_client_created", "client_id": id, "admin_id": admin.user.ID},
		{"action": "oauth_client_removed", "client_id": id, "admin_id": admin.user.ID},
	} {
		if auditFind(events, "admin", "success", want) == nil {
			t.Errorf("no admin event with %v among %d", want, len(events))
		}
	}
}

// TestConsentsOfUser: /auth/consents lists the caller's consents by client
// name, and DELETE withdraws one (404 when there is none, or it is
// another user's), recorded as a logout from that client.
func TestConsentsOfUser(t *testing.T) {
	t.Parallel()
	env := hrStart(t, "sqlite")
	s := env.s
	admin := env.admin(t)
	user := s.newUser(t, true)
	other := s.newUser(t, true)

	r := s.do(t, "POST", "/admin/clients", map[string]any{"name": "Photo printer",
		"redirect_uris": []string{"https://print.example.com/cb"}}, bearer(admin.Access()))
	expect(t, r, http.StatusCreated, "")
	id, _ := r.JSON()["client"].(map[string]any)["client_id"].(string)

	r = s.do(t, "GET", "/auth/consents", nil, bearer(user.Access()))
	expect(t, r, http.StatusOK, "")
	if l, ok := r.JSON()["consents"].([]any); !ok || len(l) != 0 {
		t.Errorf("%s: want an empty list", r)
	}
	// The consent page's outcome, written as the authorize flow stores it.
	now := time.Now().UnixMicro()
	if n := idpSQL(t, env, `INSERT INTO oauth_consents (user_id, client_id, scopes, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`,
		user.user.ID, id, `["openid","email"]`, now, now); n != 1 {
		t.Fatalf("insert consent: %d rows", n)
	}
	r = s.do(t, "GET", "/auth/consents", nil, bearer(user.Access()))
	expect(t, r, http.StatusOK, "")
	l, _ := r.JSON()["consents"].([]any)
	if len(l) != 1 {
		t.Fatalf("%s: want one consent", r)
	}
	got, _ := l[0].(map[string]any)
	if got["client_id"] != id || got["client_name"] != "Photo printer" {
		t.Errorf("consent = %v", got)
	}
	if sc, _ := got["scopes"].([]any); len(sc) != 2 || sc[0] != "openid" || sc[1] != "email" {
		t.Errorf("scopes = %v", got["scopes"])
	}
	if ts, _ := got["created_at"].(string); ts == "" || !strings.HasSuffix(ts, "Z") {
		t.Errorf("created_at = %v", got["created_at"])
	}
	// Someone else's consents are not theirs to see or withdraw.
	r = s.do(t, "GET", "/auth/consents", nil, bearer(other.Access()))
	if l, _ := r.JSON()["consents"].([]any); len(l) != 0 {
		t.Errorf("%s: another user sees the consent", r)
	}
	expect(t, s.do(t, "DELETE", "/auth/consents/"+id, nil, bearer(other.Access())), http.StatusNotFound, "not_found")
	expect(t, s.do(t, "DELETE", "/auth/consents/gh_client_nope", nil, bearer(user.Access())), http.StatusNotFound, "not_found")
	expect(t, s.do(t, "DELETE", "/auth/consents/"+id, nil), http.StatusUnauthorized, "invalid_token")

	expect(t, s.do(t, "DELETE", "/auth/consents/"+id, nil, bearer(user.Access())), http.StatusNoContent, "")
	r = s.do(t, "GET", "/auth/consents", nil, bearer(user.Access()))
	if l, _ := r.JSON()["consents"].([]any); len(l) != 0 {
		t.Errorf("%s: the consent is still listed", r)
	}
	expect(t, s.do(t, "DELETE", "/auth/consents/"+id, nil, bearer(user.Access())), http.StatusNotFound, "not_found")

	events := auditAll(t, s, admin.Access(), "/admin/audit?type=logout&user_id="+user.user.ID+"&limit=200")
	if auditFind(events, "logout", "success", map[string]string{"client_id": id}) == nil {
		t.Errorf("no logout event naming the client among %v", events)
	}
}
