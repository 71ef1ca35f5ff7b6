package auth_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/ratelimit"
)

// totpCode computes the RFC 6238 code of secret for the step of t,
// independently of the code under test.
func totpCode(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	if err != nil {
		t.Fatal(err)
	}
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(at.Unix()/30))
	m := hmac.New(sha1.New, key)
	m.Write(msg[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	return fmt.Sprintf("%06d", (binary.BigEndian.Uint32(sum[off:off+4])&0x7fffffff)%1_000_000)
}

// enrolTOTP signs up a user and turns on TOTP; it returns the secret and
// the recovery codes.
func enrolTOTP(t *testing.T, m mailService, email string) (auth.Grant, string, []string) {
	t.Helper()
	ctx := context.Background()
	g := signup(t, m.svc, email)
	p, err := m.svc.Authenticate(ctx, g.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	e, err := m.svc.StartTOTP(ctx, p, passphrase)
	if err != nil {
		t.Fatalf("start totp: %v", err)
	}
	codes, err := m.svc.ConfirmTOTP(ctx, p, totpCode(t, e.Secret, m.clk.Now()))
	if err != nil {
		t.Fatalf("confirm totp: %v", err)
	}
	if len(codes) != 10 {
		t.Fatalf("%d recovery codes, want 10", len(codes))
	}
	return g, e.Secret, codes
}

// loginToMFA logs in with the password and returns the mfa_token.
func loginToMFA(t *testing.T, m mailService, email string) string {
	t.Helper()
	_, err := m.svc.Login(context.Background(), auth.LoginInput{Email: email, Password: passphrase}, client)
	var mfaErr *auth.MFARequiredError
	if !errors.As(err, &mfaErr) {
		t.Fatalf("login of a TOTP user: %v, want mfa_required", err)
	}
	if !slices.Contains(mfaErr.Methods, "totp") || !slices.Contains(mfaErr.Methods, "recovery_code") || mfaErr.Token == "" {
		t.Fatalf("mfa_required = %+v", mfaErr)
	}
	return mfaErr.Token
}

func TestTOTPLoginAndReplay(t *testing.T) {
	m := newMailService(t, nil)
	ctx := context.Background()
	_, secret, _ := enrolTOTP(t, m, "ada@example.com")
	m.clk.Advance(30 * time.Second) // the enrolment code's step is used

	tok := loginToMFA(t, m, "ada@example.com")
	code := totpCode(t, secret, m.clk.Now())
	g, err := m.svc.VerifyMFA(ctx, auth.VerifyMFAInput{Token: tok, Method: "totp", Code: code}, client)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if want := []string{"pwd", "otp", "mfa"}; !slices.Equal(g.Session.AMR, want) {
		t.Fatalf("amr = %q, want %q", g.Session.AMR, want)
	}
	// The same code again, on a new mfa_token, inside its window: refused.
	tok2 := loginToMFA(t, m, "ada@example.com")
	if _, err := m.svc.VerifyMFA(ctx, auth.VerifyMFAInput{Token: tok2, Method: "totp", Code: code}, client); !errors.Is(err, auth.ErrInvalidCode) {
		t.Fatalf("a TOTP code used twice: %v, want ErrInvalidCode", err)
	}
	// One step late passes; the mfa_token survived the wrong attempt.
	if _, err := m.svc.VerifyMFA(ctx, auth.VerifyMFAInput{Token: tok2, Method: "totp", Code: totpCode(t, secret, m.clk.Now().Add(30*time.Second))}, client); err != nil {
		t.Fatalf("code of the next step: %v", err)
	}
	// Two steps away fails.
	tok3 := loginToMFA(t, m, "ada@example.com")
	if _, err := m.svc.VerifyMFA(ctx, auth.VerifyMFAInput{Token: tok3, Method: "totp", Code: totpCode(t, secret, m.clk.Now().Add(90*time.Second))}, client); !errors.Is(err, auth.ErrInvalidCode) {
		t.Fatalf("code two steps ahead: %v, want ErrInvalidCode", err)
	}
	// The token is single use.
	if _, err := m.svc.VerifyMFA(ctx, auth.VerifyMFAInput{Token: tok, Method: "totp", Code: totpCode(t, secret, m.clk.Now().Add(60*time.Second))}, client); !errors.Is(err, auth.ErrInvalidCode) {
		t.Fatalf("an mfa_token used twice: %v", err)
	}
}

func TestRecoveryCodesAndRegeneration(t *testing.T) {
	m := newMailService(t, nil)
	ctx := context.Background()
	g, secret, codes := enrolTOTP(t, m, "ada@example.com")
	tok := loginToMFA(t, m, "ada@example.com")
	r, err := m.svc.VerifyMFA(ctx, auth.VerifyMFAInput{Token: tok, Method: "recovery_code", Code: codes[0]}, client)
	if err != nil {
		t.Fatalf("recovery code: %v", err)
	}
	if want := []string{"pwd", "recovery", "mfa"}; !slices.Equal(r.Session.AMR, want) {
		t.Fatalf("amr = %q, want %q", r.Session.AMR, want)
	}
	tok = loginToMFA(t, m, "ada@example.com")
	if _, err := m.svc.VerifyMFA(ctx, auth.VerifyMFAInput{Token: tok, Method: "recovery_code", Code: codes[0]}, client); !errors.Is(err, auth.ErrInvalidCode) {
		t.Fatalf("a recovery code used twice: %v", err)
	}
	p, _ := m.svc.Authenticate(ctx, g.AccessToken)
	m.clk.Advance(30 * time.Second)
	fresh, err := m.svc.RegenerateRecoveryCodes(ctx, p, totpCode(t, secret, m.clk.Now()))
	if err != nil || len(fresh) != 10 {
		t.Fatalf("regenerate = %d codes, %v", len(fresh), err)
	}
	if _, err := m.svc.VerifyMFA(ctx, auth.VerifyMFAInput{Token: tok, Method: "recovery_code", Code: codes[1]}, client); !errors.Is(err, auth.ErrInvalidCode) {
		t.Fatalf("an old recovery code after regeneration: %v", err)
	}
	if _, err := m.svc.VerifyMFA(ctx, auth.VerifyMFAInput{Token: tok, Method: "recovery_code", Code: fresh[1]}, client); err != nil {
		t.Fatalf("a new recovery code: %v", err)
	}
}

func TestMFATokenDiesAfterFiveWrongCodes(t *testing.T) {
	m := newMailService(t, nil)
	ctx := context.Background()
	_, secret, _ := enrolTOTP(t, m, "ada@example.com")
	m.clk.Advance(30 * time.Second)
	tok := loginToMFA(t, m, "ada@example.com")
	right := totpCode(t, secret, m.clk.Now())
	for i := range 5 {
		wrong := fmt.Sprintf("%06d", (i+1)*111111%1_000_000)
		if wrong == right {
			wrong = "000000"
		}
		if _, err := m.svc.VerifyMFA(ctx, auth.VerifyMFAInput{Token: tok, Method: "totp", Code: wrong}, client); !errors.Is(err, auth.ErrInvalidCode) {
			t.Fatalf("wrong code %d: %v", i+1, err)
		}
	}
	if _, err := m.svc.VerifyMFA(ctx, auth.VerifyMFAInput{Token: tok, Method: "totp", Code: right}, client); !errors.Is(err, auth.ErrInvalidCode) {
		t.Fatalf("the right code after 5 wrong ones: %v, want ErrInvalidCode", err)
	}
}

func TestDisableNeedsACodeAndAdminReset(t *testing.T) {
	m := newMailService(t, nil)
	ctx := context.Background()
	g, secret, codes := enrolTOTP(t, m, "ada@example.com")
	p, _ := m.svc.Authenticate(ctx, g.AccessToken)
	if err := m.svc.DisableTOTP(ctx, p, "123456"); !errors.Is(err, auth.ErrInvalidCode) && totpCode(t, secret, m.clk.Now()) != "123456" {
		t.Fatalf("disable with a wrong code: %v", err)
	}
	if err := m.svc.DisableTOTP(ctx, p, codes[3]); err != nil {
		t.Fatalf("disable with a recovery code: %v", err)
	}
	if _, err := m.svc.Login(ctx, auth.LoginInput{Email: "ada@example.com", Password: passphrase}, client); err != nil {
		t.Fatalf("login after disabling: %v", err)
	}
	// Enrol again, then the admin removes it.
	e, err := m.svc.StartTOTP(ctx, p, passphrase)
	if err != nil {
		t.Fatal(err)
	}
	m.clk.Advance(30 * time.Second)
	if _, err := m.svc.ConfirmTOTP(ctx, p, totpCode(t, e.Secret, m.clk.Now())); err != nil {
		t.Fatal(err)
	}
	if _, err := m.svc.StartTOTP(ctx, p, passphrase); !errors.Is(err, auth.ErrAlreadyEnabled) {
		t.Fatalf("a second enrolment while on: %v, want ErrAlreadyEnabled", err)
	}
	if err := m.svc.AdminResetMFA(ctx, g.User.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.svc.Login(ctx, auth.LoginInput{Email: "ada@example.com", Password: passphrase}, client); err != nil {
		t.Fatalf("login after the admin reset: %v", err)
	}
}

func TestPasswordChangeKeepsTheFactor(t *testing.T) {
	m := newMailService(t, nil)
	ctx := context.Background()
	g, _, _ := enrolTOTP(t, m, "ada@example.com")
	p, _ := m.svc.Authenticate(ctx, g.AccessToken)
	const next = "another long and unusual passphrase"
	if err := m.svc.ChangePassword(ctx, p, passphrase, next); err != nil {
		t.Fatal(err)
	}
	var mfaErr *auth.MFARequiredError
	if _, err := m.svc.Login(ctx, auth.LoginInput{Email: "ada@example.com", Password: next}, client); !errors.As(err, &mfaErr) {
		t.Fatalf("login after a password change: %v, want mfa_required", err)
	}
}

func TestMagicLinkThenSecondFactor(t *testing.T) {
	m := newMailService(t, nil)
	ctx := context.Background()
	_, secret, _ := enrolTOTP(t, m, "ada@example.com")
	_ = m.svc.MagicLink(ctx, "ada@example.com", client)
	m.settle()
	msg := m.mail.last(t, "ada@example.com", auth.TemplateMagicLink)
	_, err := m.svc.MagicLinkSignIn(ctx, auth.MagicLinkInput{Token: linkToken(t, msg.Link, "magic-link")}, client)
	var mfaErr *auth.MFARequiredError
	if !errors.As(err, &mfaErr) {
		t.Fatalf("magic link of a TOTP user: %v, want mfa_required", err)
	}
	m.clk.Advance(30 * time.Second)
	g, err := m.svc.VerifyMFA(ctx, auth.VerifyMFAInput{Token: mfaErr.Token, Method: "totp", Code: totpCode(t, secret, m.clk.Now())}, client)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"email", "otp", "mfa"}; !slices.Equal(g.Session.AMR, want) {
		t.Fatalf("amr = %q, want %q", g.Session.AMR, want)
	}
}

func TestSecondFactorGuessesShareTheAccountBudget(t *testing.T) {
	rate, err := ratelimit.ParseRate("3/1m")
	if err != nil {
		t.Fatal(err)
	}
	m := newMailService(t, func(c *auth.Config) { c.LoginRate = rate })
	ctx := context.Background()
	_, secret, _ := enrolTOTP(t, m, "ada@example.com")
	m.clk.Advance(30 * time.Second)
	right := totpCode(t, secret, m.clk.Now())
	wrong := "000000"
	if right == wrong {
		wrong = "111111"
	}
	limited, checked := false, 0
	for i := range 6 {
		// Each attempt from another address, as a distributed guesser would.
		c := client
		c.IP = fmt.Sprintf("192.0.2.%d", 10+i)
		var rl *auth.RateLimitError
		_, err := m.svc.Login(ctx, auth.LoginInput{Email: "ada@example.com", Password: passphrase}, c)
		var mfaErr *auth.MFARequiredError
		if errors.As(err, &rl) {
			limited = true
			break
		}
		if !errors.As(err, &mfaErr) {
			t.Fatalf("login %d: %v", i+1, err)
		}
		_, err = m.svc.VerifyMFA(ctx, auth.VerifyMFAInput{Token: mfaErr.Token, Method: "totp", Code: wrong}, c)
		if errors.As(err, &rl) {
			limited = true
			break
		}
		if !errors.Is(err, auth.ErrInvalidCode) {
			t.Fatalf("guess %d: %v", i+1, err)
		}
		checked++
	}
	if !limited || checked > 3 {
		t.Fatalf("%d wrong second-factor guesses over as many mfa_tokens were checked under a budget of 3 (limited: %v)", checked, limited)
	}
	// The password is limited too: guesses of either factor share the budget.
	var rl *auth.RateLimitError
	fresh := client
	fresh.IP = "192.0.2.99"
	if _, err := m.svc.Login(ctx, auth.LoginInput{Email: "ada@example.com", Password: passphrase}, fresh); !errors.As(err, &rl) {
		t.Fatalf("login after the second-factor budget is spent: %v, want rate limited", err)
	}
}
