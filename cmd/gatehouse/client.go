package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/auth"
)

// OAuth clients of Gatehouse's OAuth 2.1 / OpenID provider:
// `gatehouse client create|list|remove` (the service's wiring, shared with
// serve, is backend.oauthDeps in oauth.go).

const clientUsage = "usage: gatehouse client create --name N --redirect-uri U [--redirect-uri U2 ...] [--post-logout-redirect-uri U ...] [--public] [--first-party] [--grant authorization_code,refresh_token,client_credentials] [--scope S ...] [--audience A] [--tls-client-auth SUBJECT_DN] | client list | client remove CLIENT_ID"

// clientSharedFlags are the flags of every client subcommand, which also
// come from GATEHOUSE_* variables.
var clientSharedFlags = []string{"database", "master-key", "master-key-file"}

// clientRemoveFlags add --access-ttl: removing a client ends its sessions,
// and their revocations must be kept as long as the server's access tokens
// live (GATEHOUSE_ACCESS_TTL gives both the same value).
var clientRemoveFlags = []string{"database", "master-key", "master-key-file", "access-ttl"}

// clientCommand runs `gatehouse client create|list|remove`.
func clientCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(clientUsage)
	}
	switch args[0] {
	case "create":
		return clientCreate(ctx, args[1:], getenv, stdout)
	case "list":
		return clientList(ctx, args[1:], getenv, stdout)
	case "remove":
		return clientRemove(ctx, args[1:], getenv, stdout)
	case "help", "--help", "-help", "-h":
		return &helpRequest{text: clientUsage + "\n"}
	}
	return errors.New(clientUsage)
}

// listFlag is a flag that may be given several times; each value adds
// the items split splits it into.
type listFlag struct {
	items *[]string
	split func(string) []string
	what  string
}

func (l listFlag) String() string {
	if l.items == nil {
		return ""
	}
	return strings.Join(*l.items, ",")
}

func (l listFlag) Set(v string) error {
	parts := l.split(v)
	if len(parts) == 0 {
		return fmt.Errorf("%s must not be empty", l.what)
	}
	for _, p := range parts {
		if p == "" {
			return fmt.Errorf("%s must not be empty", l.what)
		}
	}
	*l.items = append(*l.items, parts...)
	return nil
}

func one(v string) []string {
	if v == "" {
		return nil
	}
	return []string{v}
}

func commaList(v string) []string {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	parts := strings.Split(v, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// parseClientFlags parses args; with wantID, a leading CLIENT_ID is taken
// out first.
func parseClientFlags(fs *flag.FlagSet, args []string, getenv func(string) string, envFlags []string, wantID bool) (string, error) {
	id := ""
	if wantID {
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			return "", errors.New(clientUsage)
		}
		id, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			var b strings.Builder
			fmt.Fprintf(&b, "%s\n\nFlags of gatehouse %s (--%s also come from GATEHOUSE_* variables):\n\n", clientUsage, fs.Name(), strings.Join(envFlags, ", --"))
			fs.SetOutput(&b)
			fs.PrintDefaults()
			fs.SetOutput(io.Discard)
			return "", &helpRequest{text: b.String()}
		}
		return "", err
	}
	if fs.NArg() > 0 {
		return "", fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	// Only the shared flags come from the environment: a GATEHOUSE_AUDIENCE
	// meant for the server must not become every new client's audience.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, n := range envFlags {
		if fs.Lookup(n) == nil || set[n] {
			continue
		}
		if v := getenv(envName(n)); v != "" {
			if err := fs.Set(n, v); err != nil {
				return "", fmt.Errorf("invalid value %q for %s: %v", v, envName(n), err)
			}
		}
	}
	return id, nil
}

// clientService opens the database and returns the service as the client
// commands need it.
func clientService(ctx context.Context, c *config) (*auth.Service, *backend, error) {
	b, err := openBackend(ctx, c, true)
	if err != nil {
		return nil, nil, err
	}
	oauth, err := b.oauthDeps()
	if err != nil {
		b.store.Close()
		return nil, nil, err
	}
	// No revoker: a CLI process serves no tokens. Ending a session writes
	// its revocation to the database, which every serving instance polls.
	svc := auth.New(auth.Config{AccessTTL: c.AccessTTL, Leeway: accessLeeway}, auth.Deps{
		Store: b.store, Observer: nopObserver{}, Logger: quietLogger(), Revoker: nopRevoker{},
		OAuth: oauth,
	})
	return svc, b, nil
}

func clientCreate(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	var c config
	var in auth.OAuthClientInput
	fs := newFlagSet("client create", &c, clientSharedFlags...)
	fs.StringVar(&in.Name, "name", "", "the client's name, shown on the consent page")
	fs.Var(listFlag{&in.RedirectURIs, one, "--redirect-uri"}, "redirect-uri", "a redirect URI, matched exactly (repeat for more)")
	fs.Var(listFlag{&in.PostLogoutRedirectURIs, one, "--post-logout-redirect-uri"}, "post-logout-redirect-uri", "where /oauth2/logout may send the browser, matched exactly (repeat for more)")
	fs.BoolVar(&in.Public, "public", false, "a public client (browser or native app): no secret, PKCE only")
	fs.BoolVar(&in.FirstParty, "first-party", false, "skip the consent page")
	fs.Var(listFlag{&in.Grants, commaList, "--grant"}, "grant", "comma-separated grants: authorization_code, refresh_token, client_credentials (default authorization_code,refresh_token)")
	fs.Var(listFlag{&in.Scopes, strings.Fields, "--scope"}, "scope", "a scope beyond openid, profile, email and offline_access that the client may ask for (repeat for more)")
	fs.StringVar(&in.Audience, "audience", "", "aud of the client's access tokens (default: Gatehouse's own audience)")
	fs.StringVar(&in.TLSSubject, "tls-client-auth", "", "authenticate the client by a TLS client certificate with this subject DN instead of a secret")
	if _, err := parseClientFlags(fs, args, getenv, clientSharedFlags, false); err != nil {
		return err
	}
	if strings.TrimSpace(in.Name) == "" {
		return errors.New("--name is required")
	}
	svc, b, err := clientService(ctx, &c)
	if err != nil {
		return err
	}
	defer b.store.Close()
	client, secret, err := svc.CreateOAuthClient(ctx, in)
	if err != nil {
		return describeClientError(err)
	}
	out, err := json.Marshal(struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret,omitempty"`
	}{client.ID, secret})
	if err != nil {
		return fmt.Errorf("encode the new client: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "%s\n", out)
	return err
}

// clientFlagOf names the flag behind a field of the service's validation.
var clientFlagOf = map[string]string{
	"name":                      "--name",
	"redirect_uris":             "--redirect-uri",
	"post_logout_redirect_uris": "--post-logout-redirect-uri",
	"grants":                    "--grant",
	"scopes":                    "--scope",
	"audience":                  "--audience",
	"tls_client_auth":           "--tls-client-auth",
}

// describeClientError speaks of flags where the service speaks of fields.
func describeClientError(err error) error {
	var ve *auth.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	parts := make([]string, len(ve.Fields))
	for i, f := range ve.Fields {
		name, ok := clientFlagOf[f.Field]
		if !ok {
			name = f.Field
		}
		parts[i] = name + " " + f.Message
	}
	return errors.New(strings.Join(parts, "; "))
}

func clientList(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	var c config
	fs := newFlagSet("client list", &c, clientSharedFlags...)
	if _, err := parseClientFlags(fs, args, getenv, clientSharedFlags, false); err != nil {
		return err
	}
	svc, b, err := clientService(ctx, &c)
	if err != nil {
		return err
	}
	defer b.store.Close()
	list, err := svc.OAuthClients(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT ID\tNAME\tAUTH\tFIRST PARTY\tGRANTS\tSCOPES\tREDIRECT URIS\tCREATED")
	for _, cl := range list {
		firstParty := "no"
		if cl.FirstParty {
			firstParty = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cl.ID, cl.Name, clientAuthKind(cl), firstParty,
			orDash(strings.Join(cl.Grants, ",")), orDash(strings.Join(cl.Scopes, ",")),
			orDash(strings.Join(cl.RedirectURIs, " ")), cl.CreatedAt.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

// clientAuthKind is how a client authenticates at the token endpoint.
func clientAuthKind(c gatehouse.OAuthClient) string {
	switch {
	case c.Public:
		return "public"
	case c.TLSSubject != "":
		return "tls: " + c.TLSSubject
	}
	return "secret"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func clientRemove(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	var c config
	fs := newFlagSet("client remove", &c, clientRemoveFlags...)
	id, err := parseClientFlags(fs, args, getenv, clientRemoveFlags, true)
	if err != nil {
		return err
	}
	if c.AccessTTL <= 0 {
		return errors.New("--access-ttl must be positive")
	}
	svc, b, err := clientService(ctx, &c)
	if err != nil {
		return err
	}
	defer b.store.Close()
	if err := svc.RemoveOAuthClient(ctx, id); err != nil {
		if errors.Is(err, gatehouse.ErrNotFound) {
			return fmt.Errorf("no client %q", id)
		}
		return fmt.Errorf("remove %s: %w", id, err)
	}
	fmt.Fprintf(stdout, "removed %s, its consents and its sessions\n", id)
	return nil
}

// nopRevoker stands in for the revocation state of a serving instance in
// the commands that end sessions: they check no tokens, and the
// revocations they write to the database reach the servers by polling.
type nopRevoker struct{}

func (nopRevoker) Record(context.Context, ...gatehouse.Revocation) {}
func (nopRevoker) Check(string, string, time.Time) error           { return nil }
func (nopRevoker) CheckAPIKey(string) error                        { return nil }
func (nopRevoker) CheckToken(string) error                         { return nil }
