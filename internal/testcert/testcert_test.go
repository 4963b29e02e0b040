package testcert

import (
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"testing"
	"time"
)

// TestNew: the PEM pair loads as a TLS key pair, carries the names, serial and lifetime asked
// for, verifies against its own pool, and is a CA exactly when SelfCA is set.
func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{name: "self CA for loopback", opts: Options{CommonName: "ftpd test", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Serial: big.NewInt(7), ValidFor: time.Hour, SelfCA: true}},
		{name: "plain server certificate", opts: Options{CommonName: "e2e", DNSNames: []string{"ftp.example.com"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM); err != nil {
				t.Fatalf("PEM pair does not load: %v", err)
			}
			if c.Cert.Subject.CommonName != tc.opts.CommonName || (tc.opts.Serial != nil && c.Cert.SerialNumber.Cmp(tc.opts.Serial) != 0) {
				t.Errorf("subject %q serial %v", c.Cert.Subject.CommonName, c.Cert.SerialNumber)
			}
			want := 24 * time.Hour
			if tc.opts.ValidFor != 0 {
				want = tc.opts.ValidFor
			}
			if left := time.Until(c.Cert.NotAfter); left > want || left < want-time.Minute {
				t.Errorf("valid for %s more, want %s", left, want)
			}
			name := tc.opts.DNSNames[0]
			if _, err := c.Cert.Verify(x509.VerifyOptions{DNSName: name, Roots: c.Pool()}); err != nil {
				t.Errorf("verify against its own pool: %v", err)
			}
			if c.Cert.IsCA != tc.opts.SelfCA || (c.Cert.KeyUsage&x509.KeyUsageCertSign != 0) != tc.opts.SelfCA {
				t.Errorf("CA %v, cert sign %v; want both %v", c.Cert.IsCA, c.Cert.KeyUsage&x509.KeyUsageCertSign != 0, tc.opts.SelfCA)
			}
		})
	}
}
