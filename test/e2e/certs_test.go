package e2e

import (
	"encoding/base64"
	"fmt"
	"testing"

	"github.com/kubeftp/ftp-operator/internal/testcert"
)

// testCert is a self-signed certificate as cert-manager would store it in a kubernetes.io/tls
// Secret, with its serial to tell rotations apart.
type testCert struct {
	*testcert.Cert
	serial string
}

func newCert(t *testing.T, name string) testCert {
	t.Helper()
	c, err := testcert.New(testcert.Options{CommonName: "ftp-e2e-" + name, DNSNames: []string{"ftp.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	return testCert{Cert: c, serial: c.Cert.SerialNumber.String()}
}

func tlsSecretManifest(name string, c testCert) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: %s}
type: kubernetes.io/tls
data:
  tls.crt: %s
  tls.key: %s
`, name, base64.StdEncoding.EncodeToString(c.CertPEM), base64.StdEncoding.EncodeToString(c.KeyPEM))
}
