package verifier

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// TestMiddlewareHoldsBoundTokensToTheirCertificate: a token with cnf
// x5t#S256 passes only on a connection presenting that certificate.
func TestMiddlewareHoldsBoundTokensToTheirCertificate(t *testing.T) {
	g := newFakeGatehouse(t)
	key := g.addKey(jose.EdDSA)
	v := g.verifier(t, nil)
	certDER := []byte("a certificate's DER, as far as the thumbprint goes")
	sum := sha256.Sum256(certDER)
	claims := g.claims("machine", "")
	delete(claims, "sid")
	claims["client_id"] = "machine"
	claims["cnf"] = map[string]string{"x5t#S256": base64.RawURLEncoding.EncodeToString(sum[:])}
	tok := sign(t, key, claims, "at+jwt")
	h := v.Middleware(Require{})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	serve := func(state *tls.ConnectionState) int {
		r := httptest.NewRequest("GET", "/x", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		r.TLS = state
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	with := func(der []byte) *tls.ConnectionState {
		c := &x509.Certificate{Raw: der}
		return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}, VerifiedChains: [][]*x509.Certificate{{c}}}
	}
	if got := serve(nil); got != http.StatusUnauthorized {
		t.Errorf("no TLS: %d", got)
	}
	if got := serve(with([]byte("another certificate"))); got != http.StatusUnauthorized {
		t.Errorf("another certificate: %d", got)
	}
	if got := serve(with(certDER)); got != http.StatusOK {
		t.Errorf("its certificate: %d", got)
	}
}
