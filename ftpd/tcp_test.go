package ftpd

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sockopt reads an integer socket option of conn.
func sockopt(t *testing.T, conn syscall.Conn, level, opt int) int {
	t.Helper()
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) { v, serr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatalf("getsockopt(%d, %d): %v", level, opt, serr)
	}
	return v
}

// requireTool skips the test (fails it when CI is set) for a missing tool.
func requireTool(t testing.TB, tool string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is needed and CI is set (hack/install-test-deps.sh installs it)", tool)
	}
	t.Skipf("skipping: %s not found (set CI=1 to make this a failure)", tool)
}

// serverControlConn returns the server's side of the only open control connection.
func (ts *testServer) serverControlConn(t *testing.T) *net.TCPConn {
	t.Helper()
	var conn *net.TCPConn
	waitFor(t, "the control connection to be registered", func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		for _, c := range ts.conns {
			conn, _ = c.raw.(*net.TCPConn)
		}
		return conn != nil
	})
	return conn
}

// serverSideOf returns the server's side of the control connection whose client side is c.
func (ts *testServer) serverSideOf(t *testing.T, c net.Conn) *net.TCPConn {
	t.Helper()
	var conn *net.TCPConn
	waitFor(t, "the control connection to be registered", func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		for _, cc := range ts.conns {
			if cc.raw.RemoteAddr().String() == c.LocalAddr().String() {
				conn, _ = cc.raw.(*net.TCPConn)
			}
		}
		return conn != nil
	})
	return conn
}

// ssOutput runs ss(8) with args, skipping the test when ss is missing and CI is unset.
func ssOutput(t testing.TB, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("ss")
	if err != nil {
		requireTool(t, "ss (iproute2)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).Output()
	if err != nil {
		t.Fatalf("ss %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// keepAliveTimer finds the keepalive timer ss shows for the established socket whose local port
// is port ("timer:(keepalive,41sec,0)"): its remaining seconds, or -1 without a keepalive timer.
func keepAliveTimer(t *testing.T, port int) int {
	t.Helper()
	out := ssOutput(t, "-tnoH", "state", "established", "( sport = :"+strconv.Itoa(port)+" )")
	if strings.TrimSpace(out) == "" {
		t.Fatalf("ss shows no established socket on local port %d", port)
	}
	m := regexp.MustCompile(`timer:\(keepalive,(?:(\d+)min)?(\d+)(?:\.\d+)?sec`).FindStringSubmatch(out)
	if m == nil {
		return -1
	}
	mins, _ := strconv.Atoi(m[1])
	secs, _ := strconv.Atoi(m[2])
	return mins*60 + secs
}

// TestKeepAliveOnEveryConnection checks the keepalive the daemon sets on its sockets: the
// configured idle, interval and count on control connections, plus TCP_USER_TIMEOUT = idle +
// interval x count, and the same idle on passive data connections (read from ss, since the
// data socket is ftpserverlib's); with keepalive off, no probes at all (Go's listeners would
// otherwise enable 15 s ones).
func TestKeepAliveOnEveryConnection(t *testing.T) {
	ka := TCPKeepAlive{Idle: 42 * time.Second, Interval: 7 * time.Second, Count: 5}
	ts := startServer(t, func(c *Config) {
		c.PassivePorts = freePortRange(t, 2)
		c.Limits.TCPKeepAlive = ka
	})
	rc := dialRaw(t, ts.Addr())
	rc.login("alice", alicePass)
	ctl := ts.serverControlConn(t)
	checks := []struct {
		name       string
		level, opt int
		want       int
	}{
		{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 42},
		{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 7},
		{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 5},
		{"TCP_USER_TIMEOUT (ms)", unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 77000},
	}
	for _, c := range checks {
		if got := sockopt(t, ctl, c.level, c.opt); got != c.want {
			t.Errorf("control connection %s = %d, want %d", c.name, got, c.want)
		}
	}

	// A passive data connection, accepted and waiting for its command.
	port := rc.epsvPort()
	data := dialDataFrom(t, "127.0.0.1", port)
	defer data.Close()
	var left int
	waitFor(t, "the data connection to be accepted", func() bool {
		out := ssOutput(t, "-tnH", "state", "established", "( sport = :"+strconv.Itoa(port)+" )")
		return strings.TrimSpace(out) != ""
	})
	if left = keepAliveTimer(t, port); left < 35 || left > 42 {
		t.Errorf("data connection keepalive timer %d s, want the configured idle (42 s, just started)", left)
	}

	t.Run("off", func(t *testing.T) {
		ts := startServer(t, func(c *Config) {
			c.PassivePorts = freePortRange(t, 2)
			c.Limits.TCPKeepAlive = TCPKeepAlive{Off: true}
		})
		rc := dialRaw(t, ts.Addr())
		rc.login("alice", alicePass)
		if got := sockopt(t, ts.serverControlConn(t), unix.SOL_SOCKET, unix.SO_KEEPALIVE); got != 0 {
			t.Errorf("control connection SO_KEEPALIVE = %d with keepalive off", got)
		}
		port := rc.epsvPort()
		data := dialDataFrom(t, "127.0.0.1", port)
		defer data.Close()
		waitFor(t, "the data connection to be accepted", func() bool {
			return strings.TrimSpace(ssOutput(t, "-tnH", "state", "established", "( sport = :"+strconv.Itoa(port)+" )")) != ""
		})
		if left := keepAliveTimer(t, port); left != -1 {
			t.Errorf("data connection has a keepalive timer (%d s) with keepalive off", left)
		}
	})
}

// TestKeepAliveFromConfigFile: limits.tcpKeepAlive of ftpd.yaml reaches the sockets, and a
// reload applies to the connections accepted after it (the open ones keep theirs).
func TestKeepAliveFromConfigFile(t *testing.T) {
	f := newFileSetup(t)
	withKeepAlive := func(ka string) string {
		return strings.Replace(f.configYAML(""), "limits:\n", "limits:\n  tcpKeepAlive: "+ka+"\n", 1)
	}
	f.usersDir.publish(map[string]string{"users.yaml": usersYAML(t, "alice-pw", false)})
	f.configDir.publish(map[string]string{"ftpd.yaml": withKeepAlive("{idle: 33s, interval: 3s, count: 2}")})
	ts := f.start(t)
	idle := func(rc *rawConn) int {
		return sockopt(t, ts.serverSideOf(t, rc.conn), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
	}
	first := dialRaw(t, ts.Addr())
	if got := idle(first); got != 33 {
		t.Fatalf("TCP_KEEPIDLE %d, want 33 from ftpd.yaml", got)
	}
	if got := sockopt(t, ts.serverSideOf(t, first.conn), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT); got != 39000 {
		t.Fatalf("TCP_USER_TIMEOUT %d ms, want 39000 (33s + 3s x 2)", got)
	}

	f.configDir.publish(map[string]string{"ftpd.yaml": withKeepAlive("{idle: 44s}")})
	waitFor(t, "the reloaded keepalive on a new connection", func() bool {
		rc := dialRaw(t, ts.Addr())
		defer rc.conn.Close()
		return idle(rc) == 44
	})
	if got := idle(first); got != 33 {
		t.Fatalf("the open connection's TCP_KEEPIDLE changed to %d by the reload", got)
	}
	if strings.Contains(ts.logs.String(), "need a restart") {
		t.Errorf("a keepalive change was reported as needing a restart:\n%s", ts.logs.String())
	}
}

// exhaustFDs opens /dev/null until the process is out of file descriptors, then closes one, so
// that exactly one descriptor is left. The soft RLIMIT_NOFILE is first lowered to a little
// above the highest descriptor in use, which keeps this cheap. The returned function closes
// them all and restores the limit.
func exhaustFDs(t *testing.T) (release func()) {
	t.Helper()
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	highest := 0
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil {
			highest = max(highest, fd)
		}
	}
	lower := orig
	lower.Cur = min(uint64(highest)+64, orig.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lower); err != nil {
		t.Fatal(err)
	}
	var files []*os.File
	release = func() {
		for _, f := range files {
			_ = f.Close()
		}
		files = nil
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
			t.Errorf("restore RLIMIT_NOFILE: %v", err)
		}
	}
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				release()
				t.Fatalf("filling the descriptor table: %v", err)
			}
			break
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		release()
		t.Fatal("no descriptor could be opened")
	}
	_ = files[len(files)-1].Close()
	files = files[:len(files)-1]
	return release
}

// TestPassivePortSurvivesEMFILE: a passive port whose accept fails because the process is out
// of file descriptors (EMFILE: thousands of sessions near RLIMIT_NOFILE) accepts the waiting
// connection once descriptors are free again. Before, its accept loop returned on the first
// such failure and left the port listening with nobody accepting: the data connection sat in
// the kernel's queue until the client gave up, and so did every later one to that port while
// other sessions' reservations kept it open.
func TestPassivePortSurvivesEMFILE(t *testing.T) {
	ports := freePortRange(t, 1)
	ts := startServer(t, func(c *Config) { c.PassivePorts = ports })
	writeFile(t, ts.home("alice")+"/f.txt", []byte("after EMFILE"))
	rc := dialRaw(t, ts.Addr())
	rc.login("alice", alicePass)
	port := rc.epsvPort()

	// The client's data connection takes the last descriptor; the server's accept finds none.
	release := exhaustFDs(t)
	data, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
	if err != nil {
		release()
		t.Fatalf("data connection: %v", err)
	}
	defer data.Close()
	time.Sleep(200 * time.Millisecond) // the server's accept runs, and fails, meanwhile
	release()

	rc.mustCmd(150, "RETR f.txt") // without a retrying accept loop: no reply until the client gives up
	_ = data.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(data)
	if err != nil || string(got) != "after EMFILE" {
		t.Fatalf("download after EMFILE: %q, %v", got, err)
	}
	rc.expect(226)
	if !strings.Contains(ts.logs.String(), "too many open files") {
		t.Fatal("no accept failed with EMFILE: the test did not reach the case it is about")
	}
}
