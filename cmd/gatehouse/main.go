// Command gatehouse is the Gatehouse authentication server and its
// operator tools: serve, migrate, user create, keys rotate, idp, client,
// mail test, version.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/gatehouse/gatehouse"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	var help *helpRequest
	if errors.As(err, &help) {
		fmt.Fprint(os.Stdout, help.text)
		return
	}
	if err != nil {
		// A bad configuration is exactly one line on stderr.
		fmt.Fprintln(os.Stderr, "gatehouse: "+oneLine(err.Error()))
		os.Exit(1)
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

const usage = "usage: gatehouse serve|migrate|user create|keys rotate|idp add|list|remove|client create|list|remove|mail test|version [flags]"

// helpText answers `gatehouse help`, `--help` and `-h`.
const helpText = `usage: gatehouse <command> [flags]

Commands:
  serve         run the authentication server
  migrate       apply database migrations and exit
  user create   create a user (the password is read from stdin)
  keys rotate   make a new signing key
  idp add       add or change an identity provider (presets google, github)
  idp list      list the identity providers
  idp remove    remove an identity provider and its linked identities
  client create register an OAuth/OpenID client; prints {"client_id","client_secret"}
  client list   list the OAuth clients
  client remove remove an OAuth client, its consents and its sessions
  mail test     send a test message with the configured mailer
  version       print the version

Run "gatehouse <command> --help" for the flags of a command. Every flag is
also an environment variable: --access-ttl is GATEHOUSE_ACCESS_TTL.

serve speaks HTTPS with --tls-cert and --tls-key (PEM files); --tls-client-ca
adds client certificates, verified against it when a client presents one
(mTLS client authentication of OAuth clients).
`

// run dispatches a subcommand. It never calls os.Exit, so tests can call it.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], getenv, stderr)
	case "migrate":
		return migrate(ctx, args[1:], getenv, stdout)
	case "user":
		if len(args) < 2 || args[1] != "create" {
			return errors.New("usage: gatehouse user create --email E [--role user|admin] [--name N] (password on stdin)")
		}
		return userCreate(ctx, args[2:], getenv, stdin, stdout)
	case "keys":
		if len(args) < 2 || args[1] != "rotate" {
			return errors.New("usage: gatehouse keys rotate [--database ...]")
		}
		return keysRotate(ctx, args[2:], getenv, stdout)
	case "mail":
		if len(args) < 2 || args[1] != "test" {
			return errors.New("usage: gatehouse mail test --to ADDRESS [--smtp-url ... --mail-from ...]")
		}
		return mailTest(ctx, args[2:], getenv, stdout)
	case "idp":
		return idpCommand(ctx, args[1:], getenv, stdin, stdout)
	case "client":
		return clientCommand(ctx, args[1:], getenv, stdout)
	case "help", "--help", "-help", "-h":
		return &helpRequest{text: helpText}
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "gatehouse", buildVersion())
		return nil
	}
	return fmt.Errorf("unknown command %q; %s", args[0], usage)
}

func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " (" + s.Value[:12] + ")"
		}
	}
	return v
}

func migrate(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	var c config
	fs := newFlagSet("migrate", &c, "database")
	if err := parseFlags(fs, args, getenv); err != nil {
		return err
	}
	c.noSecrets = true
	b, err := openBackend(ctx, &c, true)
	if err != nil {
		return err
	}
	defer b.store.Close()
	fmt.Fprintln(stdout, "migrations applied")
	return nil
}

func userCreate(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout io.Writer) error {
	var c config
	var email, role, name string
	fs := newFlagSet("user create", &c, "database", "master-key", "master-key-file", "hash-workers")
	fs.StringVar(&email, "email", "", "email of the new user")
	fs.StringVar(&role, "role", "user", "user or admin")
	fs.StringVar(&name, "name", "", "display name")
	if err := parseFlags(fs, args, getenv); err != nil {
		return err
	}
	if email == "" {
		return errors.New("--email is required")
	}
	// The password comes on stdin so it never shows in ps or shell history.
	line, err := bufio.NewReader(io.LimitReader(stdin, 8192)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read password from stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	c.noSecrets = true
	b, err := openBackend(ctx, &c, true)
	if err != nil {
		return err
	}
	defer b.store.Close()
	svc := b.userService(&c)
	u, err := svc.CreateUser(ctx, email, name, pw, gatehouse.Role(role))
	if err != nil {
		return describeCreateError(err)
	}
	fmt.Fprintln(stdout, u.ID)
	return nil
}

func keysRotate(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	var c config
	fs := newFlagSet("keys rotate", &c, "database", "master-key", "master-key-file", "signing-alg", "access-ttl")
	if err := parseFlags(fs, args, getenv); err != nil {
		return err
	}
	b, err := openBackend(ctx, &c, true)
	if err != nil {
		return err
	}
	defer b.store.Close()
	if !flagGiven(fs, "signing-alg", getenv) {
		// Rotate within the algorithm in use; switching algorithms is a
		// decision the operator states with --signing-alg.
		if alg, err := newestKeyAlgorithm(ctx, b.store); err != nil {
			return err
		} else if alg != "" {
			c.SigningAlg = alg
		}
	}
	// Issuer and audience do not affect keys; the key set only wants them
	// to be set because it also signs.
	c.Issuer, c.Audience = "gatehouse-cli", "gatehouse-cli"
	keys, err := b.keys(&c)
	if err != nil {
		return err
	}
	kid, err := keys.Rotate(ctx, nowUTC())
	if err != nil {
		return fmt.Errorf("rotate keys: %w", err)
	}
	fmt.Fprintln(stdout, kid)
	return nil
}

// quietLogger discards logs for the short-lived subcommands.
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// flagGiven reports whether a flag was set on the command line or through
// its environment variable.
func flagGiven(fs *flag.FlagSet, name string, getenv func(string) string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given || getenv(envName(name)) != ""
}

func newestKeyAlgorithm(ctx context.Context, store gatehouse.Store) (string, error) {
	keys, err := store.SigningKeys(ctx)
	if err != nil {
		return "", fmt.Errorf("read signing keys: %w", err)
	}
	if len(keys) == 0 {
		return "", nil
	}
	return keys[len(keys)-1].Algorithm, nil
}
