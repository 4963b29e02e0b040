package ftpd

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
)

// protectedSession is a raw FTPS control connection (AUTH TLS, PBSZ 0, PROT P) whose TLS
// client keeps its sessions in its own cache, as a client that resumes does.
type protectedSession struct {
	*rawConn
	cfg *tls.Config // the client's TLS config, with its session cache
}

func openProtectedSession(t *testing.T, ts *testServer, cert testCert, maxVersion uint16) *protectedSession {
	t.Helper()
	cfg := cert.clientConfig()
	cfg.MaxVersion = maxVersion
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	rc := dialRaw(t, ts.Addr())
	rc.startTLS(cfg)
	rc.login("alice", alicePass) // reading the replies also takes TLS 1.3 session tickets in
	rc.mustCmd(200, "PBSZ 0")
	rc.mustCmd(200, "PROT P")
	return &protectedSession{rawConn: rc, cfg: cfg}
}

// dataResult is what a protected RETR gave the client.
type dataResult struct {
	data    []byte
	resumed bool   // the data connection's handshake resumed a session
	err     error  // TLS or read error on the data connection
	reply   string // the final reply on the control connection
}

// retr downloads name over a passive data connection whose TLS client uses cfg (and thus the
// sessions in cfg's cache).
func (ps *protectedSession) retr(t *testing.T, cfg *tls.Config, name string) dataResult {
	t.Helper()
	tc := tls.Client(ps.epsv(), cfg)
	defer tc.Close()
	ps.mustCmd(150, "RETR %s", name)
	return finishProtectedRetr(ps.rawConn, tc)
}

// retrActive downloads name over an active data connection (PORT): the server connects, the
// client is the TLS client of the data connection as in passive mode.
func (ps *protectedSession) retrActive(t *testing.T, cfg *tls.Config, name string) dataResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	ps.mustCmd(200, "PORT 127,0,0,1,%d,%d", port>>8, port&0xff)
	if _, err := fmt.Fprintf(ps.conn, "RETR %s\r\n", name); err != nil {
		t.Fatal(err)
	}
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("the server did not connect to the PORT target: %v", err)
	}
	tc := tls.Client(conn, cfg)
	defer tc.Close()
	ps.expect(150)
	return finishProtectedRetr(ps.rawConn, tc)
}

func finishProtectedRetr(rc *rawConn, tc *tls.Conn) dataResult {
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	var res dataResult
	// With TLS 1.3 the client's handshake ends before the server has verified it: a refusal
	// shows on the first read.
	if res.err = tc.Handshake(); res.err == nil {
		res.resumed = tc.ConnectionState().DidResume
		res.data, res.err = io.ReadAll(tc)
	}
	_, res.reply = rc.read()
	return res
}

// TestTLSSessionReuseRequired: with tls.requireSessionReuse, a protected data connection must
// resume the TLS session of its own control connection, passive or active, TLS 1.2 (tickets)
// or 1.3 (PSK). A data connection with a fresh session, or one resuming the session of another
// control connection of the same client and user (what a host sharing the client's NAT address
// could hold), gets no byte of the file; the transfer fails with a reply that says why. Without
// the setting both are served, which is the weakness the setting closes.
func TestTLSSessionReuseRequired(t *testing.T) {
	payload := []byte("only for the session that logged in")
	for _, v := range []struct {
		name string
		max  uint16
	}{{"TLS1.2", tls.VersionTLS12}, {"TLS1.3", tls.VersionTLS13}} {
		for _, require := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/require=%v", v.name, require), func(t *testing.T) {
				ts, cert := startTLSServer(t, TLSRequired, func(c *Config) {
					c.TLS.RequireSessionReuse = require
					c.ActiveMode = true
					c.HealthAddr = "127.0.0.1:0"
				})
				writeFile(t, filepath.Join(ts.home("alice"), "secret.txt"), payload)
				a := openProtectedSession(t, ts, cert, v.max)
				b := openProtectedSession(t, ts, cert, v.max)

				fresh := cert.clientConfig() // no session cache: a full handshake
				fresh.MaxVersion = v.max
				// What another host behind the client's address could hold: a's session, used
				// on b's data connections.
				stolen := cert.clientConfig()
				stolen.MaxVersion = v.max
				stolen.ClientSessionCache = snapshotSession(t, a.cfg)
				cases := []struct {
					name    string
					get     func() dataResult
					resumes bool // resumes its own control connection's session
				}{
					{"passive, own session", func() dataResult { return a.retr(t, a.cfg, "secret.txt") }, true},
					{"active, own session", func() dataResult { return a.retrActive(t, a.cfg, "secret.txt") }, true},
					{"passive, fresh session", func() dataResult { return a.retr(t, fresh, "secret.txt") }, false},
					{"active, fresh session", func() dataResult { return a.retrActive(t, fresh, "secret.txt") }, false},
					{"passive, another session", func() dataResult { return b.retr(t, stolen, "secret.txt") }, false},
					{"active, another session", func() dataResult { return b.retrActive(t, stolen, "secret.txt") }, false},
					// b still works with its own session after the refusals.
					{"passive, own session again", func() dataResult { return b.retr(t, b.cfg, "secret.txt") }, true},
				}
				for _, tc := range cases {
					res := tc.get()
					served := res.err == nil && string(res.data) == string(payload) && strings.HasPrefix(res.reply, "226")
					switch {
					case tc.resumes && (!served || !res.resumed):
						t.Errorf("%s: resumed %v, served %v (%v, reply %q)", tc.name, res.resumed, served, res.err, res.reply)
					case !tc.resumes && res.resumed:
						t.Errorf("%s: the data connection resumed a session it must not be able to resume", tc.name)
					case !tc.resumes && require && !refused(res):
						t.Errorf("%s: not refused: %d bytes, error %v, reply %q", tc.name, len(res.data), res.err, res.reply)
					case !tc.resumes && !require && !served:
						t.Errorf("%s: without requireSessionReuse the transfer must work: %v, reply %q", tc.name, res.err, res.reply)
					}
				}

				// A refused handshake must not hand out a ticket that opens the next data
				// connection (a TLS 1.3 server sends its ticket before verifying the client).
				persistent := cert.clientConfig()
				persistent.MaxVersion = v.max
				persistent.ClientSessionCache = tls.NewLRUClientSessionCache(8)
				first, second := a.retr(t, persistent, "secret.txt"), a.retr(t, persistent, "secret.txt")
				if require && (!refused(first) || !refused(second)) {
					t.Errorf("a client that did not resume got in on its next data connection: first %v %q, second resumed %v %q",
						first.err, first.reply, second.resumed, second.reply)
				}
				if !require && (first.resumed || !second.resumed) {
					t.Errorf("without requireSessionReuse, a ticket from a data connection resumes the session: first resumed %v, second %v", first.resumed, second.resumed)
				}

				m := scrape(t, ts)
				wantResumed, wantFull := 3.0, 6.0
				if !require {
					wantResumed, wantFull = 4, 5
				}
				if got := m[`ftpd_tls_data_handshakes_total{resumed="true"}`]; got != wantResumed {
					t.Errorf(`ftpd_tls_data_handshakes_total{resumed="true"} = %v, want %v`, got, wantResumed)
				}
				if got := m[`ftpd_tls_data_handshakes_total{resumed="false"}`]; got != wantFull {
					t.Errorf(`ftpd_tls_data_handshakes_total{resumed="false"} = %v, want %v`, got, wantFull)
				}
				if require && !strings.Contains(ts.logs.String(), "TLS session of the control connection not resumed") {
					t.Error("refusals are not logged")
				}
			})
		}
	}
}

// refused: the client got no byte and the transfer's reply says why. (The client may or may
// not see a TLS error: a TLS 1.3 handshake refused before the ticket is sent ends without an
// alert.)
func refused(res dataResult) bool {
	return len(res.data) == 0 && strings.HasPrefix(res.reply, "550 ") && strings.Contains(res.reply, "TLS session reuse is required")
}

// fixedSessionCache offers one session for every server and keeps nothing new: a copy of a
// session taken from another client.
type fixedSessionCache struct{ session *tls.ClientSessionState }

func (f fixedSessionCache) Get(string) (*tls.ClientSessionState, bool) { return f.session, true }
func (fixedSessionCache) Put(string, *tls.ClientSessionState)          {}

// snapshotSession copies the session cfg's client holds for the test server.
func snapshotSession(t *testing.T, cfg *tls.Config) tls.ClientSessionCache {
	t.Helper()
	session, ok := cfg.ClientSessionCache.Get(cfg.ServerName)
	if !ok || session == nil {
		t.Fatal("the control connection left no session in its client's cache")
	}
	return fixedSessionCache{session}
}

// reuseClient runs one real FTPS client against ts: it uploads and downloads a file over
// protected data connections, limited to TLS 1.2 when maxTLS12.
type reuseClient struct {
	name     string
	tool     string // executable it needs; "" for the Go client
	implicit bool   // supports implicit FTPS too
	// resumes: what the client did when tried (docs/ftpd.md, FTPS, has the table).
	resumes func(maxTLS12 bool) bool
	run     func(t *testing.T, ts *testServer, cert testCert, mode TLSMode, maxTLS12 bool) error
}

func reuseClients() []reuseClient {
	always := func(bool) bool { return true }
	never := func(bool) bool { return false }
	return []reuseClient{
		// curl (OpenSSL) turns TLS 1.2 session tickets off and resumes TLS 1.2 by session ID,
		// which Go's TLS server does not keep; TLS 1.3 sessions are tickets, which it resumes.
		{name: "curl", tool: "curl", implicit: true, resumes: func(tls12 bool) bool { return !tls12 }, run: runCurlFTPS},
		{name: "lftp", tool: "lftp", implicit: true, resumes: always, run: runLFTPFTPS},
		{name: "python ftplib FTP_TLS", tool: "python3", resumes: never, run: runPythonFTPS("plain")},
		{name: "python ftplib, data connections given the control session", tool: "python3", resumes: always, run: runPythonFTPS("reuse")},
		{name: "go jlaffaye/ftp", implicit: true, resumes: never, run: runGoFTPS(false)},
		{name: "go jlaffaye/ftp with a ClientSessionCache", implicit: true, resumes: always, run: runGoFTPS(true)},
	}
}

// TestTLSSessionReuseClients tries common FTPS clients against a server that requires TLS
// session reuse, explicit and implicit, TLS 1.3 and 1.2, and checks which resume the control
// connection's session (served; the metric counts resumed handshakes only) and which do not
// (refused with the reply that says why). The results are the table in docs/ftpd.md from which
// the default (off) was chosen.
func TestTLSSessionReuseClients(t *testing.T) {
	for _, cl := range reuseClients() {
		modes := []TLSMode{TLSExplicit}
		if cl.implicit {
			modes = append(modes, TLSImplicit)
		}
		for _, mode := range modes {
			for _, tls12 := range []bool{false, true} {
				version := "TLS1.3"
				if tls12 {
					version = "TLS1.2"
				}
				t.Run(fmt.Sprintf("%s/%s/%s", cl.name, mode, version), func(t *testing.T) {
					if cl.tool != "" {
						if _, err := exec.LookPath(cl.tool); err != nil {
							t.Skipf("%s not installed (hack/install-test-deps.sh installs it)", cl.tool)
						}
					}
					ts, cert := startTLSServer(t, mode, func(c *Config) {
						c.TLS.RequireSessionReuse = true
						c.HealthAddr = "127.0.0.1:0"
					})
					err := cl.run(t, ts, cert, mode, tls12)
					m := scrape(t, ts)
					resumed, full := m[`ftpd_tls_data_handshakes_total{resumed="true"}`], m[`ftpd_tls_data_handshakes_total{resumed="false"}`]
					if cl.resumes(tls12) {
						if err != nil || resumed == 0 || full != 0 {
							t.Fatalf("expected to resume: %v; data handshakes resumed %v, not resumed %v", err, resumed, full)
						}
						return
					}
					if err == nil || full == 0 || resumed != 0 {
						t.Fatalf("expected to be refused for not resuming: error %v; data handshakes resumed %v, not resumed %v", err, resumed, full)
					}
					if !strings.Contains(ts.logs.String(), "TLS session of the control connection not resumed") {
						t.Fatalf("refused for another reason: %v", err)
					}
				})
			}
		}
	}
}

func runCurlFTPS(t *testing.T, ts *testServer, cert testCert, mode TLSMode, tls12 bool) error {
	src := filepath.Join(t.TempDir(), "src.bin")
	payload := randomBytes(t, 100_000)
	writeFile(t, src, payload)
	scheme, args := "ftp", []string{"-sS", "--max-time", "20", "--cacert", cert.certFile, "-u", "alice:" + alicePass}
	if mode == TLSImplicit {
		scheme = "ftps"
	} else {
		args = append(args, "--ssl-reqd")
	}
	if tls12 {
		args = append(args, "--tls-max", "1.2")
	}
	url := scheme + "://" + ts.Addr() + "/curl.bin"
	if out, err := exec.Command("curl", append(args, "-T", src, url)...).CombinedOutput(); err != nil {
		return fmt.Errorf("curl upload: %w: %s", err, out)
	}
	out, err := exec.Command("curl", append(args, url)...).Output()
	if err != nil {
		return fmt.Errorf("curl download: %w", err)
	}
	if sum(out) != sum(payload) {
		return errors.New("curl round trip differs")
	}
	return nil
}

func runLFTPFTPS(t *testing.T, ts *testServer, _ testCert, mode TLSMode, tls12 bool) error {
	work := t.TempDir()
	payload := randomBytes(t, 100_000)
	writeFile(t, filepath.Join(work, "src.bin"), payload)
	settings := "set net:max-retries 1; set net:timeout 10; set cmd:fail-exit true; " +
		"set ftp:ssl-force true; set ftp:ssl-protect-data true; set ssl:verify-certificate no;"
	if tls12 {
		settings += ` set ssl:priority "NORMAL:-VERS-TLS1.3";`
	}
	url := "ftp://" + ts.Addr()
	if mode == TLSImplicit {
		url = "ftps://" + ts.Addr()
	}
	script := settings + " open -u alice," + alicePass + " " + url + "; lcd " + work +
		"; put src.bin -o up.bin; get up.bin -o back.bin; bye"
	cmd := exec.Command("lftp", "-c", script)
	cmd.Env = append(os.Environ(), "HOME="+work) // no user rc file
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lftp: %w: %s", err, out)
	}
	if back, _ := os.ReadFile(filepath.Join(work, "back.bin")); sum(back) != sum(payload) {
		return errors.New("lftp round trip differs")
	}
	return nil
}

func runPythonFTPS(variant string) func(*testing.T, *testServer, testCert, TLSMode, bool) error {
	return func(t *testing.T, ts *testServer, _ testCert, _ TLSMode, tls12 bool) error {
		host, port, _ := strings.Cut(ts.Addr(), ":")
		maxTLS := "1.3"
		if tls12 {
			maxTLS = "1.2"
		}
		out, err := exec.Command("python3", filepath.Join("testdata", "ftps_client.py"), host, port, "alice", alicePass, maxTLS, variant).CombinedOutput()
		if err != nil {
			return fmt.Errorf("python: %w: %s", err, out)
		}
		return nil
	}
}

func runGoFTPS(cache bool) func(*testing.T, *testServer, testCert, TLSMode, bool) error {
	return func(t *testing.T, ts *testServer, cert testCert, mode TLSMode, tls12 bool) error {
		cfg := cert.clientConfig()
		if cache {
			// One cache per connection: the Go client keys sessions by server name, so a cache
			// shared by parallel connections to one server hands one session's ticket to another.
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		}
		if tls12 {
			cfg.MaxVersion = tls.VersionTLS12
		}
		opt := ftp.DialWithExplicitTLS(cfg)
		if mode == TLSImplicit {
			opt = ftp.DialWithTLS(cfg)
		}
		c, err := ftp.Dial(ts.Addr(), ftp.DialWithTimeout(5*time.Second), opt)
		if err != nil {
			return err
		}
		defer c.Quit()
		if err := c.Login("alice", alicePass); err != nil {
			return err
		}
		payload := randomBytes(t, 100_000)
		if err := c.Stor("go.bin", bytes.NewReader(payload)); err != nil {
			return err
		}
		got, err := readAll(t, c, "go.bin")
		if err != nil {
			return err
		}
		if sum(got) != sum(payload) {
			return errors.New("round trip differs")
		}
		return nil
	}
}

// TestTLSSessionReuseFromConfigFile: tls.requireSessionReuse of ftpd.yaml reaches the daemon.
func TestTLSSessionReuseFromConfigFile(t *testing.T) {
	cert := writeTestCert(t, t.TempDir(), 1)
	f := newFileSetup(t)
	f.usersDir.publish(map[string]string{"users.yaml": usersYAML(t, alicePass, false)})
	f.configDir.publish(map[string]string{"ftpd.yaml": f.configYAML(fmt.Sprintf(
		"tls: {mode: required, certFile: %s, keyFile: %s, requireSessionReuse: true}\n", cert.certFile, cert.keyFile))})
	ts := f.start(t)
	if err := runGoFTPS(true)(t, ts, cert, TLSRequired, false); err != nil {
		t.Fatalf("a client resuming its session: %v", err)
	}
	if err := runGoFTPS(false)(t, ts, cert, TLSRequired, false); err == nil || !strings.Contains(err.Error(), "TLS session reuse is required") {
		t.Fatalf("a client not resuming its session: %v", err)
	}
}
