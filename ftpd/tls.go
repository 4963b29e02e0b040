package ftpd

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
)

// certHolder holds the current TLS certificate and re-reads it when the files change
// (cert-manager renewals, Secret updates). Handshakes take the certificate through
// tls.Config.GetCertificate, so a new certificate is used from the next handshake on while
// established connections keep theirs.
type certHolder struct {
	certFile, keyFile string

	cert atomic.Pointer[tls.Certificate]

	mu  sync.Mutex // serializes reloads
	sum [sha256.Size]byte
	// certDigest is fileconfig.ContentDigest of the certificate file in force, for the ops
	// endpoint: the operator compares it with the Secret's tls.crt.
	certDigest atomic.Pointer[string]
}

// newCertHolder loads the certificate; a missing or broken one is an error at start.
func newCertHolder(certFile, keyFile string) (*certHolder, error) {
	h := &certHolder{certFile: certFile, keyFile: keyFile}
	if _, err := h.reload(); err != nil {
		return nil, err
	}
	return h, nil
}

// reload re-reads the files and swaps the certificate when their content changed. It reports
// whether a new certificate was installed; on error the previous certificate stays.
func (h *certHolder) reload() (changed bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	certPEM, err := os.ReadFile(h.certFile)
	if err != nil {
		return false, fmt.Errorf("read TLS certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(h.keyFile)
	if err != nil {
		return false, fmt.Errorf("read TLS key: %w", err)
	}
	sum := contentSum(certPEM, keyPEM)
	if sum == h.sum && h.cert.Load() != nil {
		return false, nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// Remember the broken content so it is reported once, not at every check.
		h.sum = sum
		return false, fmt.Errorf("load TLS certificate %s and key %s: %w", h.certFile, h.keyFile, err)
	}
	if cert.Leaf == nil && len(cert.Certificate) > 0 {
		cert.Leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	h.sum = sum
	h.cert.Store(&cert)
	digest := fileconfig.ContentDigest(certPEM)
	h.certDigest.Store(&digest)
	return true, nil
}

// servedDigest is the digest of the certificate in force ("" for a nil holder: no TLS).
func (h *certHolder) servedDigest() string {
	if h == nil {
		return ""
	}
	if d := h.certDigest.Load(); d != nil {
		return *d
	}
	return ""
}

func (h *certHolder) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := h.cert.Load()
	if c == nil {
		return nil, errors.New("no TLS certificate loaded")
	}
	return c, nil
}

// notAfter is the expiry of the current certificate as Unix seconds (a metric).
func (h *certHolder) notAfter() float64 {
	if h == nil {
		return 0
	}
	if c := h.cert.Load(); c != nil && c.Leaf != nil {
		return float64(c.Leaf.NotAfter.Unix())
	}
	return 0
}

// newTLSConfig is the one tls.Config of the server, shared by control and data connections so
// that data connections can resume the control connection's TLS session (several FTPS clients
// require it).
func newTLSConfig(cfg TLSConfig, certs *certHolder) *tls.Config {
	return &tls.Config{
		MinVersion:     cfg.MinVersion,
		GetCertificate: certs.getCertificate,
	}
}
