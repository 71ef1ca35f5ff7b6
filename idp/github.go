package idp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse"
)

// githubUpstream speaks GitHub's OAuth 2.0 (GitHub is not an OpenID
// provider): the code is redeemed at the token endpoint, and the user is
// read from the user API (its numeric id is the subject) and the emails
// API (only the primary address, and only when GitHub says it is
// verified). The endpoints are stored, so GitHub Enterprise and tests can
// point elsewhere.
type githubUpstream struct {
	p      gatehouse.IdentityProvider
	secret string
	client *http.Client
}

func newGitHub(p gatehouse.IdentityProvider, secret string, client *http.Client) *githubUpstream {
	return &githubUpstream{p: p, secret: secret, client: client}
}

// maxAPIBody bounds what is read from GitHub's APIs.
const maxAPIBody = 1 << 20

func (g *githubUpstream) config(redirectURI string) *oauth2.Config {
	return &oauth2.Config{
		ClientID: g.p.ClientID, ClientSecret: g.secret, RedirectURL: redirectURI, Scopes: g.p.Scopes,
		Endpoint: oauth2.Endpoint{AuthURL: g.p.AuthURL, TokenURL: g.p.TokenURL, AuthStyle: oauth2.AuthStyleInParams},
	}
}

// AuthCodeURL needs no request: GitHub's endpoints are configured. The
// nonce has no place in OAuth 2.0; state and PKCE protect the flow.
func (g *githubUpstream) AuthCodeURL(_ context.Context, state, _, verifier, redirectURI string) (string, error) {
	return g.config(redirectURI).AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), nil
}

func (g *githubUpstream) Exchange(ctx context.Context, code, verifier, _, redirectURI string) (Claims, error) {
	ctx, cancel := context.WithTimeout(withClient(ctx, g.client), 3*g.client.Timeout)
	defer cancel()
	tok, err := g.config(redirectURI).Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		return Claims{}, exchangeError(err)
	}
	var user struct {
		ID    json.Number `json:"id"`
		Login string      `json:"login"`
		Name  string      `json:"name"`
	}
	if err := g.get(ctx, tok, g.p.UserinfoURL, &user); err != nil {
		return Claims{}, err
	}
	if _, err := strconv.ParseInt(user.ID.String(), 10, 64); err != nil {
		return Claims{}, fmt.Errorf("%w: user id %q", ErrBadAnswer, user.ID)
	}
	var emails []struct {
		Email    string `json:"email"`
		Primary  bool   `json:"primary"`
		Verified bool   `json:"verified"`
	}
	if err := g.get(ctx, tok, strings.TrimRight(g.p.UserinfoURL, "/")+"/emails", &emails); err != nil {
		return Claims{}, err
	}
	c := Claims{Subject: user.ID.String(), Name: user.Name}
	if c.Name == "" {
		c.Name = user.Login
	}
	for _, e := range emails {
		if e.Primary {
			// Only the primary address, and it counts as verified only
			// when GitHub says so: a secondary address proves nothing
			// about who the account belongs to.
			c.Email, c.EmailVerified = e.Email, e.Verified
			break
		}
	}
	return c, nil
}

func (g *githubUpstream) get(ctx context.Context, tok *oauth2.Token, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrBadAnswer, url, err)
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("User-Agent", "Gatehouse")
	resp, err := g.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBody))
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, url, err)
	}
	switch {
	case resp.StatusCode >= 500:
		return fmt.Errorf("%w: %s: status %d", ErrUnavailable, url, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%w: %s: status %d", ErrBadAnswer, url, resp.StatusCode)
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrBadAnswer, url, err)
	}
	return nil
}
