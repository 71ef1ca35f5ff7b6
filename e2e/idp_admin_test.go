package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// TestIdPAdmin: providers through the admin API and the CLI: the client
// secret is never shown, stored sealed, bad settings are 422, non-admins
// are 403, and removing a provider removes its identities.
func TestIdPAdmin(t *testing.T) {
	t.Parallel()
	op := idpStartOP(t)
	env := hrStart(t, "sqlite")
	s := env.s
	admin := env.admin(t)
	secret := op.m.ClientSecret

	body := map[string]any{"issuer": op.Issuer(), "client_id": op.m.ClientID, "client_secret": secret, "display_name": "Corp"}
	r := s.do(t, "PUT", "/admin/idps/corp", body, bearer(admin.Access()))
	if !expect(t, r, http.StatusCreated, "") {
		t.FailNow()
	}
	if strings.Contains(string(r.Body), secret) {
		t.Errorf("%s: the client secret is echoed", r)
	}
	p, _ := r.JSON()["provider"].(map[string]any)
	if p["redirect_uri"] != s.base+"/auth/idps/corp/callback" || p["signup"] != true || p["kind"] != "oidc" {
		t.Errorf("provider = %v", p)
	}
	// The secret is stored sealed, not as given.
	if n := idpSQL(t, env, `UPDATE idp_providers SET name = name WHERE instr(sealed_secret, ?) > 0`, []byte(secret)); n != 0 {
		t.Error("the client secret is stored in the clear")
	}
	// A replacement without a secret keeps the stored one: sign-in works.
	r = s.do(t, "PUT", "/admin/idps/corp", map[string]any{"issuer": op.Issuer(), "client_id": op.m.ClientID, "signup": true},
		bearer(admin.Access()))
	expect(t, r, http.StatusOK, "")
	op.queue("sub-"+randHex(6), newEmail(), true)
	d, _ := idpSignIn(t, s, "corp")

	for name, bad := range map[string]map[string]any{
		"no client id":   {"issuer": op.Issuer(), "client_secret": "x"},
		"http issuer":    {"issuer": "http://idp.example.com", "client_id": "a", "client_secret": "x"},
		"unknown preset": {"preset": "myspace", "client_id": "a", "client_secret": "x"},
		"no openid":      {"issuer": op.Issuer(), "client_id": "a", "client_secret": "x", "scopes": []string{"email"}},
		"oidc with urls": {"issuer": op.Issuer(), "client_id": "a", "client_secret": "x", "token_url": "https://t.example.com"},
	} {
		r := s.do(t, "PUT", "/admin/idps/new-one", bad, bearer(admin.Access()))
		if !expect(t, r, http.StatusUnprocessableEntity, "validation_failed") {
			t.Errorf("case %s", name)
		}
	}
	expect(t, s.do(t, "PUT", "/admin/idps/Bad_Name", body, bearer(admin.Access())), http.StatusUnprocessableEntity, "validation_failed")
	expect(t, s.do(t, "PUT", "/admin/idps/x", map[string]any{"client_secret": "x", "extra": 1}, bearer(admin.Access())), http.StatusBadRequest, "bad_request")
	user := s.newUser(t, true)
	expect(t, s.do(t, "GET", "/admin/idps", nil, bearer(user.Access())), http.StatusForbidden, "forbidden")
	expect(t, s.do(t, "PUT", "/admin/idps/corp", body, bearer(user.Access())), http.StatusForbidden, "forbidden")

	r = s.do(t, "GET", "/admin/idps", nil, bearer(admin.Access()))
	expect(t, r, http.StatusOK, "")
	if list, _ := r.JSON()["providers"].([]any); len(list) != 1 || strings.Contains(string(r.Body), secret) {
		t.Errorf("%s: want the one provider, without its secret", r)
	}

	// The CLI sees it and removes it, with its identities.
	args := []string{"--database", env.db}
	res := runCLI(t, "", nil, append([]string{"idp", "list"}, args...)...)
	if res.code != 0 || !strings.Contains(res.stdout, "corp") || strings.Contains(res.stdout, secret) {
		t.Errorf("idp list: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	res = runCLI(t, "", nil, append([]string{"idp", "add", "google", "--preset", "google", "--client-id", "g"}, args...)...)
	if res.code == 0 || strings.Count(strings.TrimSpace(res.stderr), "\n") != 0 {
		t.Errorf("idp add without a secret file: exit %d, stderr %q (want one line)", res.code, res.stderr)
	}
	res = runCLI(t, "", nil, append([]string{"idp", "remove", "corp"}, args...)...)
	if res.code != 0 {
		t.Fatalf("idp remove: exit %d\n%s", res.code, res.stderr)
	}
	if n := len(idpIdentities(t, d)); n != 0 {
		t.Errorf("identities after removing their provider = %d", n)
	}
	expect(t, idpAuthorize(t, s.newDevice(false), "corp", nil), http.StatusNotFound, "not_found")
	expect(t, s.do(t, "DELETE", "/admin/idps/corp", nil, bearer(admin.Access())), http.StatusNotFound, "not_found")
}
