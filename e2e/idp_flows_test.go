package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestIdPFlows: sign-in with a real OpenID provider on both backends:
// first sign-in creates the user and the second finds it; the body
// transport through a login_code; link and unlink from a signed-in
// account; a provider with signup off refuses new users.
func TestIdPFlows(t *testing.T) {
	hrEachBackend(t, func(t *testing.T, backend string) {
		op := idpStartOP(t)
		env := hrStart(t, backend, "--redirect-allowlist", "com.example.app:/oauth,https://app.example.com/return")
		op.addTo(t, env, "corp", "--display-name", "Corp SSO")
		s := env.s

		t.Run("ProviderList", func(t *testing.T) {
			r := s.do(t, "GET", "/auth/idps", nil)
			expect(t, r, http.StatusOK, "")
			list, _ := r.JSON()["providers"].([]any)
			if len(list) != 1 {
				t.Fatalf("%s: want one provider", r)
			}
			p, _ := list[0].(map[string]any)
			if p["name"] != "corp" || p["display_name"] != "Corp SSO" || len(p) != 2 {
				t.Errorf("provider = %v, want {name: corp, display_name: Corp SSO} and nothing else", p)
			}
		})

		t.Run("FirstSignInCreatesSecondFinds", func(t *testing.T) {
			email := newEmail()
			op.queue("sub-"+randHex(6), email, true)
			d, u := idpSignIn(t, s, "corp")
			if u["email"] != email || u["email_verified"] != true {
				t.Errorf("new user = %v, want email %s, verified", u, email)
			}
			if n := len(idpIdentities(t, d)); n != 1 {
				t.Errorf("identities = %d, want 1", n)
			}
			// The session is an ordinary one: it rotates and logs out.
			d.refreshOK(t)
		})

		t.Run("SecondSignInSameUser", func(t *testing.T) {
			sub, email := "sub-"+randHex(6), newEmail()
			op.queue(sub, email, true)
			_, first := idpSignIn(t, s, "corp")
			op.queue(sub, "changed-"+email, true) // the provider's address may change; the subject does not
			d2, second := idpSignIn(t, s, "corp")
			if first["id"] != second["id"] {
				t.Errorf("second sign-in found user %v, want %v", second["id"], first["id"])
			}
			if n := len(idpIdentities(t, d2)); n != 1 {
				t.Errorf("identities after two sign-ins = %d, want 1", n)
			}
			if n := idpUserCount(t, env, "changed-"+email); n != 0 {
				t.Errorf("a second account was made for the changed address")
			}
		})

		t.Run("BodyTransportLoginCode", func(t *testing.T) {
			sub, email := "sub-"+randHex(6), newEmail()
			op.queue(sub, email, true)
			d := s.newDevice(true)
			f := idpBegin(t, d, "corp", url.Values{"token_transport": {"body"}, "redirect_to": {"com.example.app:/oauth"}})
			o := idpCallback(t, d, f.callback)
			if o.base != "com.example.app:/oauth" || o.err() != "" {
				t.Fatalf("Location %q: want com.example.app:/oauth#login_code=...", o.r.Header.Get("Location"))
			}
			if c := o.r.Cookie(refreshCookie); c != nil {
				t.Errorf("body transport set a refresh cookie")
			}
			code := o.fragment.Get("login_code")
			r := d.do(t, "POST", "/auth/idps/exchange", map[string]any{"login_code": code})
			if !expect(t, r, http.StatusOK, "") {
				t.FailNow()
			}
			checkTokenResponse(t, r, true)
			if amr := mailAMR(t, d.Access()); len(amr) != 1 || amr[0] != "fed" {
				t.Errorf("amr = %v, want [fed]", amr)
			}
			d.refreshOK(t)
			// Single use.
			r = s.do(t, "POST", "/auth/idps/exchange", map[string]any{"login_code": code})
			expect(t, r, http.StatusUnauthorized, "invalid_code")
		})

		t.Run("LinkAndUnlink", func(t *testing.T) {
			d := s.newUser(t, false)
			d.refreshOK(t)
			op.queue("sub-"+randHex(6), "someone-else-"+newEmail(), false) // any address: the user proves both accounts
			f := idpBegin(t, d, "corp", url.Values{"link": {"1"}})
			o := idpCallback(t, d, f.callback)
			if o.err() != "" || o.fragment.Get("linked") != "corp" {
				t.Fatalf("link: Location %q, want #linked=corp", o.r.Header.Get("Location"))
			}
			if c := o.r.Cookie(refreshCookie); c != nil {
				t.Errorf("linking started a new session")
			}
			list := idpIdentities(t, d)
			if len(list) != 1 || list[0]["provider"] != "corp" {
				t.Fatalf("identities after link = %v", list)
			}
			for _, k := range []string{"id", "provider", "email", "created_at"} {
				if _, ok := list[0][k].(string); !ok {
					t.Errorf("identity lacks %s: %v", k, list[0])
				}
			}
			id := list[0]["id"].(string)
			r := s.do(t, "DELETE", "/auth/identities/"+id, nil, bearer(d.Access()))
			expect(t, r, http.StatusNoContent, "")
			if n := len(idpIdentities(t, d)); n != 0 {
				t.Errorf("identities after unlink = %d, want 0", n)
			}
			r = s.do(t, "DELETE", "/auth/identities/"+id, nil, bearer(d.Access()))
			expect(t, r, http.StatusNotFound, "not_found")

			// link=1 without a session: nothing is linked.
			anon := s.newDevice(false)
			r = idpAuthorize(t, anon, "corp", url.Values{"link": {"1"}})
			if r.Status != http.StatusFound || !strings.Contains(r.Header.Get("Location"), "#error=login_required") {
				t.Errorf("%s: Location %q, want #error=login_required", r, r.Header.Get("Location"))
			}
		})

		t.Run("LastLoginMethod", func(t *testing.T) {
			op.queue("sub-"+randHex(6), newEmail(), true)
			d, _ := idpSignIn(t, s, "corp")
			list := idpIdentities(t, d)
			r := s.do(t, "DELETE", "/auth/identities/"+list[0]["id"].(string), nil, bearer(d.Access()))
			expect(t, r, http.StatusConflict, "last_login_method")
			// Another user's identity is not found, whatever its id.
			other := s.newUser(t, true)
			r = s.do(t, "DELETE", "/auth/identities/"+list[0]["id"].(string), nil, bearer(other.Access()))
			expect(t, r, http.StatusNotFound, "not_found")
			if n := len(idpIdentities(t, d)); n != 1 {
				t.Errorf("identities = %d, want the one kept", n)
			}
		})

		t.Run("SignupOff", func(t *testing.T) {
			op.addTo(t, env, "closed", "--no-signup")
			email := newEmail()
			op.queue("sub-"+randHex(6), email, true)
			idpRefused(t, idpTry(t, s, "closed"), "signup_disabled")
			if n := idpUserCount(t, env, email); n != 0 {
				t.Errorf("signup off created an account for %s", email)
			}
			// An identity linked to an account still signs in.
			d := s.newUser(t, false)
			sub := "sub-" + randHex(6)
			op.queue(sub, newEmail(), true)
			f := idpBegin(t, d, "closed", url.Values{"link": {"1"}})
			if o := idpCallback(t, d, f.callback); o.fragment.Get("linked") != "closed" {
				t.Fatalf("link to a signup-off provider: Location %q", o.r.Header.Get("Location"))
			}
			op.queue(sub, newEmail(), true)
			_, u := idpSignIn(t, s, "closed")
			if u["id"] != d.user.ID {
				t.Errorf("signed in as %v, want the linked account %s", u["id"], d.user.ID)
			}
		})
	})
}
