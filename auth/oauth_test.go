package auth_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/token"
)

// newOAuth is a service with the OAuth provider switched on.
func newOAuth(t *testing.T) (*auth.Service, *clock) {
	t.Helper()
	svc, clk, _ := newServiceConfig(t, func(_ *auth.Config, d *auth.Deps) {
		codec, err := token.NewRefreshCodec([]byte(strings.Repeat("o", 32)))
		if err != nil {
			t.Fatal(err)
		}
		d.OAuth = auth.OAuthDeps{Store: d.Store, ClientKey: []byte(strings.Repeat("k", 32)), RefreshCodec: codec}
	})
	return svc, clk
}

const pkceVerifier = "a-verifier-that-is-long-enough-for-rfc-7636-checks-0123456789"

func pkceChallenge(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorize runs the browser side: begin, continue as the signed-in user
// (with consent when given), and returns the code from the redirect.
func authorize(t *testing.T, svc *auth.Service, g auth.Grant, c gatehouse.OAuthClient, scopes []string, consent *bool) (string, auth.ContinueResult) {
	t.Helper()
	ctx := context.Background()
	req := auth.AuthorizationRequest{ClientID: c.ID, RedirectURI: c.RedirectURIs[0], Scopes: scopes, State: "st", Nonce: "n1", CodeChallenge: pkceChallenge(pkceVerifier)}
	id, err := svc.BeginAuthorization(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	p, err := svc.Authenticate(ctx, g.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	res, err := svc.ContinueAuthorization(ctx, p, id, consent)
	if err != nil {
		t.Fatal(err)
	}
	if res.ConsentRequired {
		return id, res
	}
	u, err := url.Parse(res.Redirect)
	if err != nil {
		t.Fatal(err)
	}
	if u.Query().Get("state") != "st" {
		t.Fatalf("state not passed through: %s", res.Redirect)
	}
	return u.Query().Get("code"), res
}

func createClient(t *testing.T, svc *auth.Service, in auth.OAuthClientInput) (gatehouse.OAuthClient, string) {
	t.Helper()
	c, secret, err := svc.CreateOAuthClient(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return c, secret
}

func TestOAuthCodeFlowRefreshAndReplay(t *testing.T) {
	svc, clk := newOAuth(t)
	ctx := context.Background()
	user := signup(t, svc, "oauth@example.com")
	c, secret := createClient(t, svc, auth.OAuthClientInput{Name: "App", RedirectURIs: []string{"https://app.test/cb"}, FirstParty: true})
	if secret == "" {
		t.Fatal("a confidential client gets a secret")
	}
	if _, err := svc.AuthenticateOAuthClient(ctx, c.ID, secret+"x"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("wrong secret: %v", err)
	}
	if _, err := svc.AuthenticateOAuthClient(ctx, c.ID, secret); err != nil {
		t.Fatalf("right secret: %v", err)
	}
	code, _ := authorize(t, svc, user, c, []string{"openid", "email", "offline_access"}, nil)
	if code == "" {
		t.Fatal("first-party client: no code without consent")
	}
	if _, err := svc.ExchangeCode(ctx, c, code, "https://app.test/cb", "wrong-verifier-wrong-verifier-wrong-verifier-wrong", "", client); !errors.Is(err, auth.ErrOAuthInvalidGrant) {
		t.Fatalf("wrong verifier: %v", err)
	}
	if _, err := svc.ExchangeCode(ctx, c, code, "https://app.test/cb/", pkceVerifier, "", client); !errors.Is(err, auth.ErrOAuthInvalidGrant) {
		t.Fatalf("other redirect_uri: %v", err)
	}
	g, err := svc.ExchangeCode(ctx, c, code, "https://app.test/cb", pkceVerifier, "", client)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if g.RefreshToken == "" || g.IDToken == "" || g.Scope != "openid email offline_access" {
		t.Fatalf("grant: refresh %t id %t scope %q", g.RefreshToken != "", g.IDToken != "", g.Scope)
	}
	// The app's token is not accepted by Gatehouse's own API.
	if _, err := svc.Authenticate(ctx, g.AccessToken); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("app token at Gatehouse's API: %v", err)
	}
	if _, err := svc.Refresh(ctx, g.RefreshToken, client); !errors.Is(err, auth.ErrInvalidRefresh) {
		t.Fatalf("app refresh token at /auth/refresh: %v", err)
	}
	if _, err := svc.RefreshOAuth(ctx, c, user.RefreshToken, "", client); !errors.Is(err, auth.ErrOAuthInvalidGrant) {
		t.Fatalf("Gatehouse refresh token at the token endpoint: %v", err)
	}
	u, claims, err := svc.UserInfo(ctx, g.AccessToken, "")
	if err != nil || u.Email != "oauth@example.com" || claims.ClientID != c.ID {
		t.Fatalf("userinfo: %v %q %q", err, u.Email, claims.ClientID)
	}
	in, err := svc.Introspect(ctx, g.AccessToken, "", "192.0.2.1")
	if err != nil || !in.Active || in.ClientID != c.ID || in.Subject != user.User.ID {
		t.Fatalf("introspect: %v %+v", err, in)
	}
	// Rotation, with concurrent uses converging on one successor.
	var wg sync.WaitGroup
	sessions := make(chan string, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := svc.RefreshOAuth(ctx, c, g.RefreshToken, "", client)
			if err != nil {
				t.Errorf("concurrent refresh: %v", err)
				return
			}
			sessions <- r.RefreshToken
		}()
	}
	wg.Wait()
	close(sessions)
	var next string
	for tok := range sessions {
		if next == "" {
			next = tok
		} else if tok != next {
			t.Fatal("concurrent refreshes did not converge on one successor")
		}
	}
	// Past the grace window, the old token is reuse: the session dies.
	clk.Advance(grace + time.Second)
	if _, err := svc.RefreshOAuth(ctx, c, g.RefreshToken, "", client); !errors.Is(err, auth.ErrOAuthInvalidGrant) {
		t.Fatalf("reuse: %v", err)
	}
	if _, err := svc.RefreshOAuth(ctx, c, next, "", client); !errors.Is(err, auth.ErrOAuthInvalidGrant) {
		t.Fatalf("successor after reuse: %v", err)
	}
	if in, _ := svc.Introspect(ctx, g.AccessToken, "", "192.0.2.1"); in.Active {
		t.Fatal("access token of a reused authorization still active")
	}
}

func TestOAuthCodeReplayRevokesWhatItIssued(t *testing.T) {
	svc, _ := newOAuth(t)
	ctx := context.Background()
	user := signup(t, svc, "replay@example.com")
	c, _ := createClient(t, svc, auth.OAuthClientInput{Name: "App", RedirectURIs: []string{"https://app.test/cb"}, FirstParty: true})
	other, _ := createClient(t, svc, auth.OAuthClientInput{Name: "Other", RedirectURIs: []string{"https://other.test/cb"}, FirstParty: true})
	code, _ := authorize(t, svc, user, c, []string{"openid", "offline_access"}, nil)
	if _, err := svc.ExchangeCode(ctx, other, code, "https://app.test/cb", pkceVerifier, "", client); !errors.Is(err, auth.ErrOAuthInvalidGrant) {
		t.Fatalf("code redeemed by another client: %v", err)
	}
	g, err := svc.ExchangeCode(ctx, c, code, "https://app.test/cb", pkceVerifier, "", client)
	if err != nil {
		t.Fatalf("exchange after the other client's try: %v", err)
	}
	if _, err := svc.ExchangeCode(ctx, c, code, "https://app.test/cb", pkceVerifier, "", client); !errors.Is(err, auth.ErrOAuthInvalidGrant) {
		t.Fatalf("second use: %v", err)
	}
	if in, _ := svc.Introspect(ctx, g.AccessToken, "", "192.0.2.1"); in.Active {
		t.Fatal("the first use's access token survived the replay")
	}
	if _, err := svc.RefreshOAuth(ctx, c, g.RefreshToken, "", client); err == nil {
		t.Fatal("the first use's refresh token survived the replay")
	}
}

func TestOAuthConsent(t *testing.T) {
	svc, _ := newOAuth(t)
	ctx := context.Background()
	user := signup(t, svc, "consent@example.com")
	c, _ := createClient(t, svc, auth.OAuthClientInput{Name: "Third", RedirectURIs: []string{"https://third.test/cb"}, Scopes: []string{"read"}})
	id, res := authorize(t, svc, user, c, []string{"openid", "read"}, nil)
	if !res.ConsentRequired || res.Client.Name != "Third" || len(res.Scopes) != 2 {
		t.Fatalf("third-party client without consent: %+v", res)
	}
	p, _ := svc.Authenticate(ctx, user.AccessToken)
	no := false
	denied, err := svc.ContinueAuthorization(ctx, p, id, &no)
	if err != nil || !strings.Contains(denied.Redirect, "error=access_denied") {
		t.Fatalf("denied: %v %q", err, denied.Redirect)
	}
	if _, err := svc.ContinueAuthorization(ctx, p, id, &no); !errors.Is(err, auth.ErrOAuthInvalidRequest) {
		t.Fatalf("a spent request again: %v", err)
	}
	yes := true
	code, _ := authorize(t, svc, user, c, []string{"openid", "read"}, &yes)
	if code == "" {
		t.Fatal("consent given: no code")
	}
	// Remembered: no question the next time, for the same or fewer scopes.
	if code, _ := authorize(t, svc, user, c, []string{"read"}, nil); code == "" {
		t.Fatal("remembered consent asked again")
	}
	// Wider scopes ask again.
	if _, res := authorize(t, svc, user, c, []string{"openid", "read", "email"}, nil); !res.ConsentRequired {
		t.Fatal("consent for more scopes than given was not asked")
	}
}

func TestOAuthAuthorizationChecks(t *testing.T) {
	c := gatehouse.OAuthClient{Grants: []string{auth.GrantAuthorizationCode}, Scopes: []string{"read"}}
	ch := pkceChallenge(pkceVerifier)
	for name, tc := range map[string]struct {
		scopes            []string
		challenge, method string
		want              error
	}{
		"no PKCE":         {[]string{"openid"}, "", "", auth.ErrOAuthInvalidRequest},
		"plain PKCE":      {[]string{"openid"}, pkceVerifier, "plain", auth.ErrOAuthInvalidRequest},
		"short challenge": {[]string{"openid"}, "abc", "S256", auth.ErrOAuthInvalidRequest},
		"unknown scope":   {[]string{"openid", "admin"}, ch, "S256", auth.ErrOAuthInvalidScope},
		"good":            {[]string{"openid", "read"}, ch, "S256", nil},
	} {
		err := auth.CheckAuthorizationRequest(c, tc.scopes, tc.challenge, tc.method)
		if (tc.want == nil && err != nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
	machine := gatehouse.OAuthClient{Grants: []string{auth.GrantClientCredentials}}
	if err := auth.CheckAuthorizationRequest(machine, []string{"openid"}, ch, "S256"); !errors.Is(err, auth.ErrOAuthUnauthorized) {
		t.Errorf("client without the code grant: %v", err)
	}
}

func TestOAuthClientCredentialsAndRevocation(t *testing.T) {
	svc, _ := newOAuth(t)
	ctx := context.Background()
	c, _ := createClient(t, svc, auth.OAuthClientInput{Name: "Machine", Grants: []string{auth.GrantClientCredentials}, Scopes: []string{"revocations:read", "jobs"}})
	g, err := svc.ClientCredentials(ctx, c, []string{"jobs"}, "")
	if err != nil || g.Scope != "jobs" || g.RefreshToken != "" {
		t.Fatalf("client_credentials: %v %+v", err, g)
	}
	if _, err := svc.ClientCredentials(ctx, c, []string{"openid"}, ""); !errors.Is(err, auth.ErrOAuthInvalidScope) {
		t.Fatalf("scope beyond the client's: %v", err)
	}
	in, err := svc.Introspect(ctx, g.AccessToken, "", "192.0.2.1")
	if err != nil || !in.Active || in.Subject != c.ID || in.SessionID != "" {
		t.Fatalf("introspect client token: %v %+v", err, in)
	}
	other, _ := createClient(t, svc, auth.OAuthClientInput{Name: "Other", Grants: []string{auth.GrantClientCredentials}})
	if err := svc.RevokeOAuthToken(ctx, other, g.AccessToken); err != nil {
		t.Fatal(err)
	}
	if in, _ := svc.Introspect(ctx, g.AccessToken, "", "192.0.2.1"); !in.Active {
		t.Fatal("another client revoked the token")
	}
	if err := svc.RevokeOAuthToken(ctx, c, g.AccessToken); err != nil {
		t.Fatal(err)
	}
	if in, _ := svc.Introspect(ctx, g.AccessToken, "", "192.0.2.1"); in.Active {
		t.Fatal("revoked client token still active")
	}
	// Bound to a certificate: active only with it.
	b, err := svc.ClientCredentials(ctx, c, nil, "thumb")
	if err != nil {
		t.Fatal(err)
	}
	if in, _ := svc.Introspect(ctx, b.AccessToken, "", "192.0.2.1"); in.Active {
		t.Fatal("bound token active without its certificate")
	}
	if in, _ := svc.Introspect(ctx, b.AccessToken, "thumb", "192.0.2.1"); !in.Active || in.Cert != "thumb" {
		t.Fatalf("bound token with its certificate: %+v", in)
	}
	pub, _ := createClient(t, svc, auth.OAuthClientInput{Name: "SPA", RedirectURIs: []string{"https://spa.test/cb"}, Public: true})
	if _, err := svc.ClientCredentials(ctx, pub, nil, ""); !errors.Is(err, auth.ErrOAuthUnauthorized) {
		t.Fatalf("public client_credentials: %v", err)
	}
}

func TestOAuthClientValidation(t *testing.T) {
	svc, _ := newOAuth(t)
	ctx := context.Background()
	for name, in := range map[string]auth.OAuthClientInput{
		"no name":              {RedirectURIs: []string{"https://a.test/cb"}},
		"http redirect":        {Name: "x", RedirectURIs: []string{"http://a.test/cb"}},
		"fragment":             {Name: "x", RedirectURIs: []string{"https://a.test/cb#x"}},
		"relative":             {Name: "x", RedirectURIs: []string{"/cb"}},
		"no redirect":          {Name: "x"},
		"public machine":       {Name: "x", Public: true, Grants: []string{auth.GrantClientCredentials}},
		"standard as extra":    {Name: "x", RedirectURIs: []string{"https://a.test/cb"}, Scopes: []string{"openid"}},
		"scope with space":     {Name: "x", RedirectURIs: []string{"https://a.test/cb"}, Scopes: []string{"a b"}},
		"refresh without code": {Name: "x", Grants: []string{auth.GrantRefreshToken}},
	} {
		var verr *auth.ValidationError
		if _, _, err := svc.CreateOAuthClient(ctx, in); !errors.As(err, &verr) {
			t.Errorf("%s: got %v, want a validation error", name, err)
		}
	}
	if _, _, err := svc.CreateOAuthClient(ctx, auth.OAuthClientInput{Name: "dev", RedirectURIs: []string{"http://127.0.0.1:9000/cb"}, Public: true}); err != nil {
		t.Errorf("loopback http redirect: %v", err)
	}
}

func TestAuthenticateMachineTakesClientTokens(t *testing.T) {
	svc, _ := newOAuth(t)
	ctx := context.Background()
	c, _ := createClient(t, svc, auth.OAuthClientInput{Name: "Feed reader", Grants: []string{auth.GrantClientCredentials}, Scopes: []string{auth.ScopeRevocationsRead}})
	g, err := svc.ClientCredentials(ctx, c, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := svc.AuthenticateMachine(ctx, g.AccessToken, "192.0.2.1", "")
	if err != nil || p.ClientID != c.ID || !p.HasScope(auth.ScopeRevocationsRead) || p.UserID != "" {
		t.Fatalf("client token: %v %+v", err, p)
	}
	if _, err := svc.Authenticate(ctx, g.AccessToken); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("client token at Gatehouse's user API: %v", err)
	}
	if err := svc.RevokeOAuthToken(ctx, c, g.AccessToken); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AuthenticateMachine(ctx, g.AccessToken, "192.0.2.1", ""); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("revoked client token: %v", err)
	}
	bound, err := svc.ClientCredentials(ctx, c, nil, "thumb")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AuthenticateMachine(ctx, bound.AccessToken, "192.0.2.1", ""); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("bound token without its certificate: %v", err)
	}
	if _, err := svc.AuthenticateMachine(ctx, bound.AccessToken, "192.0.2.1", "thumb"); err != nil {
		t.Fatalf("bound token with its certificate: %v", err)
	}
	user := signup(t, svc, "machine@example.com")
	p, err = svc.AuthenticateMachine(ctx, user.AccessToken, "192.0.2.1", "")
	if err != nil || p.UserID != user.User.ID || len(p.Scopes) != 0 {
		t.Fatalf("a user's own token: %v %+v", err, p)
	}
}

// TestOAuthConcurrentCodeRedemptions: a code redeemed by many requests at
// once gives at most one grant, and since the others are replays, what
// that one got is revoked too, however the race falls.
func TestOAuthConcurrentCodeRedemptions(t *testing.T) {
	svc, _ := newOAuth(t)
	ctx := context.Background()
	user := signup(t, svc, "race@example.com")
	c, _ := createClient(t, svc, auth.OAuthClientInput{Name: "App", RedirectURIs: []string{"https://app.test/cb"}, FirstParty: true})
	for round := range 5 {
		code, _ := authorize(t, svc, user, c, []string{"openid", "offline_access"}, nil)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var wins []auth.OAuthGrant
		start := make(chan struct{})
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				g, err := svc.ExchangeCode(ctx, c, code, "https://app.test/cb", pkceVerifier, "", client)
				if err == nil {
					mu.Lock()
					wins = append(wins, g)
					mu.Unlock()
				} else if !errors.Is(err, auth.ErrOAuthInvalidGrant) {
					t.Errorf("round %d: %v", round, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(wins) > 1 {
			t.Fatalf("round %d: %d grants for one code", round, len(wins))
		}
		for _, g := range wins {
			if in, _ := svc.Introspect(ctx, g.AccessToken, "", "192.0.2.1"); in.Active {
				t.Errorf("round %d: the grant of a replayed code is still active", round)
			}
			if _, err := svc.RefreshOAuth(ctx, c, g.RefreshToken, "", client); err == nil {
				t.Errorf("round %d: the refresh token of a replayed code still works", round)
			}
		}
	}
}

// TestOAuthLogoutEndsTheSignInItCameFrom: RP-initiated logout ends the app's
// session, the Gatehouse session it was authorized from and that session's
// other app sessions; another device's sign-in and its app session stay.
func TestOAuthLogoutEndsTheSignInItCameFrom(t *testing.T) {
	svc, _ := newOAuth(t)
	ctx := context.Background()
	browser := signup(t, svc, "rp-logout@example.com")
	elsewhere, err := svc.Login(ctx, auth.LoginInput{Email: "rp-logout@example.com", Password: "a long and unusual passphrase"}, client)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := createClient(t, svc, auth.OAuthClientInput{Name: "App", RedirectURIs: []string{"https://app.test/cb"}, FirstParty: true})
	redeem := func(from auth.Grant) auth.OAuthGrant {
		t.Helper()
		code, _ := authorize(t, svc, from, c, []string{"openid", "offline_access"}, nil)
		g, err := svc.ExchangeCode(ctx, c, code, "https://app.test/cb", pkceVerifier, "", client)
		if err != nil {
			t.Fatalf("exchange: %v", err)
		}
		return g
	}
	app, sibling, other := redeem(browser), redeem(browser), redeem(elsewhere)

	aud, err := svc.EndOAuthSession(ctx, app.IDToken)
	if err != nil || aud != c.ID {
		t.Fatalf("EndOAuthSession: %q, %v", aud, err)
	}
	if _, err := svc.Authenticate(ctx, browser.AccessToken); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("the browser's sign-in after RP logout: %v, want ErrInvalidToken", err)
	}
	if _, err := svc.Refresh(ctx, browser.RefreshToken, client); err == nil {
		t.Error("the browser's refresh token still works after RP logout")
	}
	for name, g := range map[string]auth.OAuthGrant{"the app's session": app, "another app session of the sign-in": sibling} {
		if _, err := svc.RefreshOAuth(ctx, c, g.RefreshToken, "", client); !errors.Is(err, auth.ErrOAuthInvalidGrant) {
			t.Errorf("%s after RP logout: refresh %v, want invalid_grant", name, err)
		}
		if in, _ := svc.Introspect(ctx, g.AccessToken, "", "192.0.2.1"); in.Active {
			t.Errorf("%s after RP logout: access token still active", name)
		}
	}
	if _, err := svc.Authenticate(ctx, elsewhere.AccessToken); err != nil {
		t.Errorf("another device's sign-in after RP logout: %v", err)
	}
	if _, err := svc.RefreshOAuth(ctx, c, other.RefreshToken, "", client); err != nil {
		t.Errorf("the app session of another device after RP logout: %v", err)
	}
	// The same hint again changes nothing and is no error.
	if aud, err := svc.EndOAuthSession(ctx, app.IDToken); err != nil || aud != c.ID {
		t.Errorf("repeated EndOAuthSession: %q, %v", aud, err)
	}
}
