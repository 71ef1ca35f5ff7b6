package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/store/sqlite"
)

// The relying party of these tests, as newPasskeyService configures it.
const (
	benchRPID   = "localhost"
	benchOrigin = "http://localhost:8080"
)

// softAuthenticator is a passkey in software: an ECDSA P-256 key that signs
// WebAuthn assertions built by hand, with a sign count that goes up by one
// with every assertion.
type softAuthenticator struct {
	key       *ecdsa.PrivateKey
	credID    []byte
	userID    string
	signCount atomic.Uint32
}

func newSoftAuthenticator(tb testing.TB, userID string) *softAuthenticator {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	id := make([]byte, 16)
	rand.Read(id)
	return &softAuthenticator{key: key, credID: id, userID: userID}
}

// credential is the authenticator's public key as go-webauthn stores it
// after a registration: the COSE EC2 key (ES256) in CBOR.
func (a *softAuthenticator) credential(tb testing.TB) webauthn.Credential {
	tb.Helper()
	pub, err := a.key.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		tb.Fatal(err)
	}
	cose, err := webauthncbor.Marshal(webauthncose.EC2PublicKeyData{
		PublicKeyData: webauthncose.PublicKeyData{
			KeyType:   int64(webauthncose.EllipticKey),
			Algorithm: int64(webauthncose.AlgES256),
		},
		Curve:  int64(webauthncose.P256),
		XCoord: pub[1:33],
		YCoord: pub[33:65],
	})
	if err != nil {
		tb.Fatal(err)
	}
	return webauthn.Credential{
		ID: a.credID, PublicKey: cose, AttestationType: "none", AttestationFormat: "none",
		Flags: webauthn.CredentialFlags{UserPresent: true, UserVerified: true},
	}
}

// register stores the authenticator's credential for its user, as
// FinishPasskeyRegistration would have.
func (a *softAuthenticator) register(tb testing.TB, st gatehouse.PasskeyStore, now time.Time) {
	tb.Helper()
	raw, err := json.Marshal(a.credential(tb))
	if err != nil {
		tb.Fatal(err)
	}
	err = st.CreatePasskey(context.Background(), gatehouse.Passkey{
		ID: "pk-soft", UserID: a.userID, CredentialID: a.credID, Credential: raw, Name: "software", CreatedAt: now,
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// assert answers challenge (base64url, as in the request options) the way
// navigator.credentials.get() would for a discoverable credential: user
// present and verified, the next sign count, the user handle.
func (a *softAuthenticator) assert(tb testing.TB, challenge string) []byte {
	tb.Helper()
	rpHash := sha256.Sum256([]byte(benchRPID))
	authData := make([]byte, 0, 37)
	authData = append(authData, rpHash[:]...)
	authData = append(authData, byte(protocol.FlagUserPresent|protocol.FlagUserVerified))
	authData = binary.BigEndian.AppendUint32(authData, a.signCount.Add(1))
	clientData, err := json.Marshal(struct {
		Type      string `json:"type"`
		Challenge string `json:"challenge"`
		Origin    string `json:"origin"`
	}{"webauthn.get", challenge, benchOrigin})
	if err != nil {
		tb.Fatal(err)
	}
	clientHash := sha256.Sum256(clientData)
	digest := sha256.Sum256(append(authData[:len(authData):len(authData)], clientHash[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, a.key, digest[:])
	if err != nil {
		tb.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	out, err := json.Marshal(map[string]any{
		"id": b64(a.credID), "rawId": b64(a.credID), "type": "public-key",
		"response": map[string]string{
			"clientDataJSON":    b64(clientData),
			"authenticatorData": b64(authData),
			"signature":         b64(sig),
			"userHandle":        b64([]byte(a.userID)),
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func newBenchWebAuthn(tb testing.TB) *webauthn.WebAuthn {
	tb.Helper()
	wa, err := webauthn.New(&webauthn.Config{RPID: benchRPID, RPDisplayName: "Gatehouse", RPOrigins: []string{benchOrigin}})
	if err != nil {
		tb.Fatal(err)
	}
	return wa
}

// newBenchPasskeyService is newPasskeyService for benchmarks too: the same
// dependencies as newServiceConfig (a real SQLite file, EdDSA access
// tokens, the revoker running) with passkeys on, and one user who signed
// up with a password and holds a software authenticator's passkey.
func newBenchPasskeyService(tb testing.TB) (*auth.Service, *sqlite.Store, *softAuthenticator) {
	tb.Helper()
	ctx := context.Background()
	svc, clk, st := newServiceConfig(tb, func(_ *auth.Config, d *auth.Deps) {
		d.Passkeys, d.WebAuthn = d.Store, newBenchWebAuthn(tb)
	})
	now := clk.Now().UTC()
	g, err := svc.Signup(ctx, auth.SignupInput{Email: "ada@example.com", Password: passphrase}, client)
	if err != nil {
		tb.Fatalf("signup: %v", err)
	}
	a := newSoftAuthenticator(tb, g.User.ID)
	a.register(tb, st, now)
	return svc, st, a
}

// passkeySignIn is one discoverable sign-in: options, the authenticator's
// answer to their challenge, and the finish that starts the session.
func passkeySignIn(tb testing.TB, svc *auth.Service, a *softAuthenticator) (auth.Grant, error) {
	tb.Helper()
	ctx := context.Background()
	opts, challengeID, err := svc.BeginPasskeyLogin(ctx, "")
	if err != nil {
		tb.Fatalf("begin passkey sign-in: %v", err)
	}
	cred := a.assert(tb, opts.Response.Challenge.String())
	return svc.FinishPasskeyLogin(ctx, auth.PasskeyLoginInput{ChallengeID: challengeID, Credential: cred}, client)
}

func TestSoftwareAuthenticatorSignsIn(t *testing.T) {
	svc, st, a := newBenchPasskeyService(t)
	ctx := context.Background()
	var last []byte
	var lastID string
	for i := range 3 {
		opts, challengeID, err := svc.BeginPasskeyLogin(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		last, lastID = a.assert(t, opts.Response.Challenge.String()), challengeID
		g, err := svc.FinishPasskeyLogin(ctx, auth.PasskeyLoginInput{ChallengeID: challengeID, Credential: last}, client)
		if err != nil {
			t.Fatalf("sign-in %d: %v", i+1, err)
		}
		p, err := svc.Authenticate(ctx, g.AccessToken)
		if err != nil {
			t.Fatalf("sign-in %d: access token: %v", i+1, err)
		}
		if p.UserID != a.userID || g.RefreshToken == "" {
			t.Fatalf("sign-in %d: signed in as %q (refresh token %q), want %q", i+1, p.UserID, g.RefreshToken, a.userID)
		}
	}
	// The stored sign count followed the authenticator's.
	pk, err := st.PasskeyByCredentialID(ctx, a.credID)
	if err != nil {
		t.Fatal(err)
	}
	var cred webauthn.Credential
	if err := json.Unmarshal(pk.Credential, &cred); err != nil {
		t.Fatal(err)
	}
	if cred.Authenticator.SignCount != 3 || cred.Authenticator.CloneWarning {
		t.Fatalf("stored sign count %d, clone warning %v; want 3, false", cred.Authenticator.SignCount, cred.Authenticator.CloneWarning)
	}
	// The last assertion again, with its spent challenge or a fresh one: refused.
	if _, err := svc.FinishPasskeyLogin(ctx, auth.PasskeyLoginInput{ChallengeID: lastID, Credential: last}, client); !errors.Is(err, auth.ErrInvalidCredential) {
		t.Fatalf("replayed assertion with its spent challenge: %v, want ErrInvalidCredential", err)
	}
	_, fresh, err := svc.BeginPasskeyLogin(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.FinishPasskeyLogin(ctx, auth.PasskeyLoginInput{ChallengeID: fresh, Credential: last}, client); !errors.Is(err, auth.ErrInvalidCredential) {
		t.Fatalf("replayed assertion with a fresh challenge: %v, want ErrInvalidCredential", err)
	}
}

// BenchmarkPasskeySignIn is a whole discoverable passkey sign-in as the
// service runs it, success asserted every time: BeginPasskeyLogin (a
// ceremony row written), the software authenticator's ECDSA signature
// (client side, included), and FinishPasskeyLogin (the ceremony used once,
// user and passkeys read, go-webauthn's checks and ECDSA verify, the new
// sign count written with a compare-and-swap, a session row written and an
// EdDSA access token signed), on a SQLite file with synchronous=FULL.
func BenchmarkPasskeySignIn(b *testing.B) {
	svc, _, a := newBenchPasskeyService(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := passkeySignIn(b, svc, a); err != nil {
			b.Fatalf("passkey sign-in: %v", err)
		}
	}
}

// BenchmarkPasskeyAssertionVerify is go-webauthn's part alone:
// ValidateDiscoverableLogin on an assertion parsed beforehand, with the
// user handed over from memory (client data, authenticator data and flag
// checks, the COSE key decoded, one ECDSA P-256 verify).
func BenchmarkPasskeyAssertionVerify(b *testing.B) {
	a := newSoftAuthenticator(b, "0193f7a2-5c1e-7b4d-9a3f-2e8c6d1b0a9f")
	wa := newBenchWebAuthn(b)
	user := benchUser{id: a.userID, creds: []webauthn.Credential{a.credential(b)}}
	_, session, err := wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationPreferred))
	if err != nil {
		b.Fatal(err)
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(a.assert(b, session.Challenge))
	if err != nil {
		b.Fatal(err)
	}
	handler := func(_, _ []byte) (webauthn.User, error) { return user, nil }
	b.ReportAllocs()
	for b.Loop() {
		cred, err := wa.ValidateDiscoverableLogin(handler, *session, parsed)
		if err != nil {
			b.Fatalf("validate: %v", err)
		}
		if cred.Authenticator.CloneWarning || cred.Authenticator.SignCount != 1 {
			b.Fatalf("sign count %d, clone warning %v", cred.Authenticator.SignCount, cred.Authenticator.CloneWarning)
		}
	}
}

// BenchmarkECDSAP256Verify is the raw primitive under a passkey assertion:
// crypto/ecdsa.VerifyASN1 of one P-256 signature over a SHA-256 digest.
func BenchmarkECDSAP256Verify(b *testing.B) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("authenticatorData || SHA-256(clientDataJSON)"))
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		b.Fatal(err)
	}
	pub := &key.PublicKey
	b.ReportAllocs()
	for b.Loop() {
		if !ecdsa.VerifyASN1(pub, digest[:], sig) {
			b.Fatal("signature refused")
		}
	}
}

// BenchmarkECDSAP256Sign is the software authenticator's own cost, which
// BenchmarkPasskeySignIn includes.
func BenchmarkECDSAP256Sign(b *testing.B) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("authenticatorData || SHA-256(clientDataJSON)"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ecdsa.SignASN1(rand.Reader, key, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
}

type benchUser struct {
	id    string
	creds []webauthn.Credential
}

func (u benchUser) WebAuthnID() []byte                         { return []byte(u.id) }
func (u benchUser) WebAuthnName() string                       { return "ada@example.com" }
func (u benchUser) WebAuthnDisplayName() string                { return "Ada" }
func (u benchUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }
