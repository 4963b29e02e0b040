package ftpd

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
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

// newTLSConfig is the template of every TLS handshake of the server: minimum version and the
// reloadable certificate. Control connections use a per-session copy of it (sessionTLSFor); it
// is used as is only to answer a refused implicit-TLS connection.
func newTLSConfig(cfg TLSConfig, certs *certHolder) *tls.Config {
	return &tls.Config{
		MinVersion:     cfg.MinVersion,
		GetCertificate: certs.getCertificate,
	}
}

// TLS session reuse between a control connection and its data connections.
//
// A data connection that resumes the TLS session of its control connection proves that it
// comes from the client that logged in on that control connection (it holds that session's
// secret), which the IP check alone cannot prove behind a shared NAT address. vsftpd
// (require_ssl_reuse) and proftpd (TLSOptions without NoSessionReuseRequired) check it.
//
// Go's TLS server resumes sessions from tickets, which it encrypts with its ticket keys; it has
// no session-ID cache. Each control connection gets a ticket key of its own, shared only with
// its data connections: a ticket issued on the control connection (or on one of its data
// connections) can be decrypted, and thus resumed, by this session's data connections only. A
// ticket of another session, even of the same client, cannot be decrypted and the handshake is
// a full one, whose ConnectionState().DidResume is false. With Config.TLS.RequireSessionReuse
// such a data connection is refused in its handshake (VerifyConnection), before any byte of a
// file moves.
//
// ftpserverlib does the data connections' handshakes itself, with the one tls.Config it gets
// from GetTLSConfig and no session context. That config (dataTLSConfig) picks the session's
// config in GetConfigForClient from the connection being handshaken: passive connections are
// the dataConn the daemon's own listener handed out (dataconn.go), active ones are found by
// the address ftpserverlib connected to, which is the checked PORT/EPRT target of exactly one
// session.

// errSessionNotReused is what a refused data connection's transfer fails with; it reaches the
// client in the transfer's error reply.
var (
	errSessionNotReused = errors.New("the TLS session of the data connection must resume the control connection's session (TLS session reuse is required)")
	errNoControlSession = errors.New("the data connection belongs to no TLS-protected control connection (TLS session reuse is required)")
)

// sessionTLS holds the TLS configs of one control connection and its data connections.
type sessionTLS struct {
	control *tls.Config
	data    *tls.Config
}

// sessionTLSFor prepares the TLS configs of control connection c: both share a random ticket key
// that no other session has. The data config checks, and counts, the resumption.
func (s *Server) sessionTLSFor(c *controlConn) *sessionTLS {
	var key [32]byte
	_, _ = rand.Read(key[:]) // crypto/rand.Read never fails (it crashes the program instead)
	control := s.tlsConf.Clone()
	control.SetSessionTicketKeys([][32]byte{key})
	data := control.Clone() // the clone keeps the ticket key
	require := s.cfg.TLS.RequireSessionReuse
	refuse := func() error {
		s.metrics.dataTLSHandshake(false)
		s.logger.Warn("data connection refused", slog.String("client_ip", c.ip.String()),
			slog.String("reason", "TLS session of the control connection not resumed"))
		return errSessionNotReused
	}
	data.VerifyConnection = func(cs tls.ConnectionState) error {
		if require && !cs.DidResume {
			return refuse()
		}
		s.metrics.dataTLSHandshake(cs.DidResume)
		return nil
	}
	// A TLS 1.3 server sends its session ticket before it verifies the handshake, and that
	// ticket would resume this session: a client refused for a fresh handshake would get in
	// with its next data connection. A data connection that did not resume gets no ticket: its
	// handshake is refused here, before the ticket is made.
	data.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		if require && !cs.DidResume {
			return nil, refuse()
		}
		return data.EncryptTicket(cs, ss)
	}
	return &sessionTLS{control: control, data: data}
}

// dataTLSConfig is the tls.Config ftpserverlib gets for data connections: it hands each
// handshake the config of the connection's session.
func (s *Server) dataTLSConfig() *tls.Config {
	base := s.tlsConf.Clone()
	require := s.cfg.TLS.RequireSessionReuse
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if c := s.controlOfData(hello.Conn); c != nil {
			if st := c.tlsSession.Load(); st != nil {
				return st.data, nil
			}
		}
		// A data connection of a clear-text control connection (mode explicit) or one whose
		// session cannot be found: nothing to resume.
		if require {
			return nil, errNoControlSession
		}
		return nil, nil
	}
	base.VerifyConnection = func(cs tls.ConnectionState) error {
		s.metrics.dataTLSHandshake(cs.DidResume)
		return nil
	}
	return base
}

// controlOfData finds the control connection a data connection belongs to: a passive one was
// handed out by the daemon's listener with its session; an active one was opened by
// ftpserverlib to its session's checked PORT/EPRT target.
func (s *Server) controlOfData(conn net.Conn) *controlConn {
	if dc, ok := conn.(*dataConn); ok {
		return dc.ctrl
	}
	tcp, ok := conn.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return nil
	}
	target := tcp.AddrPort()
	target = netip.AddrPortFrom(target.Addr().Unmap(), target.Port())
	s.mu.Lock()
	defer s.mu.Unlock()
	if claims := s.activeTargets[target]; len(claims) == 1 {
		return claims[0]
	}
	return nil
}
