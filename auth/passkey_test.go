package auth_test

import (
	"context"
	"errors"
	"testing"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/auth"
)

// Ceremonies with a real authenticator run in Chromium (clients/web
// test/passkey.test.mjs); these pin down what needs none.

func newPasskeyService(t *testing.T) mailService {
	t.Helper()
	wa, err := webauthn.New(&webauthn.Config{RPID: "localhost", RPDisplayName: "Gatehouse", RPOrigins: []string{"http://localhost:8080"}})
	if err != nil {
		t.Fatal(err)
	}
	box := &mailbox{}
	svc, clk, st := newServiceConfig(t, func(_ *auth.Config, d *auth.Deps) {
		d.Mailer, d.Passkeys, d.WebAuthn = box, d.Store, wa
		box.secrets = d.Secrets
	})
	return mailService{svc: svc, clk: clk, st: st, mail: box}
}

func TestPasskeyCeremoniesRefuseGarbage(t *testing.T) {
	m := newPasskeyService(t)
	ctx := context.Background()
	g := signup(t, m.svc, "ada@example.com")
	p, _ := m.svc.Authenticate(ctx, g.AccessToken)
	creation, err := m.svc.BeginPasskeyRegistration(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if creation.Response.AuthenticatorSelection.ResidentKey != "required" {
		t.Fatalf("residentKey = %q, want required", creation.Response.AuthenticatorSelection.ResidentKey)
	}
	for _, bad := range []string{`{}`, `{"id":"x","rawId":"x","type":"public-key","response":{}}`, `not json`} {
		if _, err := m.svc.FinishPasskeyRegistration(ctx, p, []byte(bad), ""); !errors.Is(err, auth.ErrBadCredential) {
			t.Errorf("registration with %q: %v, want ErrBadCredential", bad, err)
		}
	}
	_, challengeID, err := m.svc.BeginPasskeyLogin(ctx, "")
	if err != nil || challengeID == "" {
		t.Fatalf("begin sign-in: %q, %v", challengeID, err)
	}
	for _, in := range []auth.PasskeyLoginInput{
		{ChallengeID: challengeID, Credential: []byte(`{}`)},
		{ChallengeID: "not-a-challenge", Credential: []byte(`{}`)},
		{ChallengeID: challengeID, Credential: []byte(`{"id":"x"}`), MFAToken: "forged.token"},
	} {
		if _, err := m.svc.FinishPasskeyLogin(ctx, in, client); !errors.Is(err, auth.ErrInvalidCredential) {
			t.Errorf("sign-in %+v: %v, want ErrInvalidCredential", in, err)
		}
	}
	if _, _, err := m.svc.BeginPasskeyLogin(ctx, "forged.token"); !errors.Is(err, auth.ErrInvalidCredential) {
		t.Errorf("second-factor begin with a forged mfa_token: %v", err)
	}
}

func TestDeleteLastPasskeyOfPasswordlessAccount(t *testing.T) {
	m := newPasskeyService(t)
	ctx := context.Background()
	g := signup(t, m.svc, "ada@example.com")
	p, _ := m.svc.Authenticate(ctx, g.AccessToken)
	pk := gatehouse.Passkey{ID: "pk-1", UserID: g.User.ID, CredentialID: []byte{1, 2, 3}, Credential: []byte(`{}`), Name: "laptop", CreatedAt: m.clk.Now().UTC()}
	if err := m.st.CreatePasskey(ctx, pk); err != nil {
		t.Fatal(err)
	}
	// With a password left, the passkey can go; another user's id is 404.
	if err := m.svc.DeletePasskey(ctx, p, "someone-elses"); !errors.Is(err, gatehouse.ErrNotFound) {
		t.Fatalf("deleting an unknown passkey: %v", err)
	}
	if err := m.st.SetPasswordHash(ctx, g.User.ID, "", ""); err != nil {
		t.Fatal(err)
	}
	if err := m.svc.DeletePasskey(ctx, p, "pk-1"); !errors.Is(err, auth.ErrLastLoginMethod) {
		t.Fatalf("deleting the only passkey of an account without a password: %v, want ErrLastLoginMethod", err)
	}
	pk.ID, pk.CredentialID = "pk-2", []byte{4, 5, 6}
	if err := m.st.CreatePasskey(ctx, pk); err != nil {
		t.Fatal(err)
	}
	if err := m.svc.DeletePasskey(ctx, p, "pk-1"); err != nil {
		t.Fatalf("deleting one of two passkeys: %v", err)
	}
}

func TestPasswordLoginOfPasskeyUserNeedsTheSecondFactor(t *testing.T) {
	m := newPasskeyService(t)
	ctx := context.Background()
	g := signup(t, m.svc, "ada@example.com")
	if err := m.st.CreatePasskey(ctx, gatehouse.Passkey{ID: "pk-1", UserID: g.User.ID, CredentialID: []byte{9}, Credential: []byte(`{}`), CreatedAt: m.clk.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	_, err := m.svc.Login(ctx, auth.LoginInput{Email: "ada@example.com", Password: passphrase}, client)
	var mfaErr *auth.MFARequiredError
	if !errors.As(err, &mfaErr) || len(mfaErr.Methods) != 1 || mfaErr.Methods[0] != "passkey" {
		t.Fatalf("password login of a passkey user: %v (%+v), want mfa_required with [passkey]", err, mfaErr)
	}
	if _, _, err := m.svc.BeginPasskeyLogin(ctx, mfaErr.Token); err != nil {
		t.Fatalf("second-factor begin with the mfa_token: %v", err)
	}
}

func TestAdminResetRemovesPasskeysToo(t *testing.T) {
	m := newPasskeyService(t)
	ctx := context.Background()
	g := signup(t, m.svc, "ada@example.com")
	if err := m.st.CreatePasskey(ctx, gatehouse.Passkey{ID: "pk-1", UserID: g.User.ID, CredentialID: []byte{7}, Credential: []byte(`{}`), CreatedAt: m.clk.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	if err := m.svc.AdminResetMFA(ctx, g.User.ID); err != nil {
		t.Fatal(err)
	}
	if n, _ := m.st.CountPasskeys(ctx, g.User.ID); n != 0 {
		t.Fatalf("%d passkeys left after the admin removed every second factor", n)
	}
	if _, err := m.svc.Login(ctx, auth.LoginInput{Email: "ada@example.com", Password: passphrase}, client); err != nil {
		t.Fatalf("login after the reset: %v, want a session with the password alone", err)
	}
}
