package ftpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"golang.org/x/crypto/bcrypt"

	"github.com/kubeftp/ftp-operator/internal/poll"
)

// Test accounts of startServer.
const (
	alicePass = "alice-secret"
	guestPass = "guest-secret"
	bobPass   = "bob-secret:with:colons"
)

// testServer is a Server running on 127.0.0.1 with a random port.
type testServer struct {
	*Server
	root string
	logs *syncBuffer
	stop func() error // cancels Serve and returns its result
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startServer runs a server with alice (read-write, plain password), guest (read-only) and bob
// (read-write, bcrypt hash). mutate may adjust the config before the server starts.
func startServer(t *testing.T, mutate func(*Config)) *testServer {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	hash, err := bcrypt.GenerateFromPassword([]byte(bobPass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		ListenAddr: "127.0.0.1:0",
		Root:       root,
		Users: []User{
			{Name: "alice", Password: alicePass},
			{Name: "guest", Password: guestPass, ReadOnly: true},
			{Name: "bob", Password: string(hash)},
		},
		DrainTimeout: 5 * time.Second,
		// Tests fail logins on purpose: no delay worth waiting for, no ban unless a test asks.
		Limits:         Limits{FailedLoginDelay: time.Millisecond, BanAfterFailures: 1000},
		ReloadInterval: 50 * time.Millisecond,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	return runServer(t, cfg)
}

// runServer starts a server from cfg and stops it when the test ends.
func runServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	root := cfg.Root
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := NewServer(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	var once sync.Once
	var result error
	ts := &testServer{Server: srv, root: root, logs: logs}
	ts.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-done:
			case <-time.After(15 * time.Second):
				result = errors.New("Serve did not return")
			}
		})
		return result
	}
	t.Cleanup(func() {
		if err := ts.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
		if t.Failed() {
			t.Logf("server logs:\n%s", logs.String())
		}
	})
	// Serve reports ready a moment after its accept loop starts; a test that stops the server
	// and waits for readiness to turn false must not see the "not ready yet" of the start.
	waitFor(t, "the server to be ready", ts.Ready)
	return ts
}

func (ts *testServer) home(user string) string { return filepath.Join(ts.root, user) }

// dial logs in with the Go FTP client (which uses EPSV).
func (ts *testServer) dial(t *testing.T, user, pass string, opts ...ftp.DialOption) *ftp.ServerConn {
	t.Helper()
	c, err := ftp.Dial(ts.Addr(), append([]ftp.DialOption{ftp.DialWithTimeout(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Quit() })
	if err := c.Login(user, pass); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return c
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16)})
	_, _ = r.Read(b)
	return b
}

func sum(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// freePortRange finds n consecutive ports that can currently be bound on 127.0.0.1.
func freePortRange(t *testing.T, n int) PortRange {
	t.Helper()
	for attempt := 0; attempt < 200; attempt++ {
		base := 20000 + rand.IntN(40000)
		ok := true
		for p := base; p < base+n && ok; p++ {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				break
			}
			_ = ln.Close()
		}
		if ok {
			return PortRange{Start: base, End: base + n - 1}
		}
	}
	t.Fatal("no free port range found")
	return PortRange{}
}

// rawConn speaks FTP by hand over a control connection.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	rc := dialRawFrom(t, addr, "")
	rc.expect(220)
	return rc
}

// dialRawFrom connects from a given loopback source IP ("" for any) and reads no greeting.
func dialRawFrom(t *testing.T, addr, sourceIP string) *rawConn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if sourceIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(sourceIP)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &rawConn{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// startTLS sends AUTH TLS and continues the session over TLS.
func (rc *rawConn) startTLS(cfg *tls.Config) {
	rc.t.Helper()
	rc.mustCmd(234, "AUTH TLS")
	tc := tls.Client(rc.conn, cfg)
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		rc.t.Fatalf("TLS handshake: %v", err)
	}
	_ = tc.SetDeadline(time.Time{})
	rc.conn, rc.r = tc, bufio.NewReader(tc)
}

// expectClosed checks that the server closes the connection (after any pending replies).
func (rc *rawConn) expectClosed(within time.Duration) {
	rc.t.Helper()
	_ = rc.conn.SetReadDeadline(time.Now().Add(within))
	if _, err := io.Copy(io.Discard, rc.r); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		rc.t.Fatalf("connection not closed within %v: %v", within, err)
	}
}

// read returns the code and full text of the next (possibly multi-line) reply.
func (rc *rawConn) read() (int, string) {
	rc.t.Helper()
	_ = rc.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var text strings.Builder
	line, err := rc.r.ReadString('\n')
	if err != nil {
		rc.t.Fatalf("reading reply: %v (so far %q)", err, line)
	}
	text.WriteString(line)
	if len(line) < 4 {
		rc.t.Fatalf("short reply %q", line)
	}
	code, err := strconv.Atoi(line[:3])
	if err != nil {
		rc.t.Fatalf("bad reply %q", line)
	}
	if line[3] == '-' {
		for {
			l, err := rc.r.ReadString('\n')
			if err != nil {
				rc.t.Fatalf("reading multi-line reply: %v", err)
			}
			text.WriteString(l)
			if strings.HasPrefix(l, line[:3]+" ") {
				break
			}
		}
	}
	return code, strings.TrimSpace(text.String())
}

func (rc *rawConn) cmd(format string, args ...any) (int, string) {
	rc.t.Helper()
	if _, err := fmt.Fprintf(rc.conn, format+"\r\n", args...); err != nil {
		rc.t.Fatal(err)
	}
	return rc.read()
}

func (rc *rawConn) expect(want int) string {
	rc.t.Helper()
	code, text := rc.read()
	if code != want {
		rc.t.Fatalf("got reply %q, want code %d", text, want)
	}
	return text
}

func (rc *rawConn) mustCmd(want int, format string, args ...any) string {
	rc.t.Helper()
	code, text := rc.cmd(format, args...)
	if code != want {
		rc.t.Fatalf("%s: got reply %q, want code %d", fmt.Sprintf(format, args...), text, want)
	}
	return text
}

func (rc *rawConn) login(user, pass string) {
	rc.t.Helper()
	rc.mustCmd(331, "USER %s", user)
	rc.mustCmd(230, "PASS %s", pass)
	rc.mustCmd(200, "TYPE I")
}

// epsv enters extended passive mode and dials the data port on the control connection's host.
func (rc *rawConn) epsv() *net.TCPConn {
	rc.t.Helper()
	port := rc.epsvPort()
	host, _, _ := net.SplitHostPort(rc.conn.RemoteAddr().String())
	d, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		rc.t.Fatal(err)
	}
	return d.(*net.TCPConn)
}

// epsvPort sends EPSV and returns the advertised port.
func (rc *rawConn) epsvPort() int {
	rc.t.Helper()
	text := rc.mustCmd(229, "EPSV")
	i, j := strings.Index(text, "(|||"), strings.LastIndex(text, "|)")
	if i < 0 || j < i {
		rc.t.Fatalf("bad EPSV reply %q", text)
	}
	port, err := strconv.Atoi(text[i+4 : j])
	if err != nil {
		rc.t.Fatalf("bad EPSV reply %q", text)
	}
	return port
}

// passivePort sends cmd (EPSV or PASV) and returns the advertised port.
func (rc *rawConn) passivePort(cmd string) int {
	rc.t.Helper()
	if cmd == "EPSV" {
		return rc.epsvPort()
	}
	_, port := rc.pasv()
	return port
}

// pasv sends PASV and returns the advertised address and port.
func (rc *rawConn) pasv() (string, int) {
	rc.t.Helper()
	text := rc.mustCmd(227, "PASV")
	var h1, h2, h3, h4, p1, p2 int
	i := strings.Index(text, "(")
	if i < 0 {
		rc.t.Fatalf("bad PASV reply %q", text)
	}
	if _, err := fmt.Sscanf(text[i:], "(%d,%d,%d,%d,%d,%d)", &h1, &h2, &h3, &h4, &p1, &p2); err != nil {
		rc.t.Fatalf("cannot parse %q: %v", text, err)
	}
	return fmt.Sprintf("%d.%d.%d.%d", h1, h2, h3, h4), p1*256 + p2
}

// waitFor polls cond every 10 ms for up to 5 seconds: the daemon's reactions are quick, and
// some tests act while a short-lived state (a transfer in flight) lasts.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if err := poll.Until(context.Background(), 5*time.Second, 10*time.Millisecond, what, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		t.Fatal(err)
	}
}

func (ts *testServer) activeTransfers() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.active
}

func readAll(t *testing.T, c *ftp.ServerConn, p string) ([]byte, error) {
	t.Helper()
	r, err := c.Retr(p)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// tempFiles lists leftover upload temporaries under dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tempPrefix) {
			found = append(found, p)
		}
		return nil
	})
	return found
}

// dialDataFrom opens a data connection to the server's port on 127.0.0.1 from another loopback
// address, as a different host would.
func dialDataFrom(t *testing.T, sourceIP string, port int) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(sourceIP)}, Timeout: 5 * time.Second}
	data, err := d.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	return data
}
