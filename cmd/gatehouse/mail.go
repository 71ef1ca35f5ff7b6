package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	netmail "net/mail"
	"path/filepath"
	"strings"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/mail"
	"github.com/gatehouse/gatehouse/masterkey"
	"github.com/gatehouse/gatehouse/metrics"
)

// mailFlags are the mailer's flags, taken by serve and by mail test.
var mailFlags = []string{"smtp-url", "mail-from", "mail-dir", "mail-templates", "product-name"}

// mailDirName is the default folder of the file outbox.
const mailDirName = "gatehouse-mail"

// defaultMailDir is where .eml files go without --mail-dir: beside the
// SQLite file, where the operator already looks for the database and its
// key file, or in the working directory for PostgreSQL and :memory:.
func defaultMailDir(database string) string {
	if path, ok := strings.CutPrefix(database, "sqlite:"); ok && path != "" && path != ":memory:" {
		return filepath.Join(filepath.Dir(path), mailDirName)
	}
	return mailDirName
}

// newSender builds the configured sender: SMTP with --smtp-url, else the
// file outbox. The description names where mail goes, for operators.
func newSender(c *config) (mail.Sender, error) {
	if c.SMTPURL == "" {
		dir := c.MailDir
		if dir == "" {
			dir = defaultMailDir(c.Database)
		}
		from := c.MailFrom
		if from == "" {
			// Nothing leaves the machine, so any well-formed sender will
			// do; the product name makes the files easy to recognise.
			from = (&netmail.Address{Name: c.ProductName, Address: "noreply@localhost"}).String()
		}
		f, err := mail.NewFileSender(dir, from)
		if err != nil {
			return nil, fmt.Errorf("--mail-dir: %w", err)
		}
		return f, nil
	}
	if c.MailDir != "" {
		return nil, errors.New("give either --smtp-url or --mail-dir, not both")
	}
	if c.MailFrom == "" {
		return nil, errors.New(`--mail-from is required with --smtp-url, e.g. "Example <noreply@example.com>"`)
	}
	if _, err := mail.ParseFrom(c.MailFrom); err != nil {
		return nil, fmt.Errorf("--mail-from: %w", err)
	}
	s, err := mail.NewSMTPSender(mail.SMTPConfig{URL: c.SMTPURL, From: c.MailFrom})
	if err != nil {
		// The URL may hold a password: say what is wrong, never echo it.
		return nil, fmt.Errorf("--smtp-url: %w", err)
	}
	return s, nil
}

// newMailer builds the outbox that requests enqueue into and the worker
// that sends (run it with `go worker.Run(ctx)`; it logs where mail goes
// when it starts). It fails on bad mail configuration, so call it before
// the listener opens. m may be nil. busy reports password hashes running or
// queued: the worker holds a fresh message back briefly while there are
// (mail.Config.Busy); nil never holds back.
func newMailer(c *config, store gatehouse.MailOutbox, master []byte, logger *slog.Logger, m *metrics.Metrics, busy func() bool) (*mail.Outbox, *mail.Worker, error) {
	renderer, err := mail.NewRenderer(c.ProductName, c.MailTemplates)
	if err != nil {
		return nil, nil, fmt.Errorf("--mail-templates: %w", err)
	}
	sender, err := newSender(c)
	if err != nil {
		return nil, nil, err
	}
	cfg := mail.Config{
		Store:    store,
		Sender:   sender,
		Renderer: renderer,
		Key:      masterkey.Derive(master, masterkey.PurposeMail),
		Logger:   logger,
		Busy:     busy,
	}
	if m != nil {
		cfg.Observer = m
	}
	out, worker, err := mail.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	return out, worker, nil
}

// mailTest sends one test message directly through the configured sender
// (not through the queue, so no database or master key is needed) and
// prints where it went.
func mailTest(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	var c config
	var to string
	fs := newFlagSet("mail test", &c, append([]string{"database"}, mailFlags...)...)
	fs.StringVar(&to, "to", "", "address to send the test message to")
	if err := parseFlags(fs, args, getenv); err != nil {
		return err
	}
	if to == "" {
		return errors.New("--to is required")
	}
	if _, err := mail.ParseRecipient(to); err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	renderer, err := mail.NewRenderer(c.ProductName, c.MailTemplates)
	if err != nil {
		return fmt.Errorf("--mail-templates: %w", err)
	}
	sender, err := newSender(&c)
	if err != nil {
		return err
	}
	msg, err := renderer.Render(mail.Test, to, mail.Data{Email: to})
	if err != nil {
		return err
	}
	if f, ok := sender.(*mail.FileSender); ok {
		path, err := f.Write(ctx, msg)
		if err != nil {
			fmt.Fprintf(stdout, "test message to %s not written to %s: %s\n", to, f.Dir(), oneLine(err.Error()))
			return fmt.Errorf("mail test failed: %w", err)
		}
		fmt.Fprintf(stdout, "no --smtp-url: test message to %s written to %s\n", to, path)
		return nil
	}
	desc := fmt.Sprint(sender)
	if err := sender.Send(ctx, msg); err != nil {
		fmt.Fprintf(stdout, "test message to %s through %s failed: %s\n", to, desc, oneLine(err.Error()))
		return fmt.Errorf("mail test failed: %w", err)
	}
	fmt.Fprintf(stdout, "test message to %s sent through %s\n", to, desc)
	return nil
}

// mailQueue lets the service queue mail through the outbox: it renders the
// template the flow names with the flow's link, code and lifetime.
type mailQueue struct{ outbox *mail.Outbox }

func (q mailQueue) Queue(ctx context.Context, r auth.MailRequest) error {
	return q.outbox.EnqueueTemplate(ctx, mail.Template(r.Template), r.To, templateData(r), r.Secrets...)
}

// Prepare renders and seals r for a transaction of the caller's
// (auth.MailPreparer: a sign-up stores its verification mail with the user).
func (q mailQueue) Prepare(r auth.MailRequest) (auth.PreparedMail, error) {
	p, err := q.outbox.PrepareTemplate(mail.Template(r.Template), r.To, templateData(r))
	if err != nil {
		return nil, err
	}
	return preparedMail{p}, nil
}

type preparedMail struct{ p *mail.Prepared }

func (m preparedMail) Message() gatehouse.OutboxMessage { return m.p.Message }
func (m preparedMail) Done(committed bool)              { m.p.Done(committed) }

func templateData(r auth.MailRequest) mail.Data {
	return mail.Data{URL: r.Link, Code: r.Code, Lifetime: r.Lifetime, Email: r.To, NewEmail: r.NewEmail, OldEmail: r.OldEmail}
}
