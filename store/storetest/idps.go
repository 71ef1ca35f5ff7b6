package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
)

// testIdPs runs the conformance cases of identity providers and
// identities as subtests (one entry in Run).
func testIdPs(t *testing.T, s gatehouse.Store) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s gatehouse.Store)
	}{
		{"ProviderRoundTrip", testProviderRoundTrip},
		{"ProviderReplaceOtherIssuer", testProviderReplaceOtherIssuer},
		{"DeleteProvider", testDeleteProvider},
		{"IdentityRoundTrip", testIdentityRoundTrip},
		{"CreateIdentityRefusals", testCreateIdentityRefusals},
		{"CreateUserWithIdentity", testCreateUserWithIdentity},
		{"DeleteIdentityLastWayIn", testDeleteIdentityLastWayIn},
		{"DeleteIdentityConcurrent", testDeleteIdentityConcurrent},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, s) })
	}
}

// --- fixtures ---------------------------------------------------------------

func newProvider(name string, now time.Time) gatehouse.IdentityProvider {
	return gatehouse.IdentityProvider{
		Name:         name,
		Kind:         gatehouse.ProviderOIDC,
		DisplayName:  "Example " + name,
		Issuer:       "https://" + name + ".example.com",
		ClientID:     "client-" + name,
		SealedSecret: append([]byte{0x01, 0x00}, randomBytes(40)...), // a zero byte: binary, not text
		Scopes:       []string{"openid", "email", "profile"},
		CreatedAt:    now,
		UpdatedAt:    now,
	}
}

func mustPutProvider(t *testing.T, s gatehouse.Store, p gatehouse.IdentityProvider) gatehouse.IdentityProvider {
	t.Helper()
	if err := s.PutIdentityProvider(t.Context(), p); err != nil {
		t.Fatalf("PutIdentityProvider(%s): %v", p.Name, err)
	}
	return p
}

func newIdentity(provider, userID string, now time.Time) gatehouse.Identity {
	return gatehouse.Identity{
		ID: newID(), Provider: provider, Subject: "sub-" + newID(), UserID: userID,
		Email: "linked-" + newID()[:8] + "@example.com", CreatedAt: now,
	}
}

func mustCreateIdentity(t *testing.T, s gatehouse.Store, i gatehouse.Identity) gatehouse.Identity {
	t.Helper()
	if err := s.CreateIdentity(t.Context(), i); err != nil {
		t.Fatalf("CreateIdentity(%s): %v", i.ID, err)
	}
	return i
}

func mustIdentities(t *testing.T, s gatehouse.Store, userID string) []gatehouse.Identity {
	t.Helper()
	list, err := s.Identities(t.Context(), userID)
	if err != nil {
		t.Fatalf("Identities(%s): %v", userID, err)
	}
	return list
}

func identityIDs(list []gatehouse.Identity) []string {
	out := make([]string, len(list))
	for i, x := range list {
		out[i] = x.ID
	}
	return out
}

// passwordless creates a user without a password (signed up through a
// provider).
func passwordless(t *testing.T, s gatehouse.Store, email string) gatehouse.User {
	t.Helper()
	u := newUser(email)
	u.PasswordHash = ""
	if err := s.CreateUser(t.Context(), u); err != nil {
		t.Fatalf("CreateUser(%q): %v", email, err)
	}
	return u
}

func checkProvider(t *testing.T, what string, got, want gatehouse.IdentityProvider) {
	t.Helper()
	var d diffs
	d.str("Name", got.Name, want.Name)
	d.str("Kind", string(got.Kind), string(want.Kind))
	d.str("DisplayName", got.DisplayName, want.DisplayName)
	d.str("Issuer", got.Issuer, want.Issuer)
	d.str("ClientID", got.ClientID, want.ClientID)
	if !bytes.Equal(got.SealedSecret, want.SealedSecret) {
		d = append(d, "SealedSecret differs")
	}
	if !slices.Equal(got.Scopes, want.Scopes) {
		d = append(d, fmt.Sprintf("Scopes: got %q, want %q", got.Scopes, want.Scopes))
	}
	d.str("AuthURL", got.AuthURL, want.AuthURL)
	d.str("TokenURL", got.TokenURL, want.TokenURL)
	d.str("UserinfoURL", got.UserinfoURL, want.UserinfoURL)
	d.any("NoSignup", got.NoSignup, want.NoSignup)
	d.time("CreatedAt", got.CreatedAt, want.CreatedAt)
	d.time("UpdatedAt", got.UpdatedAt, want.UpdatedAt)
	for _, s := range d {
		t.Errorf("%s: provider %s", what, s)
	}
}

func checkIdentity(t *testing.T, what string, got, want gatehouse.Identity) {
	t.Helper()
	var d diffs
	d.str("ID", got.ID, want.ID)
	d.str("Provider", got.Provider, want.Provider)
	d.str("Subject", got.Subject, want.Subject)
	d.str("UserID", got.UserID, want.UserID)
	d.str("Email", got.Email, want.Email)
	d.time("CreatedAt", got.CreatedAt, want.CreatedAt)
	for _, s := range d {
		t.Errorf("%s: identity %s", what, s)
	}
}

// --- cases ------------------------------------------------------------------

func testProviderRoundTrip(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	gh := newProvider("github", now)
	gh.Kind, gh.Issuer = gatehouse.ProviderGitHub, "https://github.com"
	gh.AuthURL, gh.TokenURL, gh.UserinfoURL = "https://github.com/login/oauth/authorize",
		"https://github.com/login/oauth/access_token", "https://api.github.com/user"
	gh.Scopes = []string{"read:user", "user:email"}
	gh.NoSignup = true
	mustPutProvider(t, s, gh)
	google := mustPutProvider(t, s, newProvider("google", now))

	got, err := s.IdentityProvider(t.Context(), "github")
	if err != nil {
		t.Fatalf("IdentityProvider(github): %v", err)
	}
	checkProvider(t, "IdentityProvider(github)", got, gh)
	_, err = s.IdentityProvider(t.Context(), "gitlab")
	wantNotFound(t, "IdentityProvider(unknown)", err)

	// A replacement of the same issuer changes the settings and keeps the
	// creation time.
	later := now.Add(time.Hour)
	changed := google
	changed.DisplayName, changed.ClientID, changed.Scopes = "Google", "client-2", []string{"openid"}
	changed.SealedSecret = []byte{0x02, 0x03}
	changed.CreatedAt, changed.UpdatedAt = later, later
	mustPutProvider(t, s, changed)
	list, err := s.IdentityProviders(t.Context())
	if err != nil {
		t.Fatalf("IdentityProviders: %v", err)
	}
	if len(list) != 2 || list[0].Name != "github" || list[1].Name != "google" {
		t.Fatalf("IdentityProviders = %v, want github and google by name", list)
	}
	want := changed
	want.CreatedAt = now
	checkProvider(t, "IdentityProviders()[google] after replace", list[1], want)
}

func testProviderReplaceOtherIssuer(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	p := mustPutProvider(t, s, newProvider("corp", now))
	u := mustCreateUser(t, s, "idp-replace@example.com")
	kept := mustCreateIdentity(t, s, newIdentity(p.Name, u.ID, now))

	same := p
	same.DisplayName = "Corp SSO"
	mustPutProvider(t, s, same)
	if got := mustIdentities(t, s, u.ID); len(got) != 1 {
		t.Fatalf("identities after a replace with the same issuer = %v, want the one kept", identityIDs(got))
	}

	// Subjects are unique per issuer only: a subject of the old issuer
	// must not sign anyone in at the new one.
	other := p
	other.Issuer = "https://another-corp.example.com"
	mustPutProvider(t, s, other)
	if got := mustIdentities(t, s, u.ID); len(got) != 0 {
		t.Errorf("identities after a replace with another issuer = %v, want none", identityIDs(got))
	}
	_, err := s.IdentityBySubject(t.Context(), p.Name, kept.Subject)
	wantNotFound(t, "IdentityBySubject(subject of the old issuer)", err)
}

func testDeleteProvider(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	p := mustPutProvider(t, s, newProvider("gone", now))
	keep := mustPutProvider(t, s, newProvider("stays", now))
	u := mustCreateUser(t, s, "idp-delete-provider@example.com")
	mustCreateIdentity(t, s, newIdentity(p.Name, u.ID, now))
	kept := mustCreateIdentity(t, s, newIdentity(keep.Name, u.ID, now.Add(time.Second)))

	if err := s.DeleteIdentityProvider(t.Context(), p.Name); err != nil {
		t.Fatalf("DeleteIdentityProvider: %v", err)
	}
	_, err := s.IdentityProvider(t.Context(), p.Name)
	wantNotFound(t, "IdentityProvider(deleted)", err)
	wantNotFound(t, "DeleteIdentityProvider(again)", s.DeleteIdentityProvider(t.Context(), p.Name))
	if got := mustIdentities(t, s, u.ID); !slices.Equal(identityIDs(got), []string{kept.ID}) {
		t.Errorf("identities after deleting a provider = %v, want only %s (the other provider's)", identityIDs(got), kept.ID)
	}
}

func testIdentityRoundTrip(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	p := mustPutProvider(t, s, newProvider("roundtrip", now))
	u := mustCreateUser(t, s, "idp-roundtrip@example.com")
	other := mustCreateUser(t, s, "idp-roundtrip-other@example.com")
	second := mustCreateIdentity(t, s, newIdentity(p.Name, u.ID, now.Add(time.Second)))
	first := mustCreateIdentity(t, s, newIdentity(p.Name, u.ID, now))
	mustCreateIdentity(t, s, newIdentity(p.Name, other.ID, now))

	got, err := s.IdentityBySubject(t.Context(), p.Name, first.Subject)
	if err != nil {
		t.Fatalf("IdentityBySubject: %v", err)
	}
	checkIdentity(t, "IdentityBySubject", got, first)
	_, err = s.IdentityBySubject(t.Context(), "another", first.Subject)
	wantNotFound(t, "IdentityBySubject(another provider)", err)
	_, err = s.IdentityBySubject(t.Context(), p.Name, "SUB-"+first.Subject[4:])
	wantNotFound(t, "IdentityBySubject(subject in another case)", err)

	list := mustIdentities(t, s, u.ID)
	if !slices.Equal(identityIDs(list), []string{first.ID, second.ID}) {
		t.Fatalf("Identities = %v, want %s then %s (oldest first)", identityIDs(list), first.ID, second.ID)
	}
	checkIdentity(t, "Identities()[1]", list[1], second)
	if n := len(mustIdentities(t, s, newID())); n != 0 {
		t.Errorf("Identities(unknown user) has %d entries", n)
	}
}

func testCreateIdentityRefusals(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	p := mustPutProvider(t, s, newProvider("refusals", now))
	u := mustCreateUser(t, s, "idp-refusals@example.com")
	other := mustCreateUser(t, s, "idp-refusals-other@example.com")
	i := mustCreateIdentity(t, s, newIdentity(p.Name, u.ID, now))

	dup := newIdentity(p.Name, other.ID, now)
	dup.Subject = i.Subject
	if err := s.CreateIdentity(t.Context(), dup); !errors.Is(err, gatehouse.ErrStale) {
		t.Errorf("CreateIdentity(subject linked to another user) = %v, want ErrStale", err)
	}
	dup.UserID = u.ID
	if err := s.CreateIdentity(t.Context(), dup); !errors.Is(err, gatehouse.ErrStale) {
		t.Errorf("CreateIdentity(subject linked to the same user) = %v, want ErrStale", err)
	}
	wantNotFound(t, "CreateIdentity(unknown user)", s.CreateIdentity(t.Context(), newIdentity(p.Name, newID(), now)))
	wantNotFound(t, "CreateIdentity(unknown provider)", s.CreateIdentity(t.Context(), newIdentity("nope", u.ID, now)))

	// The same subject at another provider is another identity.
	p2 := mustPutProvider(t, s, newProvider("refusals-2", now))
	same := newIdentity(p2.Name, other.ID, now)
	same.Subject = i.Subject
	mustCreateIdentity(t, s, same)
	if n := len(mustIdentities(t, s, other.ID)); n != 1 {
		t.Errorf("Identities(other) = %d, want 1", n)
	}
}

func testCreateUserWithIdentity(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	p := mustPutProvider(t, s, newProvider("signup", now))
	u := newUser("idp-signup@example.com")
	u.PasswordHash, u.EmailVerified = "", true
	i := newIdentity(p.Name, u.ID, now)
	if err := s.CreateUserWithIdentity(t.Context(), u, i); err != nil {
		t.Fatalf("CreateUserWithIdentity: %v", err)
	}
	checkUser(t, "UserByID after CreateUserWithIdentity", mustUser(t, s, u.ID), u)
	got, err := s.IdentityBySubject(t.Context(), p.Name, i.Subject)
	if err != nil {
		t.Fatalf("IdentityBySubject: %v", err)
	}
	checkIdentity(t, "IdentityBySubject after CreateUserWithIdentity", got, i)

	// Email taken: no identity is left behind.
	u2 := newUser("IDP-SIGNUP@example.com")
	i2 := newIdentity(p.Name, u2.ID, now)
	if err := s.CreateUserWithIdentity(t.Context(), u2, i2); !errors.Is(err, gatehouse.ErrEmailTaken) {
		t.Errorf("CreateUserWithIdentity(email taken) = %v, want ErrEmailTaken", err)
	}
	_, err = s.IdentityBySubject(t.Context(), p.Name, i2.Subject)
	wantNotFound(t, "identity of a refused sign-up", err)

	// Subject taken: no user is left behind.
	u3 := newUser("idp-signup-3@example.com")
	i3 := newIdentity(p.Name, u3.ID, now)
	i3.Subject = i.Subject
	if err := s.CreateUserWithIdentity(t.Context(), u3, i3); !errors.Is(err, gatehouse.ErrStale) {
		t.Errorf("CreateUserWithIdentity(subject taken) = %v, want ErrStale", err)
	}
	_, err = s.UserByID(t.Context(), u3.ID)
	wantNotFound(t, "user of a refused sign-up", err)
}

func testDeleteIdentityLastWayIn(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	p := mustPutProvider(t, s, newProvider("lastway", now))

	// Only one identity and no password: it stays.
	u := passwordless(t, s, "idp-lastway@example.com")
	only := mustCreateIdentity(t, s, newIdentity(p.Name, u.ID, now))
	if err := s.DeleteIdentity(t.Context(), u.ID, only.ID); !errors.Is(err, gatehouse.ErrStale) {
		t.Errorf("DeleteIdentity(last way in) = %v, want ErrStale", err)
	}
	if n := len(mustIdentities(t, s, u.ID)); n != 1 {
		t.Fatalf("identities after a refused delete = %d, want 1", n)
	}
	// Another user's identity, or none: not found.
	other := mustCreateUser(t, s, "idp-lastway-other@example.com")
	theirs := mustCreateIdentity(t, s, newIdentity(p.Name, other.ID, now))
	wantNotFound(t, "DeleteIdentity(another user's identity)", s.DeleteIdentity(t.Context(), u.ID, theirs.ID))
	wantNotFound(t, "DeleteIdentity(unknown id)", s.DeleteIdentity(t.Context(), u.ID, newID()))

	// A passkey is another way in.
	mustCreatePasskey(t, s, newPasskey(u.ID, now))
	if err := s.DeleteIdentity(t.Context(), u.ID, only.ID); err != nil {
		t.Errorf("DeleteIdentity(with a passkey left) = %v, want nil", err)
	}
	// So is a password.
	if err := s.DeleteIdentity(t.Context(), other.ID, theirs.ID); err != nil {
		t.Errorf("DeleteIdentity(with a password left) = %v, want nil", err)
	}
	wantNotFound(t, "DeleteIdentity(again)", s.DeleteIdentity(t.Context(), other.ID, theirs.ID))

	// So is another identity, until it is the last.
	v := passwordless(t, s, "idp-lastway-two@example.com")
	a := mustCreateIdentity(t, s, newIdentity(p.Name, v.ID, now))
	b := mustCreateIdentity(t, s, newIdentity(p.Name, v.ID, now.Add(time.Second)))
	if err := s.DeleteIdentity(t.Context(), v.ID, a.ID); err != nil {
		t.Errorf("DeleteIdentity(one of two) = %v, want nil", err)
	}
	if err := s.DeleteIdentity(t.Context(), v.ID, b.ID); !errors.Is(err, gatehouse.ErrStale) {
		t.Errorf("DeleteIdentity(the other, now last) = %v, want ErrStale", err)
	}
}

func testDeleteIdentityConcurrent(t *testing.T, s gatehouse.Store) {
	now := baseTime()
	p := mustPutProvider(t, s, newProvider("concurrent", now))
	for round := range 5 {
		u := passwordless(t, s, "idp-concurrent-"+newID()[:8]+"@example.com")
		ids := []gatehouse.Identity{
			mustCreateIdentity(t, s, newIdentity(p.Name, u.ID, now)),
			mustCreateIdentity(t, s, newIdentity(p.Name, u.ID, now.Add(time.Second))),
		}
		errs := concurrently(2, func(i int) error { return s.DeleteIdentity(t.Context(), u.ID, ids[i].ID) })
		ok, stale := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, gatehouse.ErrStale):
				stale++
			default:
				t.Errorf("round %d: DeleteIdentity: %v", round, err)
			}
		}
		if ok != 1 || stale != 1 {
			t.Errorf("round %d: concurrent deletes of a user's two identities: %d succeeded, %d refused; want exactly one each (%v)", round, ok, stale, errs)
		}
		if n := len(mustIdentities(t, s, u.ID)); n != 1 {
			t.Errorf("round %d: %d identities left, want 1", round, n)
		}
	}
}
