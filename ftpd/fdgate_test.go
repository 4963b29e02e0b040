package ftpd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestDescriptorGate(t *testing.T) {
	var sessions atomic.Int64
	// 100 descriptors, 10 reserved, 50 sessions: room for (100 - 10 - 50) / 2 = 20 setups.
	g := newDescriptorGate(100, 10, func() int { return int(sessions.Load()) }, slog.New(slog.DiscardHandler))
	sessions.Store(50)
	for i := range 20 {
		if !g.acquire(time.Second) {
			t.Fatalf("setup %d not admitted", i+1)
		}
	}

	// The 21st waits; a release admits it, waiters in arrival order.
	admitted := make(chan int, 3)
	for i := 1; i <= 3; i++ {
		go func() {
			if g.acquire(5 * time.Second) {
				admitted <- i
			}
		}()
		waitFor(t, fmt.Sprintf("waiter %d queued", i), func() bool {
			g.mu.Lock()
			defer g.mu.Unlock()
			return len(g.waiters) == i
		})
	}
	select {
	case i := <-admitted:
		t.Fatalf("waiter %d admitted without room", i)
	case <-time.After(50 * time.Millisecond):
	}
	g.release()
	if i := <-admitted; i != 1 {
		t.Fatalf("first admitted: waiter %d, want 1", i)
	}
	// A session that ends frees a descriptor; two free ones make room for one setup.
	sessions.Store(48)
	g.kick()
	if i := <-admitted; i != 2 {
		t.Fatalf("admitted after sessions ended: waiter %d, want 2", i)
	}

	// A wait that runs out says so and leaves the queue.
	g.mu.Lock()
	g.waiters = nil // waiter 3 keeps waiting on a channel nobody closes: it times out
	g.mu.Unlock()
	if g.acquire(20 * time.Millisecond) {
		t.Fatal("admitted without room")
	}
	g.mu.Lock()
	left := len(g.waiters)
	g.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d waiters left after a timeout, want 0", left)
	}

	// Without a known limit there is no gate.
	if newDescriptorGate(0, 10, func() int { return 0 }, nil).acquire(time.Second) {
		t.Fatal("a gate without a limit admitted (and would expect a release)")
	}
}

// fdServerEnv makes the test binary a server with a low open-files limit (TestDescriptorBound
// runs it): the client's descriptors must not count against the server's.
const fdServerEnv = "FTPD_TEST_FD_SERVER"

// TestDescriptorBoundServer is not a test: run by TestPassiveSetupsWithinDescriptorLimit as a
// separate process, it lowers its RLIMIT_NOFILE, serves alice's home and prints its address,
// until its standard input closes.
func TestDescriptorBoundServer(t *testing.T) {
	spec := os.Getenv(fdServerEnv)
	if spec == "" {
		t.Skip("helper process of TestPassiveSetupsWithinDescriptorLimit")
	}
	var root string
	var extra, ports int
	if _, err := fmt.Sscanf(spec, "%d %d %s", &extra, &ports, &root); err != nil {
		t.Fatalf("%s=%q: %v", fdServerEnv, spec, err)
	}
	// The limit: what the process holds now, plus extra.
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	lim := syscall.Rlimit{Cur: uint64(len(entries) + extra)}
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	lim.Max = orig.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	pr := freePortRange(t, ports)
	srv, err := NewServer(Config{
		ListenAddr: "127.0.0.1:0", Root: root, PassivePorts: pr,
		Users:        []User{{Name: "alice", Password: alicePass}},
		DrainTimeout: time.Second,
		Limits:       Limits{MaxSessions: 1000, MaxSessionsPerIP: 1000},
	}, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("addr %s limit %d\n", srv.Addr(), lim.Cur)
	ctx, cancel := contextUntilEOF(os.Stdin)
	defer cancel()
	if err := srv.Serve(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestPassiveSetupsWithinDescriptorLimit: more sessions than the server's descriptors can carry
// through a transfer at once all send EPSV together, connect, and send RETR a moment later.
// With the gate, setups beyond the budget wait and every download succeeds. Without it, the
// throwaway listeners and the data connections take the descriptors that the files and the
// other sessions' connections need: EPSVs fail with 421 ("too many open files"), RETRs with 550,
// or they wait for a data connection nobody can accept.
func TestPassiveSetupsWithinDescriptorLimit(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("needs /proc/self/fd (Linux)")
	}
	const sessions = 60
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "alice", "f.txt"), []byte("within the limit"))
	// Descriptors beyond the server's at start: the sessions (60), half as many again for
	// transfers, and the gate's reserve (64 + 2 passive ports).
	extra := sessions + sessions/2 + descriptorReserve + 2
	cmd := exec.Command(os.Args[0], "-test.run=^TestDescriptorBoundServer$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d 2 %s", fdServerEnv, extra, root))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server process: %v", err)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("server process did not stop within 10 s of its input's end (killed: %v)", <-done)
		}
		if t.Failed() {
			t.Logf("server output:\n%s", stderr.String())
		}
	})
	var addr string
	var limit int
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "addr %s limit %d", &addr, &limit); err == nil {
			break
		}
	}
	if addr == "" {
		t.Fatalf("the server process printed no address: %s", stderr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()

	// Each session from its own address: a passive port is reserved per client address.
	rcs := make([]*rawConn, sessions)
	for i := range rcs {
		rcs[i] = dialRawFrom(t, addr, fmt.Sprintf("127.0.1.%d", i+1))
		rcs[i].expect(220)
		rcs[i].login("alice", alicePass)
	}
	// All at once: EPSV, connect, RETR, read, 226. Failures are collected, not fatal, so that
	// the message says how many failed and why.
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
	)
	start := make(chan struct{})
	for _, rc := range rcs {
		wg.Go(func() {
			<-start
			if err := downloadRaw(rc, "f.txt", "within the limit", 300*time.Millisecond); err != nil {
				mu.Lock()
				failures = append(failures, err.Error())
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d downloads failed with the server at %d open files, e.g. %v", len(failures), sessions, limit, failures[:min(3, len(failures))])
	}
}

// downloadRaw does EPSV, connects, waits for pause (a client slow to send RETR: the setup
// holds its descriptors meanwhile) and does RETR, without failing the test from another
// goroutine.
func downloadRaw(rc *rawConn, name, want string, pause time.Duration) error {
	conn := rc.conn
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	send := func(cmd string) (string, error) {
		if _, err := io.WriteString(conn, cmd+"\r\n"); err != nil {
			return "", err
		}
		line, err := rc.r.ReadString('\n')
		return strings.TrimSpace(line), err
	}
	reply, err := send("EPSV")
	if err != nil || !strings.HasPrefix(reply, "229 ") {
		return fmt.Errorf("EPSV: %q %v", reply, err)
	}
	i, j := strings.Index(reply, "(|||"), strings.LastIndex(reply, "|)")
	if i < 0 || j < i {
		return fmt.Errorf("EPSV: %q", reply)
	}
	port, err := strconv.Atoi(reply[i+4 : j])
	if err != nil {
		return fmt.Errorf("EPSV: %q", reply)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: conn.LocalAddr().(*net.TCPAddr).IP}, Timeout: 10 * time.Second}
	data, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("data connection: %w", err)
	}
	defer data.Close()
	_ = data.SetDeadline(time.Now().Add(20 * time.Second))
	time.Sleep(pause)
	if reply, err = send("RETR " + name); err != nil || !strings.HasPrefix(reply, "150") {
		return fmt.Errorf("RETR: %q %v", reply, err)
	}
	got, err := io.ReadAll(data)
	if err != nil || string(got) != want {
		return fmt.Errorf("data: %q %v", got, err)
	}
	line, err := rc.r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "226") {
		return fmt.Errorf("after RETR: %q %v", line, err)
	}
	return nil
}

// contextUntilEOF is cancelled when r reaches its end (or fails).
func contextUntilEOF(r io.Reader) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, r)
		cancel()
	}()
	return ctx, cancel
}
