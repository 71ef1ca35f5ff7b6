package e2e

// A software authenticator for the passkey tests: it answers the creation and
// request options Gatehouse sends with the credential JSON a browser's
// PublicKeyCredential.toJSON() writes, for a platform authenticator that
// attests "none", holds discoverable ES256 (P-256) credentials, always
// verifies its user and increments its signature counter.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// Authenticator data flags (WebAuthn §6.1).
const (
	pkFlagUP = 0x01 // user present
	pkFlagUV = 0x04 // user verified
	pkFlagAT = 0x40 // attested credential data included
)

var b64url = base64.RawURLEncoding

// softCredential is one discoverable credential the authenticator holds.
type softCredential struct {
	id         []byte
	rpID       string
	userHandle []byte
	key        *ecdsa.PrivateKey
	signCount  uint32
}

// softAuthenticator plays the browser and the authenticator at once: origin
// is what the browser writes into clientDataJSON.
type softAuthenticator struct {
	origin string

	mu    sync.Mutex
	creds []*softCredential
}

func newSoftAuthenticator(origin string) *softAuthenticator {
	return &softAuthenticator{origin: origin}
}

// pkOptions is the part of creation or request options the authenticator
// reads; both arrive either bare or wrapped in {"publicKey": ...}.
type pkOptions struct {
	Challenge string `json:"challenge"`
	RP        struct {
		ID string `json:"id"`
	} `json:"rp"`
	RPID string `json:"rpId"`
	User struct {
		ID string `json:"id"`
	} `json:"user"`
	AllowCredentials   []struct{ ID string } `json:"allowCredentials"`
	ExcludeCredentials []struct{ ID string } `json:"excludeCredentials"`
}

func parsePKOptions(t *testing.T, raw []byte) pkOptions {
	t.Helper()
	var wrapped struct {
		PublicKey json.RawMessage `json:"publicKey"`
	}
	if err := json.Unmarshal(raw, &wrapped); err != nil {
		t.Fatalf("passkey options are not JSON: %v\n%s", err, raw)
	}
	if len(wrapped.PublicKey) > 0 {
		raw = wrapped.PublicKey
	}
	var o pkOptions
	if err := json.Unmarshal(raw, &o); err != nil {
		t.Fatalf("passkey options: %v\n%s", err, raw)
	}
	if o.Challenge == "" {
		t.Fatalf("passkey options without a challenge:\n%s", raw)
	}
	if _, err := b64url.DecodeString(o.Challenge); err != nil {
		t.Fatalf("passkey options: challenge %q is not base64url: %v", o.Challenge, err)
	}
	return o
}

// clientData is the clientDataJSON of a ceremony ("webauthn.create" or
// "webauthn.get") for the challenge as the options carry it.
func (a *softAuthenticator) clientData(t *testing.T, typ, challenge string) []byte {
	t.Helper()
	b, err := json.Marshal(struct {
		Type        string `json:"type"`
		Challenge   string `json:"challenge"`
		Origin      string `json:"origin"`
		CrossOrigin bool   `json:"crossOrigin"`
	}{typ, challenge, a.origin, false})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// register creates a credential for creation options (the body of POST
// /auth/passkeys/register/begin) and returns it as toJSON() writes it.
func (a *softAuthenticator) register(t *testing.T, creationOptions []byte) json.RawMessage {
	t.Helper()
	o := parsePKOptions(t, creationOptions)
	if o.RP.ID == "" || o.User.ID == "" {
		t.Fatalf("creation options lack rp.id or user.id:\n%s", creationOptions)
	}
	userHandle, err := b64url.DecodeString(o.User.ID)
	if err != nil {
		t.Fatalf("creation options: user.id %q is not base64url: %v", o.User.ID, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ex := range o.ExcludeCredentials {
		for _, c := range a.creds {
			if ex.ID == b64url.EncodeToString(c.id) && c.rpID == o.RP.ID {
				t.Fatalf("creation options exclude credential %s, which this authenticator holds", ex.ID)
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := &softCredential{id: make([]byte, 32), rpID: o.RP.ID, userHandle: userHandle, key: key}
	if _, err := rand.Read(c.id); err != nil {
		t.Fatal(err)
	}

	cose, err := cbor.Marshal(map[int]any{
		1:  2,  // kty: EC2
		3:  -7, // alg: ES256
		-1: 1,  // crv: P-256
		-2: key.PublicKey.X.FillBytes(make([]byte, 32)),
		-3: key.PublicKey.Y.FillBytes(make([]byte, 32)),
	})
	if err != nil {
		t.Fatal(err)
	}
	rpHash := sha256.Sum256([]byte(c.rpID))
	var authData bytes.Buffer
	authData.Write(rpHash[:])
	authData.WriteByte(pkFlagUP | pkFlagUV | pkFlagAT)
	_ = binary.Write(&authData, binary.BigEndian, c.signCount)
	authData.Write(make([]byte, 16)) // AAGUID: none
	_ = binary.Write(&authData, binary.BigEndian, uint16(len(c.id)))
	authData.Write(c.id)
	authData.Write(cose)

	attObj, err := cbor.Marshal(map[string]any{
		"fmt":      "none",
		"attStmt":  map[string]any{},
		"authData": authData.Bytes(),
	})
	if err != nil {
		t.Fatal(err)
	}
	cdj := a.clientData(t, "webauthn.create", o.Challenge)
	a.creds = append(a.creds, c)

	id := b64url.EncodeToString(c.id)
	return mustJSON(t, map[string]any{
		"id":    id,
		"rawId": id,
		"type":  "public-key",
		"response": map[string]any{
			"clientDataJSON":    b64url.EncodeToString(cdj),
			"attestationObject": b64url.EncodeToString(attObj),
			"transports":        []string{"internal"},
		},
		"authenticatorAttachment": "platform",
		"clientExtensionResults":  map[string]any{},
	})
}

// assert signs request options (the body of POST
// /auth/passkeys/login/begin): with allowCredentials, by one of those; else
// by the credential of the relying party registered last (discoverable).
func (a *softAuthenticator) assert(t *testing.T, requestOptions []byte) json.RawMessage {
	t.Helper()
	o := parsePKOptions(t, requestOptions)
	if o.RPID == "" {
		t.Fatalf("request options lack rpId:\n%s", requestOptions)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var c *softCredential
	for _, cand := range slices.Backward(a.creds) {
		if cand.rpID != o.RPID {
			continue
		}
		if len(o.AllowCredentials) > 0 && !slices.ContainsFunc(o.AllowCredentials, func(d struct{ ID string }) bool {
			return d.ID == b64url.EncodeToString(cand.id)
		}) {
			continue
		}
		c = cand
		break
	}
	if c == nil {
		t.Fatalf("the authenticator holds no credential for these request options:\n%s", requestOptions)
	}
	c.signCount++
	rpHash := sha256.Sum256([]byte(c.rpID))
	var authData bytes.Buffer
	authData.Write(rpHash[:])
	authData.WriteByte(pkFlagUP | pkFlagUV)
	_ = binary.Write(&authData, binary.BigEndian, c.signCount)

	cdj := a.clientData(t, "webauthn.get", o.Challenge)
	cdHash := sha256.Sum256(cdj)
	signed := append(slices.Clone(authData.Bytes()), cdHash[:]...)
	digest := sha256.Sum256(signed)
	sig, err := ecdsa.SignASN1(rand.Reader, c.key, digest[:])
	if err != nil {
		t.Fatal(err)
	}

	id := b64url.EncodeToString(c.id)
	return mustJSON(t, map[string]any{
		"id":    id,
		"rawId": id,
		"type":  "public-key",
		"response": map[string]any{
			"clientDataJSON":    b64url.EncodeToString(cdj),
			"authenticatorData": b64url.EncodeToString(authData.Bytes()),
			"signature":         b64url.EncodeToString(sig),
			"userHandle":        b64url.EncodeToString(c.userHandle),
		},
		"authenticatorAttachment": "platform",
		"clientExtensionResults":  map[string]any{},
	})
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ---------------------------------------------------------------------------
// Ceremonies over HTTP
// ---------------------------------------------------------------------------

// pkRegisterBegin asks s for creation options with access and returns them.
func pkRegisterBegin(t *testing.T, s *server, access string) []byte {
	t.Helper()
	r := s.do(t, "POST", "/auth/passkeys/register/begin", map[string]any{}, bearer(access))
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	return r.Body
}

// pkRegisterFinish sends a credential to s and asserts 201 with the passkey
// object; it returns the passkey's id.
func pkRegisterFinish(t *testing.T, s *server, access string, credential json.RawMessage, name string) string {
	t.Helper()
	r := s.do(t, "POST", "/auth/passkeys/register/finish",
		map[string]any{"credential": credential, "name": name}, bearer(access))
	if !expect(t, r, http.StatusCreated, "") {
		t.FailNow()
	}
	pk, _ := r.JSON()["passkey"].(map[string]any)
	id, _ := pk["id"].(string)
	if id == "" || pk["name"] != name {
		t.Errorf("%s: passkey object %v, want an id and name %q", r, pk, name)
	}
	if ca, _ := pk["created_at"].(string); !isRFC3339UTC(ca) {
		t.Errorf("%s: created_at %v is not an RFC 3339 UTC time", r.req, pk["created_at"])
	}
	if v, ok := pk["last_used_at"]; !ok || v != nil {
		t.Errorf("%s: a new passkey's last_used_at = %v (present %v), want null", r.req, v, ok)
	}
	return id
}

// pkList is GET /auth/passkeys: the passkeys' ids.
func pkList(t *testing.T, s *server, access string) []string {
	t.Helper()
	r := s.do(t, "GET", "/auth/passkeys", nil, bearer(access))
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	list, ok := r.JSON()["passkeys"].([]any)
	if !ok {
		t.Fatalf("%s: no passkeys array", r)
	}
	var ids []string
	for _, v := range list {
		m, _ := v.(map[string]any)
		id, _ := m["id"].(string)
		ids = append(ids, id)
	}
	return ids
}

// pkLoginBegin starts a passkey sign-in on s (mfaToken may be "") and
// returns the request options and the challenge_id.
func pkLoginBegin(t *testing.T, s *server, mfaToken string) (options []byte, challengeID string) {
	t.Helper()
	body := map[string]any{}
	if mfaToken != "" {
		body["mfa_token"] = mfaToken
	}
	r := s.do(t, "POST", "/auth/passkeys/login/begin", body)
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	if cc := r.Header.Get("Cache-Control"); !bytes.Contains([]byte(cc), []byte("no-store")) {
		t.Errorf("%s: Cache-Control %q, want no-store", r.req, cc)
	}
	challengeID, _ = r.JSON()["challenge_id"].(string)
	if challengeID == "" {
		t.Fatalf("%s: no challenge_id", r)
	}
	return r.Body, challengeID
}

// pkLoginFinish sends an assertion to s in body transport.
func pkLoginFinish(t *testing.T, s *server, challengeID string, credential json.RawMessage, mfaToken string) *resp {
	t.Helper()
	body := map[string]any{"challenge_id": challengeID, "credential": credential, "token_transport": "body"}
	if mfaToken != "" {
		body["mfa_token"] = mfaToken
	}
	return s.do(t, "POST", "/auth/passkeys/login/finish", body)
}

// pkSignedIn asserts a body-mode token response whose access token works,
// names wantUser and has amr exactly wantAMR (or, with nil, at least hwk).
func pkSignedIn(t *testing.T, s *server, r *resp, wantUser string, wantAMR []string) string {
	t.Helper()
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	checkTokenResponse(t, r, true)
	var tr tokenResp
	if err := json.Unmarshal(r.Body, &tr); err != nil {
		t.Fatalf("%s: %v", r, err)
	}
	if tr.User.ID != wantUser {
		t.Errorf("%s: signed in user %q, want %q", r.req, tr.User.ID, wantUser)
	}
	amr := mailAMR(t, tr.AccessToken)
	if wantAMR != nil && !slices.Equal(amr, wantAMR) {
		t.Errorf("%s: amr %v, want %v", r.req, amr, wantAMR)
	}
	if !slices.Contains(amr, "hwk") {
		t.Errorf("%s: amr %v lacks hwk", r.req, amr)
	}
	if me := s.meWith(t, tr.AccessToken); !expect(t, me, http.StatusOK, "") {
		t.Errorf("the passkey session's access token is refused")
	}
	return tr.AccessToken
}

// TestPasskeyAuthenticator checks the software authenticator against one
// instance: a passkey registered with it signs in with no email.
func TestPasskeyAuthenticator(t *testing.T) {
	t.Parallel()
	origin := fmt.Sprintf("http://localhost:%d", freePort(t))
	s := startServer(t, "--public-url", origin)
	d := s.newUser(t, true)
	auth := newSoftAuthenticator(origin)

	id := pkRegisterFinish(t, s, d.Access(), auth.register(t, pkRegisterBegin(t, s, d.Access())), "Laptop")
	if ids := pkList(t, s, d.Access()); !slices.Equal(ids, []string{id}) {
		t.Errorf("GET /auth/passkeys: %v, want [%s]", ids, id)
	}
	if _, n := mfaState(t, s, d.Access()); n != 1 {
		t.Errorf("/auth/me mfa.passkeys = %v, want 1", n)
	}

	opts, cid := pkLoginBegin(t, s, "")
	pkSignedIn(t, s, pkLoginFinish(t, s, cid, auth.assert(t, opts), ""), d.user.ID, []string{"hwk", "mfa"})

	// A second sign-in (counter 2) works too, and the passkey was used.
	opts, cid = pkLoginBegin(t, s, "")
	pkSignedIn(t, s, pkLoginFinish(t, s, cid, auth.assert(t, opts), ""), d.user.ID, nil)
	r := s.do(t, "GET", "/auth/passkeys", nil, bearer(d.Access()))
	list, _ := r.JSON()["passkeys"].([]any)
	if len(list) != 1 {
		t.Fatalf("%s: want one passkey", r)
	}
	if lu, _ := list[0].(map[string]any)["last_used_at"].(string); !isRFC3339UTC(lu) {
		t.Errorf("%s: last_used_at should be set after a sign-in", r)
	}

	// The server does check what the authenticator writes: the same key
	// used from another origin, or a signature changed by one bit, is
	// refused.
	elsewhere := &softAuthenticator{origin: "http://localhost:1", creds: auth.creds}
	opts, cid = pkLoginBegin(t, s, "")
	expect(t, pkLoginFinish(t, s, cid, elsewhere.assert(t, opts), ""), http.StatusUnauthorized, "invalid_credential")
	opts, cid = pkLoginBegin(t, s, "")
	var forged map[string]any
	if err := json.Unmarshal(auth.assert(t, opts), &forged); err != nil {
		t.Fatal(err)
	}
	response := forged["response"].(map[string]any)
	sig, _ := b64url.DecodeString(response["signature"].(string))
	sig[len(sig)-1] ^= 1
	response["signature"] = b64url.EncodeToString(sig)
	expect(t, pkLoginFinish(t, s, cid, mustJSON(t, forged), ""), http.StatusUnauthorized, "invalid_credential")

	// And the untouched authenticator still signs in afterwards.
	opts, cid = pkLoginBegin(t, s, "")
	pkSignedIn(t, s, pkLoginFinish(t, s, cid, auth.assert(t, opts), ""), d.user.ID, nil)
}
