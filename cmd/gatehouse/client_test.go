package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/auth"
)

// clientDB is a fresh SQLite database for the client commands.
func clientDB(t *testing.T) string {
	t.Helper()
	return "sqlite:" + filepath.Join(t.TempDir(), "gh.db")
}

func runClient(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var stdout bytes.Buffer
	err := run(context.Background(), append([]string{"client"}, args...), func(k string) string { return env[k] }, strings.NewReader(""), &stdout, io.Discard)
	return stdout.String(), err
}

type createdClient struct {
	ClientID     string  `json:"client_id"`
	ClientSecret *string `json:"client_secret"`
}

// createClient runs client create and decodes its one line of output,
// strictly: nothing but the JSON object may be on stdout.
func createClient(t *testing.T, db string, args ...string) createdClient {
	t.Helper()
	out, err := runClient(t, nil, append([]string{"create", "--database", db}, args...)...)
	if err != nil {
		t.Fatalf("client create %v: %v", args, err)
	}
	if !strings.HasSuffix(out, "}\n") || strings.Count(out, "\n") != 1 {
		t.Fatalf("client create %v: stdout must be one JSON line, got %q", args, out)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	var c createdClient
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("client create %v: stdout %q: %v", args, out, err)
	}
	if !strings.HasPrefix(c.ClientID, "gh_client_") {
		t.Fatalf("client_id %q lacks the gh_client_ prefix", c.ClientID)
	}
	return c
}

// authenticate checks a secret the way the server does: with the service
// wired by the same backend helper, so CLI and server agree on the key.
func authenticateClient(t *testing.T, db, id, secret string) error {
	t.Helper()
	c := config{Database: db}
	svc, b, err := clientService(context.Background(), &c)
	if err != nil {
		t.Fatal(err)
	}
	defer b.store.Close()
	_, err = svc.AuthenticateOAuthClient(context.Background(), id, secret)
	return err
}

func TestClientCreateConfidential(t *testing.T) {
	db := clientDB(t)
	c := createClient(t, db, "--name", "Billing", "--redirect-uri", "https://billing.example.com/cb",
		"--redirect-uri", "http://127.0.0.1:8000/cb", "--post-logout-redirect-uri", "https://billing.example.com/bye",
		"--scope", "invoices:read", "--scope", "invoices:write", "--audience", "billing-api", "--first-party")
	if c.ClientSecret == nil || len(*c.ClientSecret) < 32 {
		t.Fatalf("a confidential client needs a secret, got %v", c.ClientSecret)
	}
	if err := authenticateClient(t, db, c.ClientID, *c.ClientSecret); err != nil {
		t.Errorf("the printed secret does not authenticate the client: %v", err)
	}
	if err := authenticateClient(t, db, c.ClientID, *c.ClientSecret+"x"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("a wrong secret: %v, want invalid credentials", err)
	}
	out, err := runClient(t, nil, "list", "--database", db)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{c.ClientID, "Billing", "secret", "yes", "authorization_code,refresh_token",
		"invoices:read,invoices:write", "https://billing.example.com/cb http://127.0.0.1:8000/cb"} {
		if !strings.Contains(out, want) {
			t.Errorf("client list lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, *c.ClientSecret) {
		t.Errorf("client list shows the secret:\n%s", out)
	}
}

func TestClientCreatePublicAndTLS(t *testing.T) {
	db := clientDB(t)
	pub := createClient(t, db, "--name", "Phone app", "--public", "--redirect-uri", "http://localhost:7777/cb")
	if pub.ClientSecret != nil {
		t.Errorf("a public client got a secret: %q", *pub.ClientSecret)
	}
	mtls := createClient(t, db, "--name", "Batch job", "--grant", "client_credentials", "--tls-client-auth", "CN=batch,O=Example")
	if mtls.ClientSecret != nil {
		t.Errorf("a tls_client_auth client got a secret: %q", *mtls.ClientSecret)
	}
	// The environment names the database as it does for every command.
	out, err := runClient(t, map[string]string{"GATEHOUSE_DATABASE": db}, "list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "CLIENT ID") {
		t.Fatalf("want a header and two clients:\n%s", out)
	}
	if !strings.Contains(lines[1], pub.ClientID) || !strings.Contains(lines[1], "public") {
		t.Errorf("the public client's row: %q", lines[1])
	}
	if !strings.Contains(lines[2], mtls.ClientID) || !strings.Contains(lines[2], "tls: CN=batch,O=Example") || !strings.Contains(lines[2], "client_credentials") {
		t.Errorf("the tls client's row: %q", lines[2])
	}
}

func TestClientRemove(t *testing.T) {
	db := clientDB(t)
	keep := createClient(t, db, "--name", "Keep", "--redirect-uri", "https://keep.example.com/cb")
	gone := createClient(t, db, "--name", "Gone", "--redirect-uri", "https://gone.example.com/cb")
	out, err := runClient(t, nil, "remove", gone.ClientID, "--database", db)
	if err != nil || !strings.Contains(out, gone.ClientID) {
		t.Fatalf("client remove: %v %q", err, out)
	}
	out, err = runClient(t, nil, "list", "--database", db)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, gone.ClientID) || !strings.Contains(out, keep.ClientID) {
		t.Errorf("after removing %s:\n%s", gone.ClientID, out)
	}
	if err := authenticateClient(t, db, gone.ClientID, *gone.ClientSecret); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("a removed client authenticates: %v", err)
	}
	_, err = runClient(t, nil, "remove", gone.ClientID, "--database", db)
	if err == nil || !strings.Contains(err.Error(), "no client") {
		t.Errorf("removing it again: %v, want no client", err)
	}
}

func TestClientBadInput(t *testing.T) {
	db := clientDB(t)
	for _, c := range []struct {
		name string
		args []string
		want string // in the message
	}{
		{"no subcommand", nil, "usage: gatehouse client"},
		{"unknown subcommand", []string{"rename"}, "usage: gatehouse client"},
		{"no name", []string{"create", "--redirect-uri", "https://a.example.com/cb"}, "--name is required"},
		{"no redirect uri", []string{"create", "--name", "A"}, "--redirect-uri"},
		{"http redirect uri", []string{"create", "--name", "A", "--redirect-uri", "http://a.example.com/cb"}, "--redirect-uri"},
		{"fragment", []string{"create", "--name", "A", "--redirect-uri", "https://a.example.com/cb#x"}, "--redirect-uri"},
		{"empty redirect uri", []string{"create", "--name", "A", "--redirect-uri", ""}, "--redirect-uri must not be empty"},
		{"bad grant", []string{"create", "--name", "A", "--redirect-uri", "https://a.example.com/cb", "--grant", "password"}, "--grant"},
		{"empty grant", []string{"create", "--name", "A", "--redirect-uri", "https://a.example.com/cb", "--grant", "authorization_code,"}, "--grant must not be empty"},
		{"public client_credentials", []string{"create", "--name", "A", "--public", "--grant", "client_credentials"}, "--grant"},
		{"public tls", []string{"create", "--name", "A", "--public", "--redirect-uri", "https://a.example.com/cb", "--tls-client-auth", "CN=a"}, "--tls-client-auth"},
		{"standard scope", []string{"create", "--name", "A", "--redirect-uri", "https://a.example.com/cb", "--scope", "openid"}, "--scope"},
		{"bad post-logout uri", []string{"create", "--name", "A", "--redirect-uri", "https://a.example.com/cb", "--post-logout-redirect-uri", "ftp://a.example.com/"}, "--post-logout-redirect-uri"},
		{"unknown flag", []string{"create", "--name", "A", "--secret", "x"}, "flag provided but not defined"},
		{"stray argument", []string{"create", "--name", "A", "--redirect-uri", "https://a.example.com/cb", "extra"}, "unexpected argument"},
		{"remove without id", []string{"remove"}, "usage: gatehouse client"},
		{"remove unknown", []string{"remove", "gh_client_nope"}, "no client"},
		{"list with argument", []string{"list", "x"}, "unexpected argument"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := c.args
			if len(args) > 0 && !strings.Contains(c.want, "usage") {
				args = append(args, "--database", db)
			}
			out, err := runClient(t, nil, args...)
			if err == nil {
				t.Fatalf("gatehouse client %v: no error, stdout %q", c.args, out)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("gatehouse client %v: %q, want it to mention %q", c.args, err, c.want)
			}
			if out != "" {
				t.Errorf("gatehouse client %v printed %q on stdout", c.args, out)
			}
		})
	}
	// Nothing was registered on the way.
	out, err := runClient(t, nil, "list", "--database", db)
	if err != nil || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("clients after refused creates: %v\n%s", err, out)
	}
}

func TestClientHelp(t *testing.T) {
	for _, args := range [][]string{{"create", "--help"}, {"remove", "x", "-h"}, {"--help"}} {
		_, err := runClient(t, nil, args...)
		var help *helpRequest
		if !errors.As(err, &help) || !strings.Contains(help.text, "--redirect-uri") {
			t.Errorf("client %v: %v, want the usage", args, err)
		}
	}
	err := run(context.Background(), []string{"--help"}, func(string) string { return "" }, strings.NewReader(""), io.Discard, io.Discard)
	var help *helpRequest
	if !errors.As(err, &help) || !strings.Contains(help.text, "client create") || !strings.Contains(help.text, "--tls-cert") {
		t.Errorf("gatehouse --help does not mention client create and --tls-cert: %v", err)
	}
}
