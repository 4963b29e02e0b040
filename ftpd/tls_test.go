package ftpd

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
	"github.com/kubeftp/ftp-operator/internal/testcert"
)

// testCert is a self-signed certificate for 127.0.0.1 and localhost, written to files.
type testCert struct {
	certFile, keyFile string
	cert              *x509.Certificate
	pool              *x509.CertPool
}

// writeTestCert creates a certificate with the given serial and (re)writes certFile and keyFile
// atomically (rename), as a Secret update would. It is also its own CA, which keeps the client
// side simple.
func writeTestCert(t *testing.T, dir string, serial int64) testCert {
	t.Helper()
	c, err := testcert.New(testcert.Options{
		CommonName: "ftpd test " + strconv.FormatInt(serial, 10), Serial: big.NewInt(serial), ValidFor: time.Hour,
		IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}, SelfCA: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	tc := testCert{certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key"), cert: c.Cert, pool: c.Pool()}
	replaceFile(t, tc.certFile, c.CertPEM)
	replaceFile(t, tc.keyFile, c.KeyPEM)
	return tc
}

func replaceFile(t *testing.T, p string, data []byte) {
	t.Helper()
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

func (c testCert) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: c.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// startTLSServer runs the standard test server with FTPS in the given mode.
func startTLSServer(t *testing.T, mode TLSMode, mutate func(*Config)) (*testServer, testCert) {
	t.Helper()
	cert := writeTestCert(t, t.TempDir(), 1)
	ts := startServer(t, func(c *Config) {
		c.TLS = TLSConfig{Mode: mode, CertFile: cert.certFile, KeyFile: cert.keyFile}
		if mutate != nil {
			mutate(c)
		}
	})
	return ts, cert
}

// transferRoundTrip uploads and downloads a file with c and checks it.
func transferRoundTrip(t *testing.T, ts *testServer, c *ftp.ServerConn, name string) {
	t.Helper()
	payload := randomBytes(t, 300_000)
	if err := c.Stor(name, bytes.NewReader(payload)); err != nil {
		t.Fatalf("STOR: %v", err)
	}
	got, err := readAll(t, c, name)
	if err != nil {
		t.Fatalf("RETR: %v", err)
	}
	if sum(got) != sum(payload) {
		t.Fatal("downloaded file differs")
	}
	onDisk, _ := os.ReadFile(filepath.Join(ts.home("alice"), name))
	if sum(onDisk) != sum(payload) {
		t.Fatal("file on disk differs")
	}
	if _, err := c.List("/"); err != nil {
		t.Fatalf("LIST: %v", err)
	}
}

// TestFTPSExplicit: AUTH TLS with PROT P data transfers (the Go client sends PBSZ 0 / PROT P),
// and clear-text sessions still allowed in mode explicit.
func TestFTPSExplicit(t *testing.T) {
	ts, cert := startTLSServer(t, TLSExplicit, nil)
	c := ts.dial(t, "alice", alicePass, ftp.DialWithExplicitTLS(cert.clientConfig()))
	transferRoundTrip(t, ts, c, "explicit.bin")

	plain := ts.dial(t, "alice", alicePass)
	if _, err := plain.List("/"); err != nil {
		t.Fatalf("clear-text session refused in explicit mode: %v", err)
	}
	if text := dialRaw(t, ts.Addr()).mustCmd(211, "FEAT"); !strings.Contains(text, "AUTH TLS") {
		t.Errorf("FEAT does not offer AUTH TLS:\n%s", text)
	}
}

// TestFTPSImplicit: TLS from the first byte, data connections protected.
func TestFTPSImplicit(t *testing.T) {
	ts, cert := startTLSServer(t, TLSImplicit, nil)
	c := ts.dial(t, "alice", alicePass, ftp.DialWithTLS(cert.clientConfig()))
	transferRoundTrip(t, ts, c, "implicit.bin")

	// A clear-text client gets no FTP greeting.
	conn, err := net.DialTimeout("tcp", ts.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = conn.Write([]byte("USER alice\r\n"))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, _ := conn.Read(buf)
	if strings.HasPrefix(string(buf[:n]), "220") {
		t.Fatalf("clear-text greeting on the implicit TLS port: %q", buf[:n])
	}
}

// TestFTPSRequired: USER and PASS are refused before AUTH TLS, data channels need PROT P.
func TestFTPSRequired(t *testing.T) {
	ts, cert := startTLSServer(t, TLSRequired, nil)
	payload := []byte("protected payload")
	writeFile(t, filepath.Join(ts.home("alice"), "p.txt"), payload)

	rc := dialRaw(t, ts.Addr())
	rc.mustCmd(530, "USER alice")
	rc.mustCmd(530, "PASS %s", alicePass)
	rc.startTLS(cert.clientConfig())
	rc.login("alice", alicePass)
	rc.mustCmd(521, "EPSV")
	rc.mustCmd(521, "PASV")
	rc.mustCmd(200, "PBSZ 0")
	rc.mustCmd(200, "prot p") // lower case is fine
	data := tls.Client(rc.epsv(), cert.clientConfig())
	defer data.Close()
	rc.mustCmd(150, "RETR p.txt")
	got := make([]byte, 0, 64)
	buf := make([]byte, 64)
	_ = data.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, err := data.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	rc.expect(226)
	if string(got) != string(payload) {
		t.Fatalf("got %q over PROT P", got)
	}
	rc.mustCmd(503, "AUTH TLS")

	// The Go client does it all in the right order.
	c := ts.dial(t, "alice", alicePass, ftp.DialWithExplicitTLS(cert.clientConfig()))
	transferRoundTrip(t, ts, c, "required.bin")
}

// TestTLSMinVersion: minVersion 1.3 refuses a TLS 1.2 client and accepts a TLS 1.3 one; the
// default refuses TLS 1.1.
func TestTLSMinVersion(t *testing.T) {
	ts, cert := startTLSServer(t, TLSExplicit, func(c *Config) { c.TLS.MinVersion = tls.VersionTLS13 })
	old := cert.clientConfig()
	old.MaxVersion = tls.VersionTLS12
	if err := tryLogin(ts.Addr(), ftp.DialWithExplicitTLS(old)); err == nil {
		t.Fatal("TLS 1.2 client accepted with minVersion 1.3")
	}
	c := ts.dial(t, "alice", alicePass, ftp.DialWithExplicitTLS(cert.clientConfig()))
	transferRoundTrip(t, ts, c, "tls13.bin")

	ts12, cert12 := startTLSServer(t, TLSExplicit, nil)
	ancient := cert12.clientConfig()
	ancient.MinVersion, ancient.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if err := tryLogin(ts12.Addr(), ftp.DialWithExplicitTLS(ancient)); err == nil {
		t.Fatal("TLS 1.1 client accepted")
	}
}

// tryLogin dials and logs in as alice (the TLS handshake happens on the first command).
func tryLogin(addr string, opt ftp.DialOption) error {
	c, err := ftp.Dial(addr, ftp.DialWithTimeout(5*time.Second), opt)
	if err != nil {
		return err
	}
	defer c.Quit()
	return c.Login("alice", alicePass)
}

// peerSerial opens an implicit-TLS connection and returns the server certificate's serial.
func peerSerial(t *testing.T, addr string, pool *x509.CertPool) int64 {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestCertificateRotation: a renewed certificate is used by new connections without a restart,
// an open session continues, and a broken certificate leaves the previous one in use.
func TestCertificateRotation(t *testing.T) {
	dir := t.TempDir()
	first := writeTestCert(t, dir, 1)
	ts := startServer(t, func(c *Config) {
		c.TLS = TLSConfig{Mode: TLSImplicit, CertFile: first.certFile, KeyFile: first.keyFile}
		c.HealthAddr = "127.0.0.1:0"
	})
	pool := x509.NewCertPool()
	pool.AddCert(first.cert)
	if s := peerSerial(t, ts.Addr(), pool); s != 1 {
		t.Fatalf("serial %d, want 1", s)
	}
	// The session trusts both certificates: its data connections use the renewed one.
	open := ts.dial(t, "alice", alicePass, ftp.DialWithTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}))

	if got, want := servedInputs(t, ts).CertificateSHA256, fileDigest(t, first.certFile); got != want {
		t.Fatalf("served certificate digest %q, want %q", got, want)
	}

	second := writeTestCert(t, dir, 2)
	pool.AddCert(second.cert)
	waitFor(t, "the new certificate", func() bool { return peerSerial(t, ts.Addr(), pool) == 2 })
	// The ops endpoint tells the operator which certificate is in force.
	secondDigest := fileDigest(t, second.certFile)
	if got := servedInputs(t, ts).CertificateSHA256; got != secondDigest {
		t.Fatalf("after the rotation the served certificate digest is %q, want %q", got, secondDigest)
	}
	if err := open.NoOp(); err != nil {
		t.Fatalf("session opened before the rotation broke: %v", err)
	}
	transferRoundTrip(t, ts, open, "after-rotation.bin")

	replaceFile(t, second.certFile, []byte("not a certificate"))
	waitFor(t, "the broken certificate to be rejected", func() bool {
		return strings.Contains(ts.logs.String(), "TLS certificate reload rejected")
	})
	if s := peerSerial(t, ts.Addr(), pool); s != 2 {
		t.Fatalf("serial %d after a broken renewal, want 2", s)
	}
	if got := servedInputs(t, ts).CertificateSHA256; got != secondDigest {
		t.Fatalf("after a broken renewal the served certificate digest is %q, want the one in force, %q", got, secondDigest)
	}
}

// fileDigest is fileconfig.ContentDigest of a file.
func fileDigest(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fileconfig.ContentDigest(data)
}

// TestCurlFTPS drives curl, a real FTPS client, in explicit (--ssl-reqd) and implicit mode.
func TestCurlFTPS(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not available")
	}
	for _, mode := range []TLSMode{TLSExplicit, TLSImplicit} {
		t.Run(string(mode), func(t *testing.T) {
			ts, cert := startTLSServer(t, mode, nil)
			payload := randomBytes(t, 100_000)
			src := filepath.Join(t.TempDir(), "src.bin")
			writeFile(t, src, payload)
			scheme, extra := "ftp", []string{"--ssl-reqd"}
			if mode == TLSImplicit {
				scheme, extra = "ftps", nil
			}
			url := scheme + "://" + ts.Addr() + "/curl.bin"
			args := append([]string{"-sS", "--max-time", "20", "--cacert", cert.certFile, "-u", "alice:" + alicePass}, extra...)
			if out, err := exec.Command(curl, append(args, "-T", src, url)...).CombinedOutput(); err != nil {
				t.Fatalf("curl upload: %v\n%s", err, out)
			}
			out, err := exec.Command(curl, append(args, url)...).Output()
			if err != nil {
				t.Fatalf("curl download: %v", err)
			}
			if sum(out) != sum(payload) {
				t.Fatal("curl round trip differs")
			}
		})
	}
}

// TestTLSDisabledRefusals: without TLS, AUTH and PROT P are refused cleanly (and PROT P cannot
// leave ftpserverlib holding a passive listener it fails to use).
func TestTLSDisabledRefusals(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.PassivePorts = freePortRange(t, 1) })
	rc := dialRaw(t, ts.Addr())
	rc.mustCmd(550, "AUTH TLS")
	rc.login("alice", alicePass)
	rc.mustCmd(534, "PROT P")
	rc.mustCmd(504, "PROT X")
	rc.mustCmd(200, "PROT C")
	for i := 0; i < 3; i++ { // the single passive port is released each time
		data := rc.epsv()
		rc.mustCmd(150, "LIST")
		_ = data.Close()
		rc.expect(226)
	}
}
