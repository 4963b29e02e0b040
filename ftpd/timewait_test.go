package ftpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"golang.org/x/sys/unix"
)

// tcpSocket is one line of ss: the local and peer address of a socket.
type tcpSocket struct{ local, peer netip.AddrPort }

// timeWaits lists the sockets in TIME_WAIT on this host's loopback (ss -tan state time-wait).
func timeWaits(t testing.TB) []tcpSocket {
	t.Helper()
	var out []tcpSocket
	for _, line := range strings.Split(ssOutput(t, "-tanH", "state", "time-wait"), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		local, err1 := netip.ParseAddrPort(f[len(f)-2])
		peer, err2 := netip.ParseAddrPort(f[len(f)-1])
		if err1 != nil || err2 != nil || !local.Addr().IsLoopback() {
			continue
		}
		out = append(out, tcpSocket{local: local, peer: peer})
	}
	return out
}

// timeWaitCount counts the TIME_WAIT sockets on ports of the test servers' address 127.0.0.1:
// on the server's side (the local end is one of them: the server closed first) and on the
// client's side (the peer end is: the client closed first). Both ends are on this host's
// loopback, so ss sees both. Only ends on 127.0.0.1 count: a port of the range can also be the
// ephemeral port of some other connection on the host (the sessions-at-scale benchmark leaves
// tens of thousands of TIME_WAIT sockets between 127.1.x.y and its servers for a minute).
func timeWaitCount(t testing.TB, ports PortRange) (server, client int) {
	t.Helper()
	ours := func(ap netip.AddrPort) bool {
		return ap.Addr() == netip.AddrFrom4([4]byte{127, 0, 0, 1}) && int(ap.Port()) >= ports.Start && int(ap.Port()) <= ports.End
	}
	for _, s := range timeWaits(t) {
		switch {
		case ours(s.local):
			server++
		case ours(s.peer):
			client++
		}
	}
	return server, client
}

// TestWhoClosesFirst measures, with ss, which side of each kind of connection closes first and
// so holds its TIME_WAIT (docs/ftpd.md, "The TCP life cycle of a session"). In FTP's stream
// mode the end of a transfer is the end of its data connection, so the sender closes first:
// the server for RETR and LIST, the client for STOR. The server also closes the control
// connection first after its 221 reply to QUIT.
func TestWhoClosesFirst(t *testing.T) {
	const n = 5
	cases := []struct {
		name       string
		op         func(t *testing.T, c *ftp.ServerConn, i int)
		serverSide bool // the server closes first: its TIME_WAIT is on the passive port
	}{
		{"RETR", func(t *testing.T, c *ftp.ServerConn, i int) {
			if got, err := readAll(t, c, "/small.bin"); err != nil || len(got) != 4096 {
				t.Fatalf("RETR: %d bytes, %v", len(got), err)
			}
		}, true},
		{"LIST", func(t *testing.T, c *ftp.ServerConn, i int) {
			if entries, err := c.List("/"); err != nil || len(entries) == 0 {
				t.Fatalf("LIST: %v entries, %v", len(entries), err)
			}
		}, true},
		{"STOR", func(t *testing.T, c *ftp.ServerConn, i int) {
			if err := c.Stor(fmt.Sprintf("/up-%d.bin", i), bytes.NewReader(make([]byte, 4096))); err != nil {
				t.Fatalf("STOR: %v", err)
			}
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ports := freePortRange(t, 1)
			ts := startServer(t, func(c *Config) { c.PassivePorts = ports })
			writeFile(t, ts.home("alice")+"/small.bin", make([]byte, 4096))
			c := ts.dial(t, "alice", alicePass)
			for i := range n {
				tc.op(t, c, i)
			}
			// The last close may still be on its way.
			var server, client int
			waitFor(t, "the data connections to close", func() bool {
				server, client = timeWaitCount(t, ports)
				return server+client >= n
			})
			t.Logf("%s x %d: TIME_WAIT on the server's side %d, on the client's side %d", tc.name, n, server, client)
			if tc.serverSide && (server != n || client != 0) {
				t.Fatalf("%s: want the server to close every data connection first (%d TIME_WAIT on its side, none on the client's), got %d and %d", tc.name, n, server, client)
			}
			if !tc.serverSide && (client != n || server != 0) {
				t.Fatalf("%s: want the client to close every data connection first (%d TIME_WAIT on its side, none on the server's), got %d and %d", tc.name, n, client, server)
			}
		})
	}

	t.Run("control connection after QUIT", func(t *testing.T) {
		ts := startServer(t, nil)
		rc := dialRaw(t, ts.Addr())
		rc.login("alice", alicePass)
		// This connection's two ends: other tests' sockets in TIME_WAIT may share a port with
		// it (an ephemeral port once is a listening port now), so only its 4-tuple counts.
		srvEnd := rc.conn.RemoteAddr().(*net.TCPAddr).AddrPort()
		cliEnd := rc.conn.LocalAddr().(*net.TCPAddr).AddrPort()
		rc.mustCmd(221, "QUIT")
		rc.expectClosed(5 * time.Second) // the server hangs up after 221, the client then closes
		_ = rc.conn.Close()
		var server, client int
		waitFor(t, "the control connection to close", func() bool {
			server, client = 0, 0
			for _, s := range timeWaits(t) {
				switch {
				case s.local == srvEnd && s.peer == cliEnd:
					server++
				case s.local == cliEnd && s.peer == srvEnd:
					client++
				}
			}
			return server+client > 0
		})
		if server != 1 || client != 0 {
			t.Fatalf("QUIT: want the server to close first (1 TIME_WAIT on its side), got %d on its side and %d on the client's", server, client)
		}
	})
}

// TestPassiveRangeUnderChurn keeps a 10-port passive range busy with short downloads (the
// kind of transfer that leaves TIME_WAIT on the server's passive ports), first from one
// client address, then from 40 loopback addresses at once, and checks that every transfer
// succeeds while thousands of the range's connections sit in TIME_WAIT. Passive listeners are
// closed when their last reservation goes and bound again for the next PASV, on ports full of
// TIME_WAIT: SO_REUSEADDR is what lets them. It reports the TIME_WAIT counts on the range
// during and after each phase, and the rate reached (a figure, not a goal: see docs/ftpd.md).
func TestPassiveRangeUnderChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("churn test skipped in -short mode")
	}
	ports := freePortRange(t, 10)
	ts := startServer(t, func(c *Config) {
		c.PassivePorts = ports
		c.Limits.MaxSessions, c.Limits.MaxSessionsPerIP = 100, 20
	})
	payload := randomBytes(t, 2048)
	writeFile(t, ts.home("alice")+"/small.bin", payload)

	many := make([]string, 40)
	for i := range many {
		many[i] = fmt.Sprintf("127.0.0.%d", i+2)
	}
	phases := []struct {
		name      string
		addrs     []string // one worker (one session) per entry
		transfers int
	}{
		// 8 sessions of one address: with multiplexing each holds its own port while it sets
		// up a transfer, so up to 8 of the 10 ports are reserved by one client at once.
		{"one client address", []string{"127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1"}, 2000},
		{"40 client addresses", many, 2000},
	}
	for _, ph := range phases {
		t.Run(ph.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a hang guard, not a speed goal
			defer cancel()
			before, _ := timeWaitCount(t, ports)
			var peak atomic.Int64
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				for ctx.Err() == nil {
					if s, _ := timeWaitCount(t, ports); int64(s) > peak.Load() {
						peak.Store(int64(s))
					}
					select {
					case <-ctx.Done():
					case <-time.After(250 * time.Millisecond):
					}
				}
			}()
			start := time.Now()
			done, err := churn(ctx, ts.Addr(), ph.addrs, ph.transfers, payload)
			elapsed := time.Since(start)
			cancel()
			<-sampled
			if err != nil {
				t.Fatalf("after %d of %d transfers: %v", done, ph.transfers, err)
			}
			after, _ := timeWaitCount(t, ports)
			t.Logf("%s: %d downloads in %s (%.0f a minute) over a %d-port range; TIME_WAIT on the range's server side: %d before, peak %d during, %d after",
				ph.name, done, elapsed.Round(time.Millisecond), float64(done)/elapsed.Minutes(), ports.Count(), before, peak.Load(), after)
			// Every download left its TIME_WAIT on the range (they last a minute); a count far
			// below means the closes were not the server's, or ss sees another network.
			if after-before < ph.transfers*9/10 {
				t.Fatalf("only %d new TIME_WAIT sockets on the passive ports after %d downloads", after-before, ph.transfers)
			}
		})
	}
}

// churn runs transfers downloads of small.bin from one session per address, as fast as they go,
// and returns how many completed and the first failure.
func churn(ctx context.Context, addr string, sources []string, transfers int, want []byte) (int, error) {
	var (
		left     atomic.Int64
		done     atomic.Int64
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
	)
	left.Store(int64(transfers))
	fail := func(err error) { errOnce.Do(func() { firstErr = err }) }
	for _, src := range sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
			c, err := ftp.Dial(addr, ftp.DialWithContext(ctx), ftp.DialWithTimeout(5*time.Second),
				ftp.DialWithDialFunc(func(network, address string) (net.Conn, error) { return d.DialContext(ctx, network, address) }))
			if err != nil {
				fail(fmt.Errorf("dial from %s: %w", src, err))
				return
			}
			defer func() { _ = c.Quit() }()
			if err := c.Login("alice", alicePass); err != nil {
				fail(fmt.Errorf("login from %s: %w", src, err))
				return
			}
			for left.Add(-1) >= 0 && ctx.Err() == nil {
				r, err := c.Retr("/small.bin")
				if err != nil {
					fail(fmt.Errorf("RETR from %s: %w", src, err))
					return
				}
				got, err := io.ReadAll(r)
				if cerr := r.Close(); err == nil {
					err = cerr
				}
				if err != nil || !bytes.Equal(got, want) {
					fail(fmt.Errorf("RETR from %s: %d bytes, %v", src, len(got), err))
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return int(done.Load()), firstErr
}

// TestRestartReusesPortsAtOnce drains a daemon that leaves TIME_WAIT on its control port (it
// closes after QUIT) and on its passive port (it closes after each download), starts a new one
// on the same ports at once, and transfers through them. A listener without SO_REUSEADDR
// cannot even bind those ports then (shown with a bare socket); Go sets it on every listener
// and the daemon keeps Go's listeners.
func TestRestartReusesPortsAtOnce(t *testing.T) {
	ctlPorts := freePortRange(t, 1)
	passive := freePortRange(t, 1)
	mutate := func(c *Config) {
		c.ListenAddr = "127.0.0.1:" + strconv.Itoa(ctlPorts.Start)
		c.PassivePorts = passive
	}
	first := startServer(t, mutate)
	root := first.root
	writeFile(t, first.home("alice")+"/small.bin", make([]byte, 4096))
	c := first.dial(t, "alice", alicePass)
	for range 3 {
		if _, err := readAll(t, c, "/small.bin"); err != nil {
			t.Fatal(err)
		}
	}
	rc := dialRaw(t, first.Addr())
	rc.login("alice", alicePass)
	rc.mustCmd(221, "QUIT")
	rc.expectClosed(5 * time.Second)
	_ = rc.conn.Close()
	if err := first.stop(); err != nil {
		t.Fatalf("drain: %v", err)
	}
	_ = c.Quit()

	waitFor(t, "TIME_WAIT on the control and the passive port", func() bool {
		ctl, _ := timeWaitCount(t, ctlPorts)
		data, _ := timeWaitCount(t, passive)
		return ctl >= 1 && data >= 3
	})
	// The failure SO_REUSEADDR prevents.
	for _, p := range []int{ctlPorts.Start, passive.Start} {
		if err := bindWithoutReuseAddr(p); !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatalf("bind(127.0.0.1:%d) without SO_REUSEADDR while it has TIME_WAIT sockets: %v, want EADDRINUSE (is anything in TIME_WAIT?)", p, err)
		}
	}

	second := startServer(t, func(c *Config) { mutate(c); c.Root = root })
	ctl, _ := timeWaitCount(t, ctlPorts)
	data, _ := timeWaitCount(t, passive)
	if ctl == 0 || data == 0 {
		t.Fatalf("the earlier connections left TIME_WAIT before the restart could be tested (%d on the control port, %d on the passive port)", ctl, data)
	}
	if got := sockopt(t, second.ln.(*controlListener).Listener.(*net.TCPListener), unix.SOL_SOCKET, unix.SO_REUSEADDR); got != 1 {
		t.Errorf("control listener SO_REUSEADDR = %d", got)
	}
	c2 := second.dial(t, "alice", alicePass)
	if got, err := readAll(t, c2, "/small.bin"); err != nil || len(got) != 4096 {
		t.Fatalf("download through the restarted daemon's passive port: %d bytes, %v", len(got), err)
	}
	t.Logf("restarted on control port %d (%d in TIME_WAIT) and passive port %d (%d in TIME_WAIT) at once", ctlPorts.Start, ctl, passive.Start, data)
}

// bindWithoutReuseAddr binds a bare TCP socket to 127.0.0.1:port without SO_REUSEADDR.
func bindWithoutReuseAddr(port int) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
}
