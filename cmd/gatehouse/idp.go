package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/idp"
	"github.com/gatehouse/gatehouse/masterkey"
	"github.com/gatehouse/gatehouse/sealbox"
)

// External identity providers: the wiring shared by serve and the idp
// subcommands, and `gatehouse idp add|list|remove`.

const idpUsage = "usage: gatehouse idp add NAME [--preset google|github] [--issuer URL] --client-id ID --client-secret-file F [--scopes ...] [--display-name ...] [--no-signup] [--auth-url U --token-url U --userinfo-url U] | idp list | idp remove NAME"

// idpDeps builds what the service needs for identity providers: client
// secrets and flow cookies are sealed under keys derived from the master
// secret, so every instance can open what another sealed.
func (b *backend) idpDeps(c *config) (auth.IdPDeps, error) {
	secretBox, err := sealbox.New(masterkey.Derive(b.master, masterkey.PurposeIdPSecret))
	if err != nil {
		return auth.IdPDeps{}, err
	}
	flowBox, err := sealbox.New(masterkey.Derive(b.master, masterkey.PurposeIdPFlow))
	if err != nil {
		return auth.IdPDeps{}, err
	}
	d := auth.IdPDeps{Store: b.store, Registry: idp.NewRegistry(secretBox, c.IdPTimeout), FlowBox: flowBox}
	if c.PublicURL != "" {
		if d.Redirects, err = idp.NewRedirectPolicy(c.PublicURL, c.redirects); err != nil {
			return auth.IdPDeps{}, fmt.Errorf("--redirect-allowlist: %w", err)
		}
	}
	return d, nil
}

// idpCommand runs `gatehouse idp add|list|remove`.
func idpCommand(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(idpUsage)
	}
	switch args[0] {
	case "add":
		return idpAdd(ctx, args[1:], getenv, stdin, stdout)
	case "list":
		return idpList(ctx, args[1:], getenv, stdout)
	case "remove":
		return idpRemove(ctx, args[1:], getenv, stdout)
	}
	return errors.New(idpUsage)
}

// idpSharedFlags are the flags of the idp subcommands that also come from
// GATEHOUSE_* variables. The provider's own flags do not: GATEHOUSE_ISSUER
// names Gatehouse's issuer, not the provider's.
var idpSharedFlags = []string{"database", "master-key", "master-key-file", "public-url"}

// parseIdPFlags parses args; a leading NAME is taken out first.
func parseIdPFlags(fs *flag.FlagSet, args []string, getenv func(string) string, wantName bool) (string, error) {
	name := ""
	if wantName {
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			return "", errors.New(idpUsage)
		}
		name, args = args[0], args[1:]
		if !idp.ValidName(name) {
			return "", fmt.Errorf("provider name %q must be 1 to 32 of a-z, 0-9 and -", name)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", &helpRequest{text: idpUsage + "\n"}
		}
		return "", err
	}
	if fs.NArg() > 0 {
		return "", fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, n := range idpSharedFlags {
		if fs.Lookup(n) == nil || set[n] {
			continue
		}
		if v := getenv(envName(n)); v != "" {
			if err := fs.Set(n, v); err != nil {
				return "", fmt.Errorf("invalid value %q for %s: %v", v, envName(n), err)
			}
		}
	}
	return name, nil
}

// idpService opens the database and returns the service as the idp
// commands need it.
func idpService(ctx context.Context, c *config) (*auth.Service, *backend, error) {
	b, err := openBackend(ctx, c, true)
	if err != nil {
		return nil, nil, err
	}
	c.IdPTimeout = 10 * time.Second
	deps, err := b.idpDeps(c)
	if err != nil {
		b.store.Close()
		return nil, nil, err
	}
	svc := auth.New(auth.Config{PublicURL: c.PublicURL}, auth.Deps{
		Store: b.store, Observer: nopObserver{}, Logger: quietLogger(), IdP: deps,
	})
	return svc, b, nil
}

func idpAdd(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout io.Writer) error {
	var c config
	var in auth.ProviderInput
	var secretFile, scopes string
	fs := newFlagSet("idp add", &c, idpSharedFlags...)
	fs.StringVar(&in.Preset, "preset", "", "google or github: fills in the provider's endpoints and scopes")
	fs.StringVar(&in.Issuer, "issuer", "", "the provider's OpenID issuer URL (discovery at ISSUER/.well-known/openid-configuration)")
	fs.StringVar(&in.ClientID, "client-id", "", "the client id registered at the provider")
	fs.StringVar(&secretFile, "client-secret-file", "", "file holding the client secret (- for stdin)")
	fs.StringVar(&scopes, "scopes", "", "scopes to ask for, comma- or space-separated (default: openid email profile; github: read:user user:email)")
	fs.StringVar(&in.DisplayName, "display-name", "", "the button's label (default: the preset's, else NAME)")
	fs.BoolVar(&in.NoSignup, "no-signup", false, "refuse sign-ins that match no account instead of creating one")
	fs.StringVar(&in.AuthURL, "auth-url", "", "github preset: the authorization endpoint (GitHub Enterprise, tests)")
	fs.StringVar(&in.TokenURL, "token-url", "", "github preset: the token endpoint")
	fs.StringVar(&in.UserinfoURL, "userinfo-url", "", "github preset: the user API (its /emails is read too)")
	name, err := parseIdPFlags(fs, args, getenv, true)
	if err != nil {
		return err
	}
	if secretFile == "" {
		return errors.New("--client-secret-file is required (- reads the secret from stdin)")
	}
	secret, err := readSecret(secretFile, stdin)
	if err != nil {
		return err
	}
	in.ClientSecret = &secret
	in.Scopes = strings.FieldsFunc(scopes, func(r rune) bool { return r == ',' || r == ' ' })
	svc, b, err := idpService(ctx, &c)
	if err != nil {
		return err
	}
	defer b.store.Close()
	p, created, err := svc.PutProvider(ctx, name, in)
	if err != nil {
		var ve *auth.ValidationError
		if errors.As(err, &ve) {
			parts := make([]string, len(ve.Fields))
			for i, f := range ve.Fields {
				parts[i] = "--" + strings.ReplaceAll(f.Field, "_", "-") + " " + f.Message
			}
			return errors.New(strings.Join(parts, "; "))
		}
		return err
	}
	verb := "updated"
	if created {
		verb = "added"
	}
	redirect := "<public-url>/auth/idps/" + p.Name + "/callback"
	if c.PublicURL != "" {
		redirect = svc.IdPRedirectURI(p.Name)
	}
	fmt.Fprintf(stdout, "%s %s (%s, %s); register this redirect URI at the provider: %s\n", verb, p.Name, p.Kind, p.Issuer, redirect)
	return nil
}

// readSecret reads a client secret from a file or stdin: its first line.
func readSecret(path string, stdin io.Reader) (string, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(io.LimitReader(stdin, 8192))
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("read client secret: %w", err)
	}
	secret, _, _ := strings.Cut(string(data), "\n")
	secret = strings.TrimRight(secret, "\r")
	if secret == "" {
		return "", errors.New("the client secret file is empty")
	}
	return secret, nil
}

func idpList(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	var c config
	fs := newFlagSet("idp list", &c, idpSharedFlags...)
	if _, err := parseIdPFlags(fs, args, getenv, false); err != nil {
		return err
	}
	svc, b, err := idpService(ctx, &c)
	if err != nil {
		return err
	}
	defer b.store.Close()
	list, err := svc.Providers(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tISSUER\tCLIENT ID\tSIGNUP\tDISPLAY NAME")
	for _, p := range list {
		signup := "on"
		if p.NoSignup {
			signup = "off"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Kind, p.Issuer, p.ClientID, signup, p.DisplayName)
	}
	return tw.Flush()
}

func idpRemove(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	var c config
	fs := newFlagSet("idp remove", &c, idpSharedFlags...)
	name, err := parseIdPFlags(fs, args, getenv, true)
	if err != nil {
		return err
	}
	svc, b, err := idpService(ctx, &c)
	if err != nil {
		return err
	}
	defer b.store.Close()
	if err := svc.DeleteProvider(ctx, name); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	fmt.Fprintf(stdout, "removed %s and the identities linked through it\n", name)
	return nil
}
