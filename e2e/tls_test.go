package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TLS serving (--tls-cert, --tls-key, --tls-client-ca): the public listener
// speaks HTTPS; with a client CA, a client certificate is optional, but one
// that is given must chain to that CA.

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// randomSerial is a certificate serial number; random, as RFC 5280
// advises, so certificates of one CA never share one.
func randomSerial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Gatehouse tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue signs a leaf certificate: a server certificate for 127.0.0.1, or a
// client certificate with subject cn.
func (ca *testCA) issue(t *testing.T, cn string, server bool) (tls.Certificate, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(t),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Gatehouse tests"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair, certPEM, keyPEM
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tlsServer starts gatehouse serve with args and waits until /healthz
// answers over HTTPS (trusting roots); it is stopped with SIGTERM at the
// end of the test and must exit 0.
func tlsServer(t *testing.T, roots *x509.CertPool, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	all := append([]string{"serve", "--addr", fmt.Sprintf("127.0.0.1:%d", port),
		"--database", "sqlite:" + filepath.Join(dir, "gh.db")}, args...)
	cmd := exec.Command(binPath, all...)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("gatehouse exited with %v on SIGTERM", err)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("gatehouse did not exit within 15s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("server output:\n%s", logs.String())
		}
	})
	hc := httpsClient(roots, nil)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			t.Fatalf("gatehouse exited during startup: %v\n%s", err, logs.String())
		default:
		}
		if r, err := hc.Get(base + "/healthz"); err == nil {
			io.Copy(io.Discard, r.Body)
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return base
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("GET %s/healthz did not answer 200 within 15s\n%s", base, logs.String())
	return ""
}

// clientTLS trusts roots and presents cert when it is not nil, whatever
// CAs the server names as acceptable: from Certificates, Go's client would
// send only a certificate of one of those, and a test of a foreign
// certificate would then test no certificate at all.
func clientTLS(roots *x509.CertPool, cert *tls.Certificate) *tls.Config {
	cfg := &tls.Config{RootCAs: roots}
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return cfg
}

// httpsClient is an HTTP client with clientTLS; each client has its own
// connections, so every request of a new client makes a new handshake.
func httpsClient(roots *x509.CertPool, cert *tls.Certificate) *http.Client {
	cfg := clientTLS(roots, cert)
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true},
	}
}

func TestTLSClientCertificates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newTestCA(t, "Gatehouse test CA")
	other := newTestCA(t, "Some other CA")
	_, serverCert, serverKey := ca.issue(t, "gatehouse", true)
	good, _, _ := ca.issue(t, "batch-job", false)
	stranger, _, _ := other.issue(t, "batch-job", false)
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)

	base := tlsServer(t, roots,
		"--tls-cert", writeFile(t, dir, "server.pem", serverCert),
		"--tls-key", writeFile(t, dir, "server.key", serverKey),
		"--tls-client-ca", writeFile(t, dir, "clients.pem", ca.pem))

	get := func(hc *http.Client, path string) (*http.Response, []byte, error) {
		r, err := hc.Get(base + path)
		if err != nil {
			return nil, nil, err
		}
		defer r.Body.Close()
		body, err := io.ReadAll(r.Body)
		return r, body, err
	}

	// No client certificate: fine (they are asked for, not required).
	r, _, err := get(httpsClient(roots, nil), "/healthz")
	if err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("HTTPS without a client certificate: %v %v", r, err)
	}
	if r.TLS == nil || r.TLS.Version < tls.VersionTLS12 {
		t.Errorf("connection state %+v", r.TLS)
	}
	// The issuer defaults to https:// when serving TLS.
	r, body, err := get(httpsClient(roots, nil), "/.well-known/openid-configuration")
	if err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("discovery over HTTPS: %v %v", r, err)
	}
	var disc struct {
		Issuer     string   `json:"issuer"`
		AuthMethod []string `json:"token_endpoint_auth_methods_supported"`
		CertBound  bool     `json:"tls_client_certificate_bound_access_tokens"`
	}
	if err := json.Unmarshal(body, &disc); err != nil || disc.Issuer != base {
		t.Errorf("issuer %q (%v), want %q", disc.Issuer, err, base)
	}
	// With a client CA, the provider offers certificate authentication.
	if !disc.CertBound || !slices.Contains(disc.AuthMethod, "tls_client_auth") {
		t.Errorf("discovery with --tls-client-ca: %s", body)
	}

	// A certificate of the client CA: fine.
	r, _, err = get(httpsClient(roots, &good), "/healthz")
	if err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("HTTPS with a certificate of the client CA: %v %v", r, err)
	}

	// A certificate of another CA fails the handshake: no answer at all.
	r, _, err = get(httpsClient(roots, &stranger), "/healthz")
	if err == nil {
		t.Fatalf("a client certificate of another CA was accepted: %d", r.StatusCode)
	}
	if !strings.Contains(err.Error(), "tls") && !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client certificate of another CA: %v, want a TLS alert", err)
	}
	// The same at the TLS layer alone, where the alert is unambiguous.
	conn, err := tls.Dial("tcp", strings.TrimPrefix(base, "https://"), clientTLS(roots, &stranger))
	if err == nil {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		// TLS 1.3 reports the server's verdict on the client certificate
		// at the first read.
		fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("handshake with a certificate of another CA: %v, want a certificate alert", err)
	}

	// Versions below TLS 1.2 are refused.
	_, err = tls.Dial("tcp", strings.TrimPrefix(base, "https://"), &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS11})
	if err == nil {
		t.Error("a TLS 1.1 handshake succeeded")
	}
	// Plain HTTP on the HTTPS port gets no API answer.
	hr, err := (&http.Client{Timeout: 5 * time.Second}).Get(strings.Replace(base, "https://", "http://", 1) + "/healthz")
	if err == nil {
		hr.Body.Close()
		if hr.StatusCode == http.StatusOK {
			t.Error("plain HTTP was served on the TLS listener")
		}
	}
}

// TestTLSWithoutClientCA: with only a certificate and key, HTTPS works and
// a client certificate of any CA is neither asked for nor checked.
func TestTLSWithoutClientCA(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newTestCA(t, "Gatehouse test CA")
	_, serverCert, serverKey := ca.issue(t, "gatehouse", true)
	stranger, _, _ := newTestCA(t, "Some other CA").issue(t, "anyone", false)
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	base := tlsServer(t, roots,
		"--tls-cert", writeFile(t, dir, "server.pem", serverCert),
		"--tls-key", writeFile(t, dir, "server.key", serverKey))
	r, err := httpsClient(roots, &stranger).Get(base + "/healthz")
	if err != nil {
		t.Fatalf("HTTPS without --tls-client-ca: %v", err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Errorf("status %d", r.StatusCode)
	}
	// Without a client CA no certificate is verified, so none is offered.
	r, err = httpsClient(roots, nil).Get(base + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if strings.Contains(string(body), "tls_client_auth") || strings.Contains(string(body), "tls_client_certificate_bound_access_tokens") {
		t.Errorf("discovery without --tls-client-ca offers certificates: %s", body)
	}
}

// TestTLSBadConfiguration: each mistake stops the start with one line
// naming the flag.
func TestTLSBadConfiguration(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newTestCA(t, "Gatehouse test CA")
	_, serverCert, serverKey := ca.issue(t, "gatehouse", true)
	_, _, otherKey := ca.issue(t, "gatehouse", true)
	cert := writeFile(t, dir, "server.pem", serverCert)
	key := writeFile(t, dir, "server.key", serverKey)
	junk := writeFile(t, dir, "junk.pem", []byte("not a certificate\n"))
	keyAsCA := writeFile(t, dir, "key-as-ca.pem", append(append([]byte{}, ca.pem...), serverKey...))
	badDER := writeFile(t, dir, "bad-der.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("garbage")}))
	caFile := writeFile(t, dir, "ca.pem", ca.pem)
	missing := filepath.Join(dir, "missing.pem")
	for _, c := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"cert without key", nil, []string{"--tls-cert", cert}, "--tls-cert needs --tls-key"},
		{"key without cert", nil, []string{"--tls-key", key}, "--tls-key needs --tls-cert"},
		{"client ca without cert", nil, []string{"--tls-client-ca", caFile}, "--tls-client-ca needs --tls-cert"},
		{"env cert without key", []string{"GATEHOUSE_TLS_CERT=" + cert}, nil, "--tls-cert needs --tls-key"},
		{"unreadable cert", nil, []string{"--tls-cert", missing, "--tls-key", key}, "--tls-cert"},
		{"cert not PEM", nil, []string{"--tls-cert", junk, "--tls-key", key}, "--tls-cert"},
		{"key of another cert", nil, []string{"--tls-cert", cert, "--tls-key", writeFile(t, dir, "other.key", otherKey)}, "--tls-cert"},
		{"unreadable client ca", nil, []string{"--tls-cert", cert, "--tls-key", key, "--tls-client-ca", missing}, "--tls-client-ca"},
		{"client ca not PEM", nil, []string{"--tls-cert", cert, "--tls-key", key, "--tls-client-ca", junk}, "--tls-client-ca"},
		{"client ca with a key", nil, []string{"--tls-cert", cert, "--tls-key", key, "--tls-client-ca", keyAsCA}, "--tls-client-ca"},
		{"client ca bad certificate", nil, []string{"--tls-cert", cert, "--tls-key", key, "--tls-client-ca", badDER}, "--tls-client-ca"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"serve", "--addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
				"--database", "sqlite:" + filepath.Join(t.TempDir(), "gh.db")}, c.args...)
			res := runBounded(t, 10*time.Second, c.env, args...)
			if res.code == 0 || res.code == -2 {
				t.Fatalf("gatehouse %s: exit %d, want a start error", strings.Join(c.args, " "), res.code)
			}
			line := strings.TrimSuffix(res.stderr, "\n")
			if strings.Contains(line, "\n") || !strings.Contains(line, c.want) {
				t.Errorf("stderr %q: want one line mentioning %q", res.stderr, c.want)
			}
		})
	}
}
