package auth_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/auth"
)

// mailbox records the mail the service queues, and stores the secrets
// queued with it as the outbox does.
type mailbox struct {
	mu      sync.Mutex
	sent    []auth.MailRequest
	secrets gatehouse.SecretStore
}

func (m *mailbox) Queue(ctx context.Context, r auth.MailRequest) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, sec := range r.Secrets {
		if err := m.secrets.CreateSecret(ctx, sec); err != nil {
			return err
		}
	}
	m.sent = append(m.sent, r)
	return nil
}

// last returns the newest message of template to address.
func (m *mailbox) last(t *testing.T, to, template string) auth.MailRequest {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.sent) - 1; i >= 0; i-- {
		if m.sent[i].To == to && m.sent[i].Template == template {
			return m.sent[i]
		}
	}
	t.Fatalf("no %s mail to %s among %d", template, to, len(m.sent))
	return auth.MailRequest{}
}

func (m *mailbox) count(to, template string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, r := range m.sent {
		if r.To == to && r.Template == template {
			n++
		}
	}
	return n
}

// linkToken takes the token out of a mailed link, checking that it travels
// in the fragment only.
func linkToken(t *testing.T, link, action string) string {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	if u.RawQuery != "" || u.Path != "/account/"+action {
		t.Fatalf("link %q: want /account/%s with the token in the fragment only", link, action)
	}
	frag, err := url.ParseQuery(u.Fragment)
	if err != nil || frag.Get("token") == "" {
		t.Fatalf("link %q has no #token=", link)
	}
	return frag.Get("token")
}

type mailService struct {
	svc  *auth.Service
	clk  *clock
	st   gatehouse.Store
	mail *mailbox
}

func newMailService(t *testing.T, adjust func(*auth.Config)) mailService {
	t.Helper()
	box := &mailbox{}
	svc, clk, st := newServiceConfig(t, func(c *auth.Config, d *auth.Deps) {
		d.Mailer, box.secrets = box, d.Secrets
		if adjust != nil {
			adjust(c)
		}
	})
	return mailService{svc: svc, clk: clk, st: st, mail: box}
}

// settle waits for the work forgot-password and magic links do after
// answering.
func (m mailService) settle() { m.svc.Close() }

func TestSignupSendsOneVerificationThatWorksOnce(t *testing.T) {
	m := newMailService(t, nil)
	ctx := context.Background()
	g := signup(t, m.svc, "ada@example.com")
	if g.User.EmailVerified {
		t.Fatal("a new user is verified before following any link")
	}
	if n := m.mail.count("ada@example.com", auth.TemplateVerifyEmail); n != 1 {
		t.Fatalf("signup queued %d verification mails, want 1", n)
	}
	tok := linkToken(t, m.mail.last(t, "ada@example.com", auth.TemplateVerifyEmail).Link, "verify-email")
	u, err := m.svc.VerifyEmail(ctx, tok)
	if err != nil || !u.EmailVerified {
		t.Fatalf("VerifyEmail = %+v, %v", u, err)
	}
	if _, err := m.svc.VerifyEmail(ctx, tok); !errors.Is(err, auth.ErrInvalidLink) {
		t.Fatalf("second use of a verification token: %v, want ErrInvalidLink", err)
	}
	p, _ := m.svc.Authenticate(ctx, g.AccessToken)
	if err := m.svc.ResendVerification(ctx, p, client); !errors.Is(err, auth.ErrAlreadyVerified) {
		t.Fatalf("resend after verification: %v, want ErrAlreadyVerified", err)
	}
}

func TestVerificationVoidedByNewerAndRefusedForAnotherKind(t *testing.T) {
	m := newMailService(t, nil)
	ctx := context.Background()
	g := signup(t, m.svc, "ada@example.com")
	first := linkToken(t, m.mail.last(t, "ada@example.com", auth.TemplateVerifyEmail).Link, "verify-email")
	p, _ := m.svc.Authenticate(ctx, g.AccessToken)
	if err := m.svc.ResendVerification(ctx, p, client); err != nil {
		t.Fatal(err)
	}
	second := linkToken(t, m.mail.last(t, "ada@example.com", auth.TemplateVerifyEmail).Link, "verify-email")
	if first == second {
		t.Fatal("a resent verification carries the same token")
	}
	if err := m.svc.ResetPassword(ctx, second, "another long and unusual passphrase"); !errors.Is(err, auth.ErrInvalidLink) {
		t.Fatalf("a verification token used as a reset token: %v, want ErrInvalidLink", err)
	}
	if _, err := m.svc.VerifyEmail(ctx, first); !errors.Is(err, auth.ErrInvalidLink) {
		t.Fatalf("the voided first token: %v, want ErrInvalidLink", err)
	}
	for _, bad := range []string{second[:len(second)-1], second + "A", strings.ToUpper(second), "x." + second} {
		if _, err := m.svc.VerifyEmail(ctx, bad); !errors.Is(err, auth.ErrInvalidLink) {
			t.Fatalf("tampered token %q: %v", bad, err)
		}
	}
	if _, err := m.svc.VerifyEmail(ctx, second); err != nil {
		t.Fatalf("the newest token after failed attempts of others: %v", err)
	}
}

func TestForgotResetEndsEverySession(t *testing.T) {
	m := newMailService(t, nil)
	ctx := context.Background()
	g := signup(t, m.svc, "ada@example.com")
	if err := m.svc.ForgotPassword(ctx, "ADA@example.com", client); err != nil {
		t.Fatal(err)
	}
	if err := m.svc.ForgotPassword(ctx, "nobody@example.com", client); err != nil {
		t.Fatalf("forgot for an unknown address: %v", err)
	}
	m.settle()
	if n := m.mail.count("nobody@example.com", auth.TemplateResetPassword); n != 0 {
		t.Fatalf("a reset mail went to an address without an account")
	}
	tok := linkToken(t, m.mail.last(t, "ada@example.com", auth.TemplateResetPassword).Link, "reset-password")
	if err := m.svc.ResetPassword(ctx, tok, "password"); !errors.Is(err, auth.ErrWeakPassword) {
		t.Fatalf("weak new password: %v, want ErrWeakPassword", err)
	}
	const next = "another long and unusual passphrase"
	if err := m.svc.ResetPassword(ctx, tok, next); err != nil {
		t.Fatalf("reset (after a refused weak password, the link still works): %v", err)
	}
	if _, err := m.svc.Authenticate(ctx, g.AccessToken); err == nil {
		t.Fatal("an access token from before the reset still works")
	}
	if _, err := m.svc.Refresh(ctx, g.RefreshToken, client); err == nil {
		t.Fatal("a refresh token from before the reset still works")
	}
	if _, err := m.svc.Login(ctx, auth.LoginInput{Email: "ada@example.com", Password: passphrase}, client); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("old password after reset: %v", err)
	}
	g2, err := m.svc.Login(ctx, auth.LoginInput{Email: "ada@example.com", Password: next}, client)
	if err != nil {
		t.Fatalf("new password after reset: %v", err)
	}
	if !g2.User.EmailVerified {
		t.Error("a reset link proves the address, but the email is not verified")
	}
	if err := m.svc.ResetPassword(ctx, tok, "a third long passphrase here"); !errors.Is(err, auth.ErrInvalidLink) {
		t.Fatalf("reset link used twice: %v", err)
	}
}

func TestPasswordChangeVoidsResetLinks(t *testing.T) {
	m := newMailService(t, nil)
	ctx := context.Background()
	g := signup(t, m.svc, "ada@example.com")
	_ = m.svc.ForgotPassword(ctx, "ada@example.com", client)
	m.settle()
	tok := linkToken(t, m.mail.last(t, "ada@example.com", auth.TemplateResetPassword).Link, "reset-password")
	p, _ := m.svc.Authenticate(ctx, g.AccessToken)
	if err := m.svc.ChangePassword(ctx, p, passphrase, "another long and unusual passphrase"); err != nil {
		t.Fatal(err)
	}
	if err := m.svc.ResetPassword(ctx, tok, "the attacker's chosen passphrase"); !errors.Is(err, auth.ErrInvalidLink) {
		t.Fatalf("a reset link from before a password change: %v, want ErrInvalidLink", err)
	}
}

func TestMagicLinkAndCode(t *testing.T) {
	m := newMailService(t, nil)
	ctx := context.Background()
	signup(t, m.svc, "ada@example.com")
	_ = m.svc.MagicLink(ctx, "ada@example.com", client)
	m.settle()
	msg := m.mail.last(t, "ada@example.com", auth.TemplateMagicLink)
	g, err := m.svc.MagicLinkSignIn(ctx, auth.MagicLinkInput{Token: linkToken(t, msg.Link, "magic-link")}, client)
	if err != nil {
		t.Fatalf("magic link: %v", err)
	}
	if !g.User.EmailVerified {
		t.Error("a magic link proves the address, but the email is not verified")
	}
	if _, err := m.svc.Authenticate(ctx, g.AccessToken); err != nil {
		t.Fatal(err)
	}
	if got := g.Session.AMR; len(got) != 1 || got[0] != auth.MethodEmail {
		t.Fatalf("session amr = %q, want [email]", got)
	}
	// Link and code were sent together: the code died with the link.
	if _, err := m.svc.MagicLinkSignIn(ctx, auth.MagicLinkInput{Email: "ada@example.com", Code: msg.Code}, client); !errors.Is(err, auth.ErrInvalidCode) {
		t.Fatalf("the code after its link was used: %v, want ErrInvalidCode", err)
	}

	// By code, after wrong guesses; a refresh keeps the amr.
	_ = m.svc.MagicLink(ctx, "ada@example.com", client)
	m.settle()
	msg = m.mail.last(t, "ada@example.com", auth.TemplateMagicLink)
	wrong := "000000"
	if msg.Code == wrong {
		wrong = "111111"
	}
	if _, err := m.svc.MagicLinkSignIn(ctx, auth.MagicLinkInput{Email: "ada@example.com", Code: wrong}, client); !errors.Is(err, auth.ErrInvalidCode) {
		t.Fatalf("wrong code: %v", err)
	}
	g, err = m.svc.MagicLinkSignIn(ctx, auth.MagicLinkInput{Email: "Ada@Example.com", Code: msg.Code}, client)
	if err != nil {
		t.Fatalf("right code after a wrong one: %v", err)
	}
	r, err := m.svc.Refresh(ctx, g.RefreshToken, client)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Session.AMR; len(got) != 1 || got[0] != auth.MethodEmail {
		t.Fatalf("amr after refresh = %q, want [email]", got)
	}
}

func TestMagicCodeDiesAfterFiveWrongGuesses(t *testing.T) {
	m := newMailService(t, nil)
	ctx := context.Background()
	signup(t, m.svc, "ada@example.com")
	_ = m.svc.MagicLink(ctx, "ada@example.com", client)
	m.settle()
	code := m.mail.last(t, "ada@example.com", auth.TemplateMagicLink).Code
	guesses := 0
	for n := 0; guesses < 5; n++ {
		g := strings.Repeat(string(rune('0'+n%10)), 6)
		if g == code {
			continue
		}
		guesses++
		if _, err := m.svc.MagicLinkSignIn(ctx, auth.MagicLinkInput{Email: "ada@example.com", Code: g}, client); !errors.Is(err, auth.ErrInvalidCode) {
			t.Fatalf("wrong guess %d: %v", guesses, err)
		}
	}
	if _, err := m.svc.MagicLinkSignIn(ctx, auth.MagicLinkInput{Email: "ada@example.com", Code: code}, client); !errors.Is(err, auth.ErrInvalidCode) {
		t.Fatalf("the right code after 5 wrong guesses: %v, want ErrInvalidCode", err)
	}
}

func TestMagicLinkUnknownAddress(t *testing.T) {
	ctx := context.Background()
	off := newMailService(t, nil)
	_ = off.svc.MagicLink(ctx, "new@example.com", client)
	off.settle()
	if n := off.mail.count("new@example.com", auth.TemplateMagicLink); n != 0 {
		t.Fatal("a magic link went to an unknown address without --magic-link-signup")
	}

	on := newMailService(t, func(c *auth.Config) { c.MagicLinkSignup = true })
	_ = on.svc.MagicLink(ctx, "new@example.com", client)
	on.settle()
	tok := linkToken(t, on.mail.last(t, "new@example.com", auth.TemplateMagicLink).Link, "magic-link")
	g, err := on.svc.MagicLinkSignIn(ctx, auth.MagicLinkInput{Token: tok}, client)
	if err != nil {
		t.Fatalf("magic-link sign-up: %v", err)
	}
	if g.User.Email != "new@example.com" || !g.User.EmailVerified || g.User.Role != gatehouse.RoleUser {
		t.Fatalf("user made by a magic link: %+v", g.User)
	}
	// No password was set: password login fails the same way as a wrong one.
	if _, err := on.svc.Login(ctx, auth.LoginInput{Email: "new@example.com", Password: "anything at all here"}, client); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("password login of a passwordless account: %v", err)
	}
}

func TestDisabledAccountGetsNoMail(t *testing.T) {
	m := newMailService(t, nil)
	ctx := context.Background()
	g := signup(t, m.svc, "ada@example.com")
	yes := true
	if _, err := m.svc.UpdateUser(ctx, g.User.ID, nil, &yes); err != nil {
		t.Fatal(err)
	}
	_ = m.svc.ForgotPassword(ctx, "ada@example.com", client)
	_ = m.svc.MagicLink(ctx, "ada@example.com", client)
	m.settle()
	if n := m.mail.count("ada@example.com", auth.TemplateResetPassword) + m.mail.count("ada@example.com", auth.TemplateMagicLink); n != 0 {
		t.Fatalf("a disabled account got %d sign-in mails", n)
	}
}

func TestEmailChange(t *testing.T) {
	m := newMailService(t, nil)
	ctx := context.Background()
	g := signup(t, m.svc, "ada@example.com")
	signup(t, m.svc, "taken@example.com")
	p, _ := m.svc.Authenticate(ctx, g.AccessToken)
	if err := m.svc.RequestEmailChange(ctx, p, "taken@example.com", passphrase, client); !errors.Is(err, gatehouse.ErrEmailTaken) {
		t.Fatalf("change to a taken address: %v", err)
	}
	if err := m.svc.RequestEmailChange(ctx, p, "new@example.com", "wrong password here", client); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("change with a wrong password: %v", err)
	}
	if err := m.svc.RequestEmailChange(ctx, p, "new@example.com", passphrase, client); err != nil {
		t.Fatal(err)
	}
	if n := m.mail.last(t, "ada@example.com", auth.TemplateEmailChanged); n.NewEmail != "new@example.com" || n.OldEmail != "ada@example.com" {
		t.Errorf("the notice to the old address names %q → %q", n.OldEmail, n.NewEmail)
	}
	if c := m.mail.last(t, "new@example.com", auth.TemplateChangeEmail); c.OldEmail != "ada@example.com" {
		t.Errorf("the confirmation to the new address names the old one as %q", c.OldEmail)
	}
	tok := linkToken(t, m.mail.last(t, "new@example.com", auth.TemplateChangeEmail).Link, "change-email")
	u, err := m.svc.ConfirmEmailChange(ctx, tok)
	if err != nil || u.Email != "new@example.com" || !u.EmailVerified {
		t.Fatalf("confirm = %+v, %v", u, err)
	}
	if _, err := m.svc.Login(ctx, auth.LoginInput{Email: "new@example.com", Password: passphrase}, client); err != nil {
		t.Fatalf("login with the new address: %v", err)
	}
	if _, err := m.svc.Login(ctx, auth.LoginInput{Email: "ada@example.com", Password: passphrase}, client); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("login with the old address: %v", err)
	}
	if _, err := m.svc.ConfirmEmailChange(ctx, tok); !errors.Is(err, auth.ErrInvalidLink) {
		t.Fatalf("confirm twice: %v", err)
	}
}

func TestRequireVerifiedEmail(t *testing.T) {
	m := newMailService(t, func(c *auth.Config) { c.RequireVerifiedEmail = true })
	ctx := context.Background()
	signup(t, m.svc, "ada@example.com")
	if _, err := m.svc.Login(ctx, auth.LoginInput{Email: "ada@example.com", Password: "the wrong password"}, client); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("wrong password of an unverified account: %v, want ErrInvalidCredentials", err)
	}
	if _, err := m.svc.Login(ctx, auth.LoginInput{Email: "ada@example.com", Password: passphrase}, client); !errors.Is(err, auth.ErrEmailNotVerified) {
		t.Fatalf("right password of an unverified account: %v, want ErrEmailNotVerified", err)
	}
	tok := linkToken(t, m.mail.last(t, "ada@example.com", auth.TemplateVerifyEmail).Link, "verify-email")
	if _, err := m.svc.VerifyEmail(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := m.svc.Login(ctx, auth.LoginInput{Email: "ada@example.com", Password: passphrase}, client); err != nil {
		t.Fatalf("login after verification: %v", err)
	}
}

func TestMailedLinksExpire(t *testing.T) {
	m := newMailService(t, nil)
	ctx := context.Background()
	signup(t, m.svc, "ada@example.com")
	_ = m.svc.ForgotPassword(ctx, "ada@example.com", client)
	m.settle()
	tok := linkToken(t, m.mail.last(t, "ada@example.com", auth.TemplateResetPassword).Link, "reset-password")
	m.clk.Advance(time.Hour + time.Second)
	if err := m.svc.ResetPassword(ctx, tok, "another long and unusual passphrase"); !errors.Is(err, auth.ErrInvalidLink) {
		t.Fatalf("reset link after an hour: %v, want ErrInvalidLink", err)
	}
}

func TestEveryMailedSecretExpires(t *testing.T) {
	m := newMailService(t, nil)
	ctx := context.Background()
	g := signup(t, m.svc, "ada@example.com")
	verify := linkToken(t, m.mail.last(t, "ada@example.com", auth.TemplateVerifyEmail).Link, "verify-email")
	_ = m.svc.MagicLink(ctx, "ada@example.com", client)
	m.settle()
	magic := m.mail.last(t, "ada@example.com", auth.TemplateMagicLink)
	p, _ := m.svc.Authenticate(ctx, g.AccessToken)
	if err := m.svc.RequestEmailChange(ctx, p, "new@example.com", passphrase, client); err != nil {
		t.Fatal(err)
	}
	change := linkToken(t, m.mail.last(t, "new@example.com", auth.TemplateChangeEmail).Link, "change-email")

	m.clk.Advance(15*time.Minute + time.Second)
	if _, err := m.svc.MagicLinkSignIn(ctx, auth.MagicLinkInput{Token: linkToken(t, magic.Link, "magic-link")}, client); !errors.Is(err, auth.ErrInvalidLink) {
		t.Errorf("magic link after 15 minutes: %v, want ErrInvalidLink", err)
	}
	if _, err := m.svc.MagicLinkSignIn(ctx, auth.MagicLinkInput{Email: "ada@example.com", Code: magic.Code}, client); !errors.Is(err, auth.ErrInvalidCode) {
		t.Errorf("sign-in code after 15 minutes: %v, want ErrInvalidCode", err)
	}
	m.clk.Advance(time.Hour)
	if _, err := m.svc.ConfirmEmailChange(ctx, change); !errors.Is(err, auth.ErrInvalidLink) {
		t.Errorf("email-change link after an hour: %v, want ErrInvalidLink", err)
	}
	m.clk.Advance(23 * time.Hour)
	if _, err := m.svc.VerifyEmail(ctx, verify); !errors.Is(err, auth.ErrInvalidLink) {
		t.Errorf("verification link after 24 hours: %v, want ErrInvalidLink", err)
	}
}

// preparingMailbox is a mailbox that can also prepare a message for the
// caller's transaction (auth.MailPreparer), as the real outbox does.
type preparingMailbox struct {
	mailbox
	prepared []auth.MailRequest
	done     []bool
}

type preparedRow struct {
	m    gatehouse.OutboxMessage
	done func(bool)
}

func (p preparedRow) Message() gatehouse.OutboxMessage { return p.m }
func (p preparedRow) Done(committed bool)              { p.done(committed) }

func (b *preparingMailbox) Prepare(r auth.MailRequest) (auth.PreparedMail, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.prepared = append(b.prepared, r)
	now := time.Now().UTC()
	return preparedRow{
		m: gatehouse.OutboxMessage{ID: fmt.Sprintf("m%d", len(b.prepared)), Sealed: []byte("sealed"), CreatedAt: now, NextAttemptAt: now},
		done: func(c bool) {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.done = append(b.done, c)
		},
	}, nil
}

// TestSignupStoresUserAndVerificationMailTogether: with a mailer that can
// prepare, sign-up stores the verification mail (and its link's secret)
// in the user's own transaction, and queues nothing separately; a sign-up
// refused for a taken address leaves no mail.
func TestSignupStoresUserAndVerificationMailTogether(t *testing.T) {
	box := &preparingMailbox{}
	svc, _, st := newServiceConfig(t, func(_ *auth.Config, d *auth.Deps) {
		box.secrets = d.Store
		d.Mailer = box
	})
	ctx := context.Background()
	g := signup(t, svc, "together@example.com")
	if len(box.sent) != 0 || len(box.prepared) != 1 || len(box.done) != 1 || !box.done[0] {
		t.Fatalf("queued %d, prepared %d, done %v", len(box.sent), len(box.prepared), box.done)
	}
	if n, err := st.PendingMail(ctx); err != nil || n != 1 {
		t.Fatalf("outbox rows: %d %v", n, err)
	}
	link := box.prepared[0].Link
	tok := link[strings.Index(link, "#token=")+len("#token="):]
	tok, _ = url.QueryUnescape(tok)
	u, err := svc.VerifyEmail(ctx, tok)
	if err != nil || u.ID != g.User.ID || !u.EmailVerified {
		t.Fatalf("the link stored with the sign-up: %v %+v", err, u)
	}
	if _, err := svc.Signup(ctx, auth.SignupInput{Email: "together@example.com", Password: "a long and unusual passphrase"}, client); err == nil {
		t.Fatal("second sign-up with the same address succeeded")
	}
	if len(box.done) != 2 || box.done[1] {
		t.Fatalf("the refused sign-up's mail was not given back: %v", box.done)
	}
	if n, _ := st.PendingMail(ctx); n != 1 {
		t.Fatalf("outbox rows after a refused sign-up: %d", n)
	}
}
