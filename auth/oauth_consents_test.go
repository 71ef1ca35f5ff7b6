package auth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/auth"
)

// consentAndExchange gives u's consent to c and redeems the code: the
// grant of a session authorized for c.
func consentAndExchange(t *testing.T, svc *auth.Service, u auth.Grant, c gatehouse.OAuthClient) auth.OAuthGrant {
	t.Helper()
	yes := true
	code, _ := authorize(t, svc, u, c, []string{"openid", "offline_access"}, &yes)
	if code == "" {
		t.Fatal("consent given: no code")
	}
	g, err := svc.ExchangeCode(context.Background(), c, code, c.RedirectURIs[0], pkceVerifier, "", client)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return g
}

func active(t *testing.T, svc *auth.Service, accessToken string) bool {
	t.Helper()
	in, err := svc.Introspect(context.Background(), accessToken, "", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	return in.Active
}

func TestConsentsListAndRevoke(t *testing.T) {
	svc, clk := newOAuth(t)
	ctx := context.Background()
	alice := signup(t, svc, "alice-consents@example.com")
	bob := signup(t, svc, "bob-consents@example.com")
	printer, _ := createClient(t, svc, auth.OAuthClientInput{Name: "Printer", RedirectURIs: []string{"https://printer.test/cb"}})
	mailer, _ := createClient(t, svc, auth.OAuthClientInput{Name: "Mailer", RedirectURIs: []string{"https://mailer.test/cb"}})

	alicePrinter := consentAndExchange(t, svc, alice, printer)
	clk.Advance(time.Second) // consents are listed oldest first
	aliceMailer := consentAndExchange(t, svc, alice, mailer)
	bobPrinter := consentAndExchange(t, svc, bob, printer)

	list, err := svc.Consents(ctx, alice.User.ID)
	if err != nil || len(list) != 2 {
		t.Fatalf("alice's consents: %v %+v", err, list)
	}
	if list[0].ClientID != printer.ID || list[0].ClientName != "Printer" || list[1].ClientName != "Mailer" ||
		len(list[0].Scopes) != 2 || list[0].CreatedAt.IsZero() {
		t.Errorf("alice's consents: %+v", list)
	}

	if err := svc.RevokeConsent(ctx, alice.User.ID, printer.ID); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	// That client's session of that user is over; nothing else is.
	if active(t, svc, alicePrinter.AccessToken) {
		t.Error("the access token of the revoked app is still active")
	}
	if _, err := svc.RefreshOAuth(ctx, printer, alicePrinter.RefreshToken, "", client); err == nil {
		t.Error("the refresh token of the revoked app still works")
	}
	if !active(t, svc, aliceMailer.AccessToken) || !active(t, svc, bobPrinter.AccessToken) {
		t.Error("revoking one consent ended other sessions")
	}
	if _, err := svc.Authenticate(ctx, alice.AccessToken); err != nil {
		t.Errorf("alice's own session ended: %v", err)
	}
	if list, _ := svc.Consents(ctx, alice.User.ID); len(list) != 1 || list[0].ClientID != mailer.ID {
		t.Errorf("after revoking: %+v", list)
	}
	if _, res := authorize(t, svc, alice, printer, []string{"openid"}, nil); !res.ConsentRequired {
		t.Error("the revoked consent still counts")
	}

	if err := svc.RevokeConsent(ctx, alice.User.ID, printer.ID); !errors.Is(err, gatehouse.ErrNotFound) {
		t.Errorf("revoking again: %v, want not found", err)
	}
	if err := svc.RevokeConsent(ctx, bob.User.ID, mailer.ID); !errors.Is(err, gatehouse.ErrNotFound) {
		t.Errorf("revoking a consent never given: %v, want not found", err)
	}
	if !active(t, svc, bobPrinter.AccessToken) {
		t.Error("a refused revoke ended a session")
	}

	// A removed client's consents are gone with it.
	if err := svc.RemoveOAuthClient(ctx, mailer.ID); err != nil {
		t.Fatal(err)
	}
	if list, err := svc.Consents(ctx, alice.User.ID); err != nil || len(list) != 0 {
		t.Errorf("after removing the client: %v %+v", err, list)
	}
}
