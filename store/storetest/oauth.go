package storetest

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
)

// newOAuthClient returns a confidential client created at now.
func newOAuthClient(name string, now time.Time) gatehouse.OAuthClient {
	return gatehouse.OAuthClient{
		ID:           newID(),
		Name:         name,
		SecretMAC:    randomBytes(32),
		RedirectURIs: []string{"https://" + name + ".example.com/callback"},
		Grants:       []string{"authorization_code", "refresh_token"},
		CreatedAt:    now,
	}
}

func mustCreateOAuthClient(t *testing.T, s gatehouse.Store, c gatehouse.OAuthClient) gatehouse.OAuthClient {
	t.Helper()
	if err := s.CreateOAuthClient(t.Context(), c); err != nil {
		t.Fatalf("CreateOAuthClient(%s): %v", c.Name, err)
	}
	return c
}

func mustSaveConsent(t *testing.T, s gatehouse.Store, c gatehouse.OAuthConsent) gatehouse.OAuthConsent {
	t.Helper()
	if err := s.SaveConsent(t.Context(), c); err != nil {
		t.Fatalf("SaveConsent(%s, %s): %v", c.UserID, c.ClientID, err)
	}
	return c
}

func mustConsent(t *testing.T, s gatehouse.Store, userID, clientID string) gatehouse.OAuthConsent {
	t.Helper()
	c, err := s.Consent(t.Context(), userID, clientID)
	if err != nil {
		t.Fatalf("Consent(%s, %s): %v", userID, clientID, err)
	}
	return c
}

// list compares lists of strings exactly, order included; nil and empty
// are the same: none.
func (d *diffs) list(field string, got, want []string) {
	if !slices.Equal(got, want) && (len(got) != 0 || len(want) != 0) {
		*d = append(*d, fmt.Sprintf("%s: got %q, want %q", field, got, want))
	}
}

func checkOAuthClient(t *testing.T, what string, got, want gatehouse.OAuthClient) {
	t.Helper()
	var d diffs
	d.str("ID", got.ID, want.ID)
	d.str("Name", got.Name, want.Name)
	switch {
	case len(want.SecretMAC) == 0 && got.SecretMAC != nil:
		d = append(d, fmt.Sprintf("SecretMAC: got %x, want nil", got.SecretMAC))
	case !bytes.Equal(got.SecretMAC, want.SecretMAC):
		d = append(d, fmt.Sprintf("SecretMAC: got %x, want %x", got.SecretMAC, want.SecretMAC))
	}
	d.list("RedirectURIs", got.RedirectURIs, want.RedirectURIs)
	d.list("PostLogoutRedirectURIs", got.PostLogoutRedirectURIs, want.PostLogoutRedirectURIs)
	d.any("Public", got.Public, want.Public)
	d.any("FirstParty", got.FirstParty, want.FirstParty)
	d.list("Grants", got.Grants, want.Grants)
	d.list("Scopes", got.Scopes, want.Scopes)
	d.str("Audience", got.Audience, want.Audience)
	d.str("TLSSubject", got.TLSSubject, want.TLSSubject)
	d.time("CreatedAt", got.CreatedAt, want.CreatedAt)
	for _, s := range d {
		t.Errorf("%s: client %s", what, s)
	}
}

func checkConsent(t *testing.T, what string, got, want gatehouse.OAuthConsent) {
	t.Helper()
	var d diffs
	d.str("UserID", got.UserID, want.UserID)
	d.str("ClientID", got.ClientID, want.ClientID)
	d.list("Scopes", got.Scopes, want.Scopes)
	d.time("CreatedAt", got.CreatedAt, want.CreatedAt)
	d.time("UpdatedAt", got.UpdatedAt, want.UpdatedAt)
	for _, s := range d {
		t.Errorf("%s: consent %s", what, s)
	}
}

func clientIDs(cs []gatehouse.OAuthClient) []string {
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	return ids
}

func consentClientIDs(cs []gatehouse.OAuthConsent) []string {
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ClientID
	}
	return ids
}

func testOAuthClientRoundTrip(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	// Every field set; the lists out of sorted order and with characters a
	// space-separated column would not keep; a time with nanoseconds in
	// another zone.
	full := gatehouse.OAuthClient{
		ID:        newID(),
		Name:      "Ünïcode “Wiki”",
		SecretMAC: randomBytes(32),
		RedirectURIs: []string{
			"https://wiki.example.com/oauth/callback?next=%2Fhome",
			"http://127.0.0.1:8123/cb",
			"com.example.app:/oauth2redirect",
			"https://wiki.example.com/with space",
		},
		PostLogoutRedirectURIs: []string{"https://wiki.example.com/bye", "https://wiki.example.com/"},
		FirstParty:             true,
		Grants:                 []string{"refresh_token", "authorization_code", "client_credentials"},
		Scopes:                 []string{"wiki:write", "revocations:read", "wiki:read"},
		Audience:               "https://api.example.com",
		TLSSubject:             "CN=wiki,O=Example Corp\\, Inc.,C=DE",
		CreatedAt:              time.Date(2026, 3, 4, 5, 6, 7, 891234567, zone),
	}
	// A public client: no secret, every list empty (nil and non-nil).
	public := gatehouse.OAuthClient{
		ID:                     newID(),
		Name:                   "spa",
		Public:                 true,
		RedirectURIs:           []string{},
		PostLogoutRedirectURIs: nil,
		Grants:                 []string{},
		CreatedAt:              now,
	}
	// An empty, non-nil secret is no secret too.
	emptyMAC := gatehouse.OAuthClient{ID: newID(), Name: "empty-mac", SecretMAC: []byte{}, CreatedAt: now.Add(time.Second)}
	for _, c := range []gatehouse.OAuthClient{full, public, emptyMAC} {
		mustCreateOAuthClient(t, s, c)
	}
	for _, c := range []gatehouse.OAuthClient{full, public, emptyMAC} {
		got, err := s.OAuthClientByID(t.Context(), c.ID)
		if err != nil {
			t.Fatalf("OAuthClientByID(%s): %v", c.Name, err)
		}
		checkOAuthClient(t, "OAuthClientByID("+c.Name+")", got, c)
	}

	// The listing returns the same.
	all, err := s.OAuthClients(t.Context())
	if err != nil {
		t.Fatalf("OAuthClients: %v", err)
	}
	want := []gatehouse.OAuthClient{full, public, emptyMAC} // full is the oldest
	if !slices.Equal(clientIDs(all), clientIDs(want)) {
		t.Fatalf("OAuthClients = %q, want %q", clientIDs(all), clientIDs(want))
	}
	for i := range want {
		checkOAuthClient(t, "OAuthClients["+want[i].Name+"]", all[i], want[i])
	}
}

func testOAuthClientNotFound(t *testing.T, s gatehouse.Store) {
	mustCreateOAuthClient(t, s, newOAuthClient("present", baseTime()))
	_, err := s.OAuthClientByID(t.Context(), newID())
	wantNotFound(t, "OAuthClientByID(unknown)", err)
	_, err = s.OAuthClientByID(t.Context(), "")
	wantNotFound(t, "OAuthClientByID(empty)", err)
	wantNotFound(t, "DeleteOAuthClient(unknown)", s.DeleteOAuthClient(t.Context(), newID()))
}

func testOAuthClientsOldestFirst(t *testing.T, s gatehouse.Store) {
	none, err := s.OAuthClients(t.Context())
	if err != nil {
		t.Fatalf("OAuthClients(empty store): %v", err)
	}
	if len(none) != 0 {
		t.Errorf("OAuthClients(empty store) = %q, want none", clientIDs(none))
	}
	now := baseTime()
	// Created in another order than their CreatedAt.
	b := mustCreateOAuthClient(t, s, newOAuthClient("b", now.Add(-time.Hour)))
	c := mustCreateOAuthClient(t, s, newOAuthClient("c", now))
	a := mustCreateOAuthClient(t, s, newOAuthClient("a", now.Add(-2*time.Hour)))
	got, err := s.OAuthClients(t.Context())
	if err != nil {
		t.Fatalf("OAuthClients: %v", err)
	}
	if want := []string{a.ID, b.ID, c.ID}; !slices.Equal(clientIDs(got), want) {
		t.Errorf("OAuthClients = %q, want %q (oldest first)", clientIDs(got), want)
	}
}

func testOAuthDeleteClient(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	u1 := mustCreateUser(t, s, "delete-client-1@example.com")
	u2 := mustCreateUser(t, s, "delete-client-2@example.com")
	gone := mustCreateOAuthClient(t, s, newOAuthClient("gone", now))
	kept := mustCreateOAuthClient(t, s, newOAuthClient("kept", now))
	for _, uc := range [][2]string{{u1.ID, gone.ID}, {u2.ID, gone.ID}, {u1.ID, kept.ID}} {
		mustSaveConsent(t, s, gatehouse.OAuthConsent{UserID: uc[0], ClientID: uc[1], Scopes: []string{"openid"}, CreatedAt: now, UpdatedAt: now})
	}

	if err := s.DeleteOAuthClient(t.Context(), gone.ID); err != nil {
		t.Fatalf("DeleteOAuthClient: %v", err)
	}
	_, err := s.OAuthClientByID(t.Context(), gone.ID)
	wantNotFound(t, "OAuthClientByID(deleted)", err)
	for _, u := range []gatehouse.User{u1, u2} {
		_, err := s.Consent(t.Context(), u.ID, gone.ID)
		wantNotFound(t, "Consent(deleted client)", err)
	}
	cs, err := s.Consents(t.Context(), u1.ID)
	if err != nil {
		t.Fatalf("Consents: %v", err)
	}
	if want := []string{kept.ID}; !slices.Equal(consentClientIDs(cs), want) {
		t.Errorf("Consents after deleting a client = %q, want %q", consentClientIDs(cs), want)
	}
	mustConsent(t, s, u1.ID, kept.ID)
	left, err := s.OAuthClients(t.Context())
	if err != nil {
		t.Fatalf("OAuthClients: %v", err)
	}
	if want := []string{kept.ID}; !slices.Equal(clientIDs(left), want) {
		t.Errorf("OAuthClients after delete = %q, want %q", clientIDs(left), want)
	}

	wantNotFound(t, "DeleteOAuthClient(second time)", s.DeleteOAuthClient(t.Context(), gone.ID))
	// The id is free again.
	again := gone
	again.Name = "again"
	mustCreateOAuthClient(t, s, again)
	_, err = s.Consent(t.Context(), u1.ID, gone.ID)
	wantNotFound(t, "Consent(re-created client)", err)
}

func testOAuthConsentUpsert(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	u := mustCreateUser(t, s, "consent@example.com")
	c := mustCreateOAuthClient(t, s, newOAuthClient("wiki", now))
	zone := time.FixedZone("UTC-3", -3*3600)
	first := gatehouse.OAuthConsent{
		UserID:    u.ID,
		ClientID:  c.ID,
		Scopes:    []string{"openid", "profile"},
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 600000789, zone),
		UpdatedAt: time.Date(2026, 1, 2, 3, 4, 5, 600000789, zone),
	}
	mustSaveConsent(t, s, first)
	checkConsent(t, "Consent(first)", mustConsent(t, s, u.ID, c.ID), first)

	// Widened later: the scopes are replaced (not merged), UpdatedAt moves,
	// CreatedAt stays the first one's whatever the caller passes.
	second := gatehouse.OAuthConsent{
		UserID:    u.ID,
		ClientID:  c.ID,
		Scopes:    []string{"wiki:write", "openid", "offline_access"},
		CreatedAt: now,
		UpdatedAt: now,
	}
	mustSaveConsent(t, s, second)
	want := second
	want.CreatedAt = first.CreatedAt
	checkConsent(t, "Consent(after upsert)", mustConsent(t, s, u.ID, c.ID), want)

	// Narrowed to nothing.
	third := gatehouse.OAuthConsent{UserID: u.ID, ClientID: c.ID, CreatedAt: now.Add(time.Hour), UpdatedAt: now.Add(time.Hour)}
	mustSaveConsent(t, s, third)
	got := mustConsent(t, s, u.ID, c.ID)
	want = third
	want.CreatedAt = first.CreatedAt
	checkConsent(t, "Consent(after saving no scopes)", got, want)

	cs, err := s.Consents(t.Context(), u.ID)
	if err != nil {
		t.Fatalf("Consents: %v", err)
	}
	if len(cs) != 1 {
		t.Fatalf("Consents after three saves = %d rows, want 1", len(cs))
	}
	checkConsent(t, "Consents[0]", cs[0], want)
}

func testOAuthConsentUnknownUserOrClient(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	u := mustCreateUser(t, s, "consent-unknown@example.com")
	c := mustCreateOAuthClient(t, s, newOAuthClient("known", now))
	consent := func(userID, clientID string) gatehouse.OAuthConsent {
		return gatehouse.OAuthConsent{UserID: userID, ClientID: clientID, Scopes: []string{"openid"}, CreatedAt: now, UpdatedAt: now}
	}
	noUser, noClient := newID(), newID()
	wantNotFound(t, "SaveConsent(unknown user)", s.SaveConsent(t.Context(), consent(noUser, c.ID)))
	wantNotFound(t, "SaveConsent(unknown client)", s.SaveConsent(t.Context(), consent(u.ID, noClient)))
	wantNotFound(t, "SaveConsent(unknown both)", s.SaveConsent(t.Context(), consent(noUser, noClient)))
	// Nothing was stored.
	_, err := s.Consent(t.Context(), noUser, c.ID)
	wantNotFound(t, "Consent(unknown user)", err)
	_, err = s.Consent(t.Context(), u.ID, noClient)
	wantNotFound(t, "Consent(unknown client)", err)
	_, err = s.Consent(t.Context(), u.ID, c.ID)
	wantNotFound(t, "Consent(never given)", err)
	cs, err := s.Consents(t.Context(), u.ID)
	if err != nil {
		t.Fatalf("Consents: %v", err)
	}
	if len(cs) != 0 {
		t.Errorf("Consents after refused saves = %q, want none", consentClientIDs(cs))
	}
}

func testOAuthConsentsOfUser(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	a := mustCreateUser(t, s, "consents-a@example.com")
	b := mustCreateUser(t, s, "consents-b@example.com")
	c1 := mustCreateOAuthClient(t, s, newOAuthClient("c1", now))
	c2 := mustCreateOAuthClient(t, s, newOAuthClient("c2", now))
	c3 := mustCreateOAuthClient(t, s, newOAuthClient("c3", now))

	// a consented to c1 last, to c2 first; b only to c3.
	a1 := mustSaveConsent(t, s, gatehouse.OAuthConsent{UserID: a.ID, ClientID: c1.ID, Scopes: []string{"openid"}, CreatedAt: now, UpdatedAt: now})
	a2 := mustSaveConsent(t, s, gatehouse.OAuthConsent{UserID: a.ID, ClientID: c2.ID, Scopes: []string{"email", "openid"},
		CreatedAt: now.Add(-time.Hour), UpdatedAt: now.Add(-time.Minute)})
	b3 := mustSaveConsent(t, s, gatehouse.OAuthConsent{UserID: b.ID, ClientID: c3.ID, Scopes: []string{"profile"}, CreatedAt: now, UpdatedAt: now})

	got, err := s.Consents(t.Context(), a.ID)
	if err != nil {
		t.Fatalf("Consents(a): %v", err)
	}
	if want := []string{c2.ID, c1.ID}; !slices.Equal(consentClientIDs(got), want) {
		t.Fatalf("Consents(a) = %q, want %q (oldest first, a's only)", consentClientIDs(got), want)
	}
	checkConsent(t, "Consents(a)[0]", got[0], a2)
	checkConsent(t, "Consents(a)[1]", got[1], a1)

	got, err = s.Consents(t.Context(), b.ID)
	if err != nil {
		t.Fatalf("Consents(b): %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("Consents(b) = %q, want only %s", consentClientIDs(got), c3.ID)
	}
	checkConsent(t, "Consents(b)[0]", got[0], b3)

	got, err = s.Consents(t.Context(), newID())
	if err != nil {
		t.Fatalf("Consents(unknown user): %v", err)
	}
	if len(got) != 0 {
		t.Errorf("Consents(unknown user) = %q, want none", consentClientIDs(got))
	}
}

func testOAuthDeleteConsent(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	a := mustCreateUser(t, s, "delete-consent-a@example.com")
	b := mustCreateUser(t, s, "delete-consent-b@example.com")
	c := mustCreateOAuthClient(t, s, newOAuthClient("wiki", now))
	other := mustCreateOAuthClient(t, s, newOAuthClient("other", now))
	mustSaveConsent(t, s, gatehouse.OAuthConsent{UserID: a.ID, ClientID: c.ID, Scopes: []string{"openid"}, CreatedAt: now, UpdatedAt: now})
	mustSaveConsent(t, s, gatehouse.OAuthConsent{UserID: a.ID, ClientID: other.ID, Scopes: []string{"openid"}, CreatedAt: now, UpdatedAt: now})
	mustSaveConsent(t, s, gatehouse.OAuthConsent{UserID: b.ID, ClientID: c.ID, Scopes: []string{"openid"}, CreatedAt: now, UpdatedAt: now})

	if err := s.DeleteConsent(t.Context(), a.ID, c.ID); err != nil {
		t.Fatalf("DeleteConsent: %v", err)
	}
	_, err := s.Consent(t.Context(), a.ID, c.ID)
	wantNotFound(t, "Consent(deleted)", err)
	wantNotFound(t, "DeleteConsent(second time)", s.DeleteConsent(t.Context(), a.ID, c.ID))
	wantNotFound(t, "DeleteConsent(unknown client)", s.DeleteConsent(t.Context(), a.ID, newID()))
	wantNotFound(t, "DeleteConsent(unknown user)", s.DeleteConsent(t.Context(), newID(), c.ID))
	// The user's other consent and the other user's consent to the client stay.
	mustConsent(t, s, a.ID, other.ID)
	mustConsent(t, s, b.ID, c.ID)
	// The client itself stays.
	if _, err := s.OAuthClientByID(t.Context(), c.ID); err != nil {
		t.Errorf("OAuthClientByID after DeleteConsent: %v", err)
	}
}

func testOAuthSessionFields(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	u := mustCreateUser(t, s, "oauth-session@example.com")
	sess := newSession(u.ID, now.Add(-time.Minute))
	sess.ClientID = newID()
	sess.Scope = "openid profile offline_access wiki:write"
	sess.CertThumbprint = "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"
	sess.ParentID = newID()
	mustCreateSession(t, s, sess)
	plain := mustCreateSession(t, s, newSession(u.ID, now.Add(-2*time.Minute)))

	checkSession(t, "SessionByID(client session)", mustSession(t, s, sess.ID), sess)
	checkSession(t, "SessionByID(own session)", mustSession(t, s, plain.ID), plain)

	got, _, err := s.RotateSession(t.Context(), sess.ID, 1, now, now.Add(-idleTTL))
	if err != nil {
		t.Fatalf("RotateSession: %v", err)
	}
	want := sess
	want.Gen, want.RotatedAt, want.LastUsedAt = 2, now, now
	checkSession(t, "RotateSession", got, want)
	checkSession(t, "SessionByID after RotateSession", mustSession(t, s, sess.ID), want)

	live, err := s.ListSessions(t.Context(), u.ID, now, now.Add(-idleTTL))
	if err != nil {
		t.Fatalf("ListSessions: %v", err)
	}
	if len(live) != 2 {
		t.Fatalf("ListSessions = %q, want both sessions", sessionIDs(live))
	}
	checkSession(t, "ListSessions[0]", live[0], want) // the newer
	checkSession(t, "ListSessions[1]", live[1], plain)
}

func testOAuthClientSessionIDs(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	u1 := mustCreateUser(t, s, "client-sessions-1@example.com")
	u2 := mustCreateUser(t, s, "client-sessions-2@example.com")
	c1, c2 := newID(), newID()
	session := func(u gatehouse.User, clientID string) gatehouse.Session {
		sess := newSession(u.ID, now.Add(-time.Hour))
		sess.ClientID, sess.Scope = clientID, "openid"
		return mustCreateSession(t, s, sess)
	}
	u1c1 := session(u1, c1)
	u1c1Revoked := session(u1, c1)
	// Expired, and idle past any cutoff, but never revoked: still counted.
	expired := newSession(u1.ID, now.Add(-60*24*time.Hour))
	expired.ClientID = c1
	mustCreateSession(t, s, expired)
	u2c1 := session(u2, c1)
	u1c2 := session(u1, c2)
	session(u1, "") // Gatehouse's own
	session(u2, "")
	if err := s.RevokeSession(t.Context(), u1c1Revoked.ID, "logout", now, now.Add(logTTL)); err != nil {
		t.Fatalf("RevokeSession: %v", err)
	}

	for _, tc := range []struct {
		name             string
		userID, clientID string
		want             []string
	}{
		{"one user's", u1.ID, c1, []string{u1c1.ID, expired.ID}},
		{"the other user's", u2.ID, c1, []string{u2c1.ID}},
		{"every user's", "", c1, []string{u1c1.ID, expired.ID, u2c1.ID}},
		{"another client's", u1.ID, c2, []string{u1c2.ID}},
		{"another client's, every user's", "", c2, []string{u1c2.ID}},
		{"a user without sessions of the client", u2.ID, c2, nil},
		{"an unknown client's", "", newID(), nil},
		{"an unknown user's", newID(), c1, nil},
	} {
		got, err := s.ClientSessionIDs(t.Context(), tc.userID, tc.clientID)
		if err != nil {
			t.Errorf("ClientSessionIDs(%s): %v", tc.name, err)
			continue
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(tc.want))
		if !slices.Equal(got, want) && (len(got) != 0 || len(want) != 0) {
			t.Errorf("ClientSessionIDs(%s) = %q, want %q", tc.name, got, want)
		}
	}

	// Revoking every session of the user leaves none of the client's.
	if _, err := s.RevokeUserSessions(t.Context(), u1.ID, "", "logout", now, now.Add(logTTL)); err != nil {
		t.Fatalf("RevokeUserSessions: %v", err)
	}
	got, err := s.ClientSessionIDs(t.Context(), "", c1)
	if err != nil {
		t.Fatalf("ClientSessionIDs: %v", err)
	}
	if want := []string{u2c1.ID}; !slices.Equal(got, want) {
		t.Errorf("ClientSessionIDs after revoking u1's sessions = %q, want %q", got, want)
	}
}

func testSecretByID(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	code := newSecret(gatehouse.SecretOAuthCode, newID(), now)
	code.Data = `{"client_id":"wiki","session_id":"` + newID() + `"}`
	code.ExpiresAt = now.Add(time.Minute)
	mustCreateSecret(t, s, code)
	// Expired an hour ago, and not pruned yet.
	expired := newSecret(gatehouse.SecretOAuthRequest, newID(), now.Add(-2*time.Hour))
	expired.ExpiresAt = now.Add(-time.Hour)
	mustCreateSecret(t, s, expired)

	got, err := s.SecretByID(t.Context(), gatehouse.SecretOAuthCode, code.ID)
	if err != nil {
		t.Fatalf("SecretByID(unused): %v", err)
	}
	checkSecret(t, "SecretByID(unused)", got, code)

	usedAt := now.Add(10 * time.Second)
	if _, err := s.UseSecret(t.Context(), code.Kind, code.ID, code.MAC, usedAt, maxGuesses); err != nil {
		t.Fatalf("UseSecret: %v", err)
	}
	got, err = s.SecretByID(t.Context(), gatehouse.SecretOAuthCode, code.ID)
	if err != nil {
		t.Fatalf("SecretByID(used): %v", err)
	}
	want := code
	want.UsedAt = usedAt
	checkSecret(t, "SecretByID(used)", got, want)

	got, err = s.SecretByID(t.Context(), gatehouse.SecretOAuthRequest, expired.ID)
	if err != nil {
		t.Fatalf("SecretByID(expired): %v", err)
	}
	checkSecret(t, "SecretByID(expired)", got, expired)

	_, err = s.SecretByID(t.Context(), gatehouse.SecretOAuthCode, expired.ID)
	wantNotFound(t, "SecretByID(another kind)", err)
	_, err = s.SecretByID(t.Context(), gatehouse.SecretOAuthRequest, code.ID)
	wantNotFound(t, "SecretByID(another kind)", err)
	_, err = s.SecretByID(t.Context(), gatehouse.SecretOAuthRequest, newID())
	wantNotFound(t, "SecretByID(unknown id)", err)

	// Pruned: gone. The used code, not yet expired, stays.
	if err := s.PruneSecrets(t.Context(), now); err != nil {
		t.Fatalf("PruneSecrets: %v", err)
	}
	_, err = s.SecretByID(t.Context(), gatehouse.SecretOAuthRequest, expired.ID)
	wantNotFound(t, "SecretByID(pruned)", err)
	if _, err := s.SecretByID(t.Context(), gatehouse.SecretOAuthCode, code.ID); err != nil {
		t.Errorf("SecretByID(used, not expired, after PruneSecrets): %v", err)
	}
}
