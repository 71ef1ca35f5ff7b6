package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOAuthMTLS: RFC 8705 on a server started with --tls-cert, --tls-key
// and --tls-client-ca, with certificates made here: a client registered
// with --tls-client-auth authenticates by its certificate alone and gets
// access tokens bound to it (cnf.x5t#S256); another certificate, one of
// the same subject from an untrusted CA, and none at all are refused; and
// introspection holds the binding against the caller's certificate.
func TestOAuthMTLS(t *testing.T) {
	t.Parallel()
	pki := newMTLSPKI(t)
	s := startTLSServer(t, pki)
	env := &oauthEnv{backend: "sqlite", a: s, db: "sqlite:" + s.dbPath}
	env.issuer = oauthIssuer(t, s)
	svc := env.createClient(t, "Billing Service", "--grant", "client_credentials", "--scope", "billing:write",
		"--tls-client-auth", pki.good.subject)
	inspector := env.webClient(t, "Resource Server")

	good := pki.client(t, s, pki.good)
	intruder := pki.client(t, s, pki.other)
	noCert := pki.client(t, s, nil)

	ccForm := func() url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {svc.id}}
	}

	t.Run("Discovery", func(t *testing.T) {
		r := s.do(t, "GET", "/.well-known/openid-configuration", nil)
		if !expect(t, r, http.StatusOK, "") {
			return
		}
		m := r.JSON()
		if m["tls_client_certificate_bound_access_tokens"] != true {
			t.Errorf("%s: tls_client_certificate_bound_access_tokens %v, want true", r.req, m["tls_client_certificate_bound_access_tokens"])
		}
		if !strings.Contains(strings.Join(strs(m["token_endpoint_auth_methods_supported"]), " "), "tls_client_auth") {
			t.Errorf("%s: token_endpoint_auth_methods_supported %v lacks tls_client_auth", r.req, m["token_endpoint_auth_methods_supported"])
		}
		if !strings.HasPrefix(env.issuer, "https://") {
			t.Errorf("issuer %q of a TLS server", env.issuer)
		}
	})

	t.Run("BoundToken", func(t *testing.T) {
		r := oauthSend(t, good, s.base, "POST", "/oauth2/token", ccForm())
		if !expect(t, r, http.StatusOK, "") {
			t.FailNow()
		}
		at, _ := r.JSON()["access_token"].(string)
		c := oauthJWT(t, "bound token", at)
		cnf, _ := c["cnf"].(map[string]any)
		if got := cnf["x5t#S256"]; got != pki.good.thumbprint {
			t.Errorf("cnf = %v, want x5t#S256 %s (base64url SHA-256 of the certificate)", c["cnf"], pki.good.thumbprint)
		}
		if c["sub"] != svc.id || c["client_id"] != svc.id || c["scope"] != "billing:write" {
			t.Errorf("bound token = %v, want sub = client_id = %s, scope billing:write", c, svc.id)
		}
		if _, ok := r.JSON()["refresh_token"]; ok {
			t.Errorf("%s: a refresh token for client_credentials", r)
		}

		// Introspection holds the binding against the caller's certificate.
		introspect := func(hc *http.Client) map[string]any {
			t.Helper()
			r := oauthSend(t, hc, s.base, "POST", "/oauth2/introspect", url.Values{"token": {at}}, basic(inspector.id, inspector.secret))
			if !expect(t, r, http.StatusOK, "") {
				t.FailNow()
			}
			return r.JSON()
		}
		if in := introspect(noCert); in["active"] != false || len(in) != 1 {
			t.Errorf("introspection of the bound token without its certificate = %v, want {active:false}", in)
		}
		if in := introspect(intruder); in["active"] != false {
			t.Errorf("introspection of the bound token with another certificate = %v, want {active:false}", in)
		}
		in := introspect(good)
		if in["active"] != true || in["client_id"] != svc.id {
			t.Errorf("introspection of the bound token with its certificate = %v, want active for %s", in, svc.id)
		}
		if cnf, _ := in["cnf"].(map[string]any); cnf["x5t#S256"] != pki.good.thumbprint {
			t.Errorf("introspection cnf = %v, want x5t#S256 %s", in["cnf"], pki.good.thumbprint)
		}

		// Revoked by the client (authenticated by its certificate).
		expect(t, oauthSend(t, good, s.base, "POST", "/oauth2/revoke", url.Values{"token": {at}, "client_id": {svc.id}}), http.StatusOK, "")
		if in := introspect(good); in["active"] != false {
			t.Errorf("introspection after revocation = %v, want {active:false}", in)
		}
	})

	t.Run("OtherCertificate", func(t *testing.T) {
		expectTokenErr(t, oauthSend(t, intruder, s.base, "POST", "/oauth2/token", ccForm()), "invalid_client")
	})

	t.Run("NoCertificate", func(t *testing.T) {
		expectTokenErr(t, oauthSend(t, noCert, s.base, "POST", "/oauth2/token", ccForm()), "invalid_client")
		// Nor does a secret stand in for it.
		form := ccForm()
		form.Set("client_secret", inspector.secret)
		expectTokenErr(t, oauthSend(t, noCert, s.base, "POST", "/oauth2/token", form), "invalid_client")
	})

	t.Run("SameSubjectUntrustedCA", func(t *testing.T) {
		// The registered subject DN on a certificate of a CA the server
		// does not trust: the handshake fails, or the client is refused.
		rogue := pki.client(t, s, pki.rogue)
		req, err := http.NewRequestWithContext(withTest(t.Context(), t), "POST", s.base+"/oauth2/token", strings.NewReader(ccForm().Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		res, err := rogue.Do(req)
		if err != nil {
			t.Logf("untrusted certificate: refused in the handshake (%v)", err)
			return
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode == http.StatusOK {
			t.Errorf("a certificate of an untrusted CA with the registered subject got a token: %s", body)
		} else {
			t.Logf("untrusted certificate: refused with %d %s", res.StatusCode, body)
		}
	})

	t.Run("SecretClientsStillWork", func(t *testing.T) {
		// The TLS listener serves ordinary clients without a certificate.
		user := s.newUser(t, true)
		l := inspector.login(t, s, user, yes, "openid", "offline_access")
		if _, ok := l.access["cnf"]; ok {
			t.Errorf("a token of a secret client is bound: %v", l.access["cnf"])
		}
		inspector.accessLive(t, s, "an unbound token over TLS", l.tok.AccessToken)
	})
}

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

// mtlsCert is a client certificate and its key.
type mtlsCert struct {
	subject    string // pkix.Name.String() of its subject
	thumbprint string // base64url SHA-256 of the DER
	pair       tls.Certificate
}

// mtlsPKI is a test CA with a server certificate for 127.0.0.1 and client
// certificates: good (the registered subject), other (another subject),
// rogue (good's subject, from a CA the server does not trust).
type mtlsPKI struct {
	dir                     string
	caFile, certFile, keyFF string
	pool                    *x509.CertPool
	good, other, rogue      *mtlsCert
}

func newMTLSPKI(t *testing.T) *mtlsPKI {
	t.Helper()
	p := &mtlsPKI{dir: t.TempDir()}
	caKey, caCert := mtlsCA(t, "Gatehouse E2E CA")
	p.pool = x509.NewCertPool()
	p.pool.AddCert(caCert)
	p.caFile = mtlsWrite(t, p.dir, "ca.pem", "CERTIFICATE", caCert.Raw)

	srvKey := mtlsKey(t)
	srvDER := mtlsSign(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}, caCert, &srvKey.PublicKey, caKey)
	p.certFile = mtlsWrite(t, p.dir, "server.pem", "CERTIFICATE", srvDER)
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	p.keyFF = mtlsWrite(t, p.dir, "server-key.pem", "EC PRIVATE KEY", keyDER)

	goodName := pkix.Name{CommonName: "billing-service", Organization: []string{"Gatehouse E2E"}}
	p.good = mtlsClientCert(t, goodName, caCert, caKey)
	p.other = mtlsClientCert(t, pkix.Name{CommonName: "intruder", Organization: []string{"Gatehouse E2E"}}, caCert, caKey)
	rogueKey, rogueCA := mtlsCA(t, "Rogue CA")
	p.rogue = mtlsClientCert(t, goodName, rogueCA, rogueKey)
	if p.rogue.subject != p.good.subject {
		t.Fatalf("rogue subject %q != %q", p.rogue.subject, p.good.subject)
	}
	return p
}

func mtlsKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mtlsCA(t *testing.T, name string) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	k := mtlsKey(t)
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der := mtlsSign(t, tmpl, tmpl, &k.PublicKey, k)
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return k, c
}

// mtlsSign completes tmpl (serial, validity) and signs it with parent's key.
func mtlsSign(t *testing.T, tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) []byte {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatalf("create certificate %s: %v", tmpl.Subject, err)
	}
	return der
}

func mtlsClientCert(t *testing.T, name pkix.Name, ca *x509.Certificate, caKey *ecdsa.PrivateKey) *mtlsCert {
	t.Helper()
	k := mtlsKey(t)
	der := mtlsSign(t, &x509.Certificate{
		Subject:     name,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}, ca, &k.PublicKey, caKey)
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return &mtlsCert{
		subject:    leaf.Subject.String(),
		thumbprint: base64.RawURLEncoding.EncodeToString(sum[:]),
		pair:       tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k, Leaf: leaf},
	}
}

func mtlsWrite(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// client is an HTTPS client of s trusting the test CA and presenting cert
// (none when nil); its answers are validated like the harness's.
func (p *mtlsPKI) client(t *testing.T, s *server, cert *mtlsCert) *http.Client {
	cfg := &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		// Always present it: Go's client would otherwise send none when
		// the server's list of acceptable CAs does not name its issuer.
		pair := cert.pair
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	tr := &http.Transport{TLSClientConfig: cfg, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport: &validatingTransport{base: tr, owner: t, host: fmt.Sprintf("127.0.0.1:%d", s.port)},
		Timeout:   20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// ---------------------------------------------------------------------------
// A TLS server
// ---------------------------------------------------------------------------

// startTLSServer starts gatehouse serve over TLS with the PKI's server
// certificate and client CA on SQLite. The harness's server type carries
// it, so do, Stop and the log checks apply; its client trusts the CA and
// presents no certificate.
func startTLSServer(t *testing.T, p *mtlsPKI) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{t: t, dir: dir, dbPath: filepath.Join(dir, "gh.db"), stderr: &syncBuffer{}}
	prodTrack(t, s)
	var err error
	for range 4 {
		if err = tryStartTLS(s, p); err == nil {
			return s
		}
	}
	t.Fatalf("starting gatehouse over TLS: %v\nstderr:\n%s", err, s.stderr.String())
	return nil
}

func tryStartTLS(s *server, p *mtlsPKI) error {
	s.port = freePort(s.t)
	s.base = fmt.Sprintf("https://127.0.0.1:%d", s.port)
	args := []string{
		"serve",
		"--addr", fmt.Sprintf("127.0.0.1:%d", s.port),
		"--database", "sqlite:" + s.dbPath,
		"--issuer", s.base,
		"--rate-limit-login", "off",
		"--rate-limit-refresh", "off",
		"--rate-limit-signup", "off",
		"--tls-cert", p.certFile,
		"--tls-key", p.keyFF,
		"--tls-client-ca", p.caFile,
	}
	s.starts++
	fmt.Fprintf(s.stderr, "=== e2e: start #%d: gatehouse %s\n", s.starts, strings.Join(args, " "))
	cmd := exec.Command(binPath, args...)
	cmd.Dir = s.dir
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = s.stderr, s.stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := s.watch(cmd)
	s.tr = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 32, DisableCompression: true}
	s.hc = &http.Client{
		Transport: &validatingTransport{base: s.tr, owner: s.t, host: fmt.Sprintf("127.0.0.1:%d", s.port)},
		Timeout:   30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("gatehouse exited during startup (code %d)", s.exitCode)
		default:
		}
		// Straight through the TLS transport: the validating one would
		// fetch /openapi.json from a server not yet listening.
		req, _ := http.NewRequest("GET", s.base+"/healthz", nil)
		if res, err := s.tr.RoundTrip(req); err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	s.kill()
	return errors.New("GET /healthz over TLS did not answer 200 within 15s")
}
