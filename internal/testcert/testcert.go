// Package testcert makes the self-signed server certificates of the tests: the FTPS tests of
// ftpd and the kubernetes.io/tls Secrets of the end-to-end tests, in the PEM form cert-manager
// stores. (The real node's cluster PKI, a CA that issues the control plane's serving and client
// certificates, is a different thing and lives in test/realnode.)
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Options describe the certificate; the zero value is a valid one for no name in particular.
type Options struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	// Serial is the serial number; nil picks a random one (tests of a rotation tell
	// certificates apart by it).
	Serial *big.Int
	// ValidFor is how long from now it is valid (it is valid from an hour ago, against clock
	// skew); zero means 24 hours.
	ValidFor time.Duration
	// SelfCA makes it also a CA certificate (basic constraints CA:TRUE, may sign certificates),
	// for clients given it as their CA file to check the server for real (curl, lftp).
	SelfCA bool
}

// Cert is a certificate and its private key.
type Cert struct {
	// CertPEM and KeyPEM are what tls.crt and tls.key of a kubernetes.io/tls Secret hold.
	CertPEM, KeyPEM []byte
	Cert            *x509.Certificate
}

// New makes a self-signed ECDSA P-256 server certificate.
func New(o Options) (*Cert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testcert: generate key: %w", err)
	}
	serial := o.Serial
	if serial == nil {
		if serial, err = rand.Int(rand.Reader, big.NewInt(1<<62)); err != nil {
			return nil, fmt.Errorf("testcert: serial: %w", err)
		}
	}
	validFor := o.ValidFor
	if validFor == 0 {
		validFor = 24 * time.Hour
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: o.CommonName},
		DNSNames:     o.DNSNames,
		IPAddresses:  o.IPs,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(validFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if o.SelfCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("testcert: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testcert: parse certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("testcert: encode key: %w", err)
	}
	return &Cert{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		Cert:    cert,
	}, nil
}

// Pool is a certificate pool of just this certificate, for a Go client's RootCAs.
func (c *Cert) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.Cert)
	return p
}
