package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// TLS on the public listener (--tls-cert, --tls-key, --tls-client-ca).
// Gatehouse usually sits behind a reverse proxy that ends TLS; serving TLS
// itself is what lets it see client certificates for RFC 8705 (mTLS client
// authentication and certificate-bound tokens). The metrics listener stays
// plain: it is meant for the operator's network only.

// validateTLS checks that the TLS flags go together; the files are read by
// tlsConfig.
func (c *config) validateTLS() error {
	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		return errors.New("--tls-cert needs --tls-key (the certificate's private key)")
	case c.TLSKey != "" && c.TLSCert == "":
		return errors.New("--tls-key needs --tls-cert")
	case c.TLSClientCA != "" && c.TLSCert == "":
		return errors.New("--tls-client-ca needs --tls-cert and --tls-key: client certificates come only over TLS")
	}
	return nil
}

// tlsConfig is the TLS configuration of the public listener, or nil when
// it serves plain HTTP. Client certificates are asked for only with a
// client CA, and even then not required: browsers and most clients have
// none, and a client that authenticates by certificate is refused at the
// token endpoint, not at the handshake. One that is given must chain to
// the client CA, or the handshake fails.
func tlsConfig(c *config) (*tls.Config, error) {
	if c.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s / --tls-key %s: %w", c.TLSCert, c.TLSKey, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if c.TLSClientCA != "" {
		pool, err := loadCertPool(c.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca %s: %w", c.TLSClientCA, err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// loadCertPool reads PEM certificates strictly: x509.CertPool's
// AppendCertsFromPEM skips what it cannot parse, and a CA file that
// silently trusts nothing (or less than meant) is a mistake to stop for.
func loadCertPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("holds a PEM %q block; only CERTIFICATE blocks belong in it", block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, errors.New("no PEM certificate in it")
	}
	return pool, nil
}
