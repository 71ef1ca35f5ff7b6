package idp

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"github.com/gatehouse/gatehouse/sealbox"
)

// FlowTTL is how long a redirect to a provider may take to come back.
const FlowTTL = 10 * time.Minute

// maxFlowCookie bounds the cookie value Open reads.
const maxFlowCookie = 4096

// ErrFlow means a flow cookie is missing, forged, of another key, or old.
var ErrFlow = errors.New("idp: no valid flow cookie")

// Flow is what a browser carries between the authorize redirect and the
// callback, in a __Host- HttpOnly cookie sealed under a key derived from
// the master secret: nobody can read it (the PKCE verifier and nonce stay
// secret) or forge it, and it is bound to the browser that began the
// flow, since the callback's state must be the one inside it. Every
// instance holds the key, so any instance can take the callback.
type Flow struct {
	Provider   string `json:"p"`
	State      string `json:"s"` // the one-time secret the provider echoes
	Nonce      string `json:"n"`
	Verifier   string `json:"v"` // PKCE code verifier
	RedirectTo string `json:"r"` // validated at authorize
	Transport  string `json:"t"` // cookie or body
	LinkUser   string `json:"l,omitempty"`
	Expires    int64  `json:"e"` // unix seconds
}

// NewFlow returns a flow with a fresh nonce and verifier (256 random bits
// each), expiring FlowTTL after now.
func NewFlow(provider, state, redirectTo, transport, linkUser string, now time.Time) Flow {
	return Flow{
		Provider: provider, State: state, Nonce: random32(), Verifier: random32(),
		RedirectTo: redirectTo, Transport: transport, LinkUser: linkUser,
		Expires: now.Add(FlowTTL).Unix(),
	}
}

func random32() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

var flowAAD = []byte("gatehouse idp flow v1")

// Seal returns the cookie value of f.
func (f Flow) Seal(box *sealbox.Box) string {
	data, _ := json.Marshal(f) // strings and an int: never fails
	return base64.RawURLEncoding.EncodeToString(box.Seal(flowAAD, data))
}

// OpenFlow reads a cookie value sealed by Seal, refusing it once expired.
func OpenFlow(box *sealbox.Box, value string, now time.Time) (Flow, error) {
	if value == "" || len(value) > maxFlowCookie {
		return Flow{}, ErrFlow
	}
	sealed, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil {
		return Flow{}, ErrFlow
	}
	data, err := box.Open(flowAAD, sealed)
	if err != nil {
		return Flow{}, ErrFlow
	}
	var f Flow
	if err := json.Unmarshal(data, &f); err != nil || now.Unix() >= f.Expires {
		return Flow{}, ErrFlow
	}
	return f, nil
}

// Digest is a short fingerprint of a value for logs (never the value).
func Digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:6])
}
