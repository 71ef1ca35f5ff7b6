package e2e

// Passkey ceremonies across instances: their state is a one-time secret in
// the database, so a ceremony begun on one instance finishes on another, and
// a challenge used on one is spent on all. Both instances serve one relying
// party: the same --public-url (the address of the load balancer in front
// of them; to the server the browser's origin is only a string in
// clientDataJSON).

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
)

// pkPublicURL is a public URL on localhost (a relying party id WebAuthn
// accepts over http) that no instance listens on.
func pkPublicURL(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("http://localhost:%d", freePort(t))
}

// pkFlows runs the three ceremonies with each step on the instance named:
// a and b may be two instances of one cluster or the same server.
func pkFlows(t *testing.T, a, b *server, origin string) {
	t.Run("register begun on A finishes on B", func(t *testing.T) {
		d := a.newUser(t, true)
		auth := newSoftAuthenticator(origin)
		cred := auth.register(t, pkRegisterBegin(t, a, d.Access()))
		id := pkRegisterFinish(t, b, d.Access(), cred, "Phone")
		if ids := pkList(t, a, d.Access()); !slices.Equal(ids, []string{id}) {
			t.Errorf("GET /auth/passkeys on A: %v, want [%s]", ids, id)
		}
		// The registration ceremony is spent on every instance.
		r := a.do(t, "POST", "/auth/passkeys/register/finish",
			map[string]any{"credential": cred, "name": "Again"}, bearer(d.Access()))
		expect(t, r, http.StatusBadRequest, "invalid_credential")
		if ids := pkList(t, b, d.Access()); !slices.Equal(ids, []string{id}) {
			t.Errorf("GET /auth/passkeys on B after the replayed registration: %v, want [%s]", ids, id)
		}
	})

	t.Run("sign-in begun on A completes on B, once", func(t *testing.T) {
		d := a.newUser(t, true)
		auth := newSoftAuthenticator(origin)
		pkRegisterFinish(t, a, d.Access(), auth.register(t, pkRegisterBegin(t, a, d.Access())), "Laptop")

		opts, cid := pkLoginBegin(t, a, "")
		assertion := auth.assert(t, opts)
		pkSignedIn(t, b, pkLoginFinish(t, b, cid, assertion, ""), d.user.ID, []string{"hwk", "mfa"})
		// Single use across instances: the same finish is refused on A,
		// and on B again.
		expect(t, pkLoginFinish(t, a, cid, assertion, ""), http.StatusUnauthorized, "invalid_credential")
		expect(t, pkLoginFinish(t, b, cid, assertion, ""), http.StatusUnauthorized, "invalid_credential")

		// The other way round works as well, and the counter moved on.
		opts, cid = pkLoginBegin(t, b, "")
		pkSignedIn(t, a, pkLoginFinish(t, a, cid, auth.assert(t, opts), ""), d.user.ID, []string{"hwk", "mfa"})
	})

	t.Run("second factor begun on B with the mfa_token finishes on A", func(t *testing.T) {
		d := a.newUser(t, true)
		auth := newSoftAuthenticator(origin)
		pkRegisterFinish(t, b, d.Access(), auth.register(t, pkRegisterBegin(t, b, d.Access())), "Key")

		r := a.do(t, "POST", "/auth/login", map[string]any{"email": d.email, "password": d.password, "token_transport": "body"})
		if !expect(t, r, http.StatusUnauthorized, "mfa_required") {
			t.FailNow()
		}
		m := r.JSON()
		mfaToken, _ := m["mfa_token"].(string)
		methods, _ := m["methods"].([]any)
		if mfaToken == "" || !slices.Contains(methods, any("passkey")) {
			t.Fatalf("%s: want an mfa_token and methods with passkey", r)
		}
		if _, ok := m["access_token"]; ok {
			t.Errorf("%s: the mfa_required answer carries an access token", r)
		}

		opts, cid := pkLoginBegin(t, b, mfaToken)
		o := parsePKOptions(t, opts)
		if len(o.AllowCredentials) != 1 {
			t.Errorf("second-factor request options: allowCredentials %v, want the user's one passkey", o.AllowCredentials)
		}
		pkSignedIn(t, a, pkLoginFinish(t, a, cid, auth.assert(t, opts), mfaToken), d.user.ID, []string{"pwd", "hwk", "mfa"})

		// The mfa_token is spent on every instance.
		r = b.do(t, "POST", "/auth/passkeys/login/begin", map[string]any{"mfa_token": mfaToken})
		expect(t, r, http.StatusUnauthorized, "invalid_credential")
	})
}

// TestPasskeyMultiInstance runs the ceremonies across two instances on
// PostgreSQL and Redis.
func TestPasskeyMultiInstance(t *testing.T) {
	t.Parallel()
	cluster, _ := prodNewCluster(t)
	origin := pkPublicURL(t)
	a := cluster.start(t, "--public-url", origin)
	b := cluster.start(t, "--public-url", origin)
	pkFlows(t, a, b, origin)
}

// TestPasskeySQLite runs the same ceremonies on one SQLite instance (A and
// B in the subtests' names are both that instance).
func TestPasskeySQLite(t *testing.T) {
	t.Parallel()
	origin := pkPublicURL(t)
	s := startServer(t, "--public-url", origin)
	pkFlows(t, s, s, origin)
}
