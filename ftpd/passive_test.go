package ftpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingLookup wraps a lookup function and counts its calls.
type countingLookup struct {
	calls atomic.Int32
	fail  atomic.Bool
	next  lookupFunc
}

func (l *countingLookup) lookup(ctx context.Context, network, host string) ([]netip.Addr, error) {
	l.calls.Add(1)
	if l.fail.Load() {
		return nil, errors.New("lookup failed")
	}
	return l.next(ctx, network, host)
}

func TestPassiveAddressPolicy(t *testing.T) {
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 9), Port: 21}
	lookups := &countingLookup{next: func(context.Context, string, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("198.51.100.7")}, nil
	}}
	cfg := Config{
		PublicHost: "192.0.2.10",
		PassiveAddress: PassiveAddressRules{Overrides: []PassiveOverride{
			{Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12")}, Address: "10.1.2.3"},
			{Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}, Address: "lb.example.test"},
		}},
	}
	p := newPassiveAddr(&cfg, lookups.lookup)
	noStatic := cfg
	noStatic.PublicHost = ""
	fallback := newPassiveAddr(&noStatic, lookups.lookup)
	tests := []struct {
		name   string
		policy *passiveAddr
		client string
		want   string
	}{
		{"first override matches", p, "10.9.9.9", "10.1.2.3"},
		{"second prefix of an override", p, "172.20.0.1", "10.1.2.3"},
		{"IPv4-mapped client", p, "::ffff:10.0.0.1", "10.1.2.3"},
		{"hostname override", p, "203.0.113.5", "198.51.100.7"},
		{"no override: static", p, "192.0.2.99", "192.0.2.10"},
		{"no static: local address", fallback, "192.0.2.99", "127.0.0.9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.policy.forClient(context.Background(), netip.MustParseAddr(tt.client), local)
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := fallback.forClient(context.Background(), netip.MustParseAddr("192.0.2.1"), &net.TCPAddr{IP: net.ParseIP("::1")}); err == nil {
		t.Error("IPv6 control connection without a configured address: want an error (PASV is IPv4)")
	}
}

// TestPassiveHostnameCache resolves "localhost" for real, caches it for the TTL, and keeps the
// last address when a refresh fails.
func TestPassiveHostnameCache(t *testing.T) {
	lookups := &countingLookup{next: net.DefaultResolver.LookupNetIP}
	cfg := Config{PassiveAddress: PassiveAddressRules{Hostname: "localhost", HostnameTTL: 100 * time.Millisecond}}
	p := newPassiveAddr(&cfg, lookups.lookup)
	get := func() string {
		t.Helper()
		addr, err := p.forClient(context.Background(), netip.MustParseAddr("192.0.2.1"), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 9)})
		if err != nil {
			t.Fatal(err)
		}
		return addr
	}
	if a := get(); !strings.HasPrefix(a, "127.") {
		t.Fatalf("localhost resolved to %q", a)
	}
	get()
	if n := lookups.calls.Load(); n != 1 {
		t.Fatalf("%d lookups within the TTL, want 1", n)
	}
	time.Sleep(150 * time.Millisecond)
	get()
	if n := lookups.calls.Load(); n != 2 {
		t.Fatalf("%d lookups after the TTL, want 2", n)
	}
	lookups.fail.Store(true)
	time.Sleep(150 * time.Millisecond)
	if a := get(); !strings.HasPrefix(a, "127.") {
		t.Fatalf("failed refresh gave %q, want the previous address", a)
	}
	// Without any previous address a failed lookup fails the PASV.
	bad := newPassiveAddr(&Config{PassiveAddress: PassiveAddressRules{Hostname: "nothing.invalid"}}, lookups.lookup)
	if _, err := bad.forClient(context.Background(), netip.MustParseAddr("192.0.2.1"), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 9)}); err == nil {
		t.Fatal("unresolvable hostname gave an address")
	}
}

// TestPASVHostname: a server configured with a passive hostname advertises its address.
func TestPASVHostname(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.PassiveAddress.Hostname = "localhost" })
	rc := dialRaw(t, ts.Addr())
	rc.login("alice", alicePass)
	if host, _ := rc.pasv(); host != "127.0.0.1" {
		t.Fatalf("PASV advertised %s for localhost", host)
	}
}

// TestPassivePortMapping: the daemon listens on listenedPorts and advertises the matching
// exposedPorts in PASV and EPSV; the test plays the port-translating load balancer.
func TestPassivePortMapping(t *testing.T) {
	listened := freePortRange(t, 3)
	exposed := PortRange{Start: 40000, End: 40002}
	if listened.Start == exposed.Start {
		exposed = PortRange{Start: 41000, End: 41002}
	}
	ts := startServer(t, func(c *Config) { c.PassivePorts, c.PassiveExposedPorts = listened, exposed })
	payload := randomBytes(t, 100_000)
	writeFile(t, filepath.Join(ts.home("alice"), "mapped.bin"), payload)
	rc := dialRaw(t, ts.Addr())
	rc.login("alice", alicePass)
	for _, cmd := range []string{"EPSV", "PASV"} {
		port := rc.passivePort(cmd)
		if port < exposed.Start || port > exposed.End {
			t.Fatalf("%s advertised port %d, want one of %v", cmd, port, exposed)
		}
		lbTarget := listened.Start + (port - exposed.Start)
		data, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(lbTarget), 5*time.Second)
		if err != nil {
			t.Fatalf("%s: listened port %d for exposed %d: %v", cmd, lbTarget, port, err)
		}
		rc.mustCmd(150, "RETR mapped.bin")
		got, _ := io.ReadAll(data)
		_ = data.Close()
		rc.expect(226)
		if sum(got) != sum(payload) {
			t.Fatalf("%s: transfer through the mapped port differs", cmd)
		}
	}
}

// TestPASVPerClientOverride: clients in an override's CIDR get its address, others the static
// one; a strict client (Python's ftplib trusting the PASV address) transfers through it. The
// override's address is the one the inside client's control connection reaches (127.0.0.1):
// passive ports listen on that address only.
func TestPASVPerClientOverride(t *testing.T) {
	ports := freePortRange(t, 4)
	ts := startServer(t, func(c *Config) {
		c.PassivePorts = ports
		c.PublicHost = "192.0.2.10" // documentation address: written in replies, never dialled
		c.PassiveAddress.Overrides = []PassiveOverride{{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}, Address: "127.0.0.1"}}
	})
	rc := dialRawFrom(t, ts.Addr(), "127.0.0.1")
	rc.expect(220)
	rc.login("alice", alicePass)
	if host, _ := rc.pasv(); host != "192.0.2.10" {
		t.Fatalf("client outside the override got %s", host)
	}
	inside := dialRawFrom(t, ts.Addr(), "127.0.0.2")
	inside.expect(220)
	inside.login("alice", alicePass)
	if host, _ := inside.pasv(); host != "127.0.0.1" {
		t.Fatalf("client inside the override got %s", host)
	}

	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not available")
	}
	payload := randomBytes(t, 100_000)
	writeFile(t, filepath.Join(ts.home("alice"), "strict.bin"), payload)
	host, port, _ := strings.Cut(ts.Addr(), ":")
	script := `
import ftplib, hashlib, io, sys
f = ftplib.FTP(source_address=("127.0.0.2", 0))
f.trust_server_pasv_ipv4_address = True
f.connect(sys.argv[1], int(sys.argv[2]), timeout=10)
f.login(sys.argv[3], sys.argv[4])
print("PASV", f.sendcmd("PASV"))
buf = io.BytesIO()
f.retrbinary("RETR strict.bin", buf.write)
print("SHA", hashlib.sha256(buf.getvalue()).hexdigest())
f.quit()
`
	out, err := exec.Command(py, "-c", script, host, port, "alice", alicePass).CombinedOutput()
	if err != nil {
		t.Fatalf("python ftplib: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "(127,0,0,1,") || !strings.Contains(string(out), "SHA "+sum(payload)) {
		t.Fatalf("strict client through the override address:\n%s", out)
	}
}

// TestAllowDataFromOtherIP: with passive.allowDataFromOtherIP the data connection may come from
// another address than the control connection (multiplexing is then off).
func TestAllowDataFromOtherIP(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.PassivePorts, c.DisablePassiveMultiplexing, c.AllowDataFromOtherIP = freePortRange(t, 2), true, true
	})
	writeFile(t, filepath.Join(ts.home("alice"), "o.txt"), []byte("other"))
	rc := dialRaw(t, ts.Addr())
	rc.login("alice", alicePass)
	port := rc.epsvPort()
	data := dialDataFrom(t, "127.0.0.2", port)
	rc.mustCmd(150, "RETR o.txt")
	b, _ := io.ReadAll(data)
	rc.expect(226)
	if string(b) != "other" {
		t.Fatalf("got %q", b)
	}

	bad := Config{Root: t.TempDir(), Users: []User{{Name: "a", Password: "b"}}, PassivePorts: PortRange{Start: 30000, End: 30001}, AllowDataFromOtherIP: true}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "multiplexing") {
		t.Fatalf("allowDataFromOtherIP with multiplexing: %v", err)
	}
}

// passiveMode is one way the daemon hands out passive ports.
type passiveMode struct {
	name   string
	config func(*Config)
}

// passiveModes are every passive mode: no port range (standalone), and a range of n=ports ports
// without and with multiplexing.
func passiveModes(t *testing.T, ports int) []passiveMode {
	return []passiveMode{
		{"no port range", func(c *Config) { c.PassivePorts = PortRange{} }},
		{"port range, multiplexing off", func(c *Config) { c.PassivePorts, c.DisablePassiveMultiplexing = freePortRange(t, ports), true }},
		{"port range, multiplexing on", func(c *Config) { c.PassivePorts = freePortRange(t, ports) }},
	}
}

// TestDataConnectionTheft: a host other than the client connects to the passive port before the
// client does, for downloads and uploads, in every passive mode, and again on the retried
// transfer. Its connection must be closed without carrying a byte either way, and the port must
// keep waiting for the real client.
func TestDataConnectionTheft(t *testing.T) {
	for _, mode := range passiveModes(t, 3) {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, mode.config)
			secret := randomBytes(t, 20_000)
			writeFile(t, filepath.Join(ts.home("alice"), "secret.bin"), secret)
			rc := dialRaw(t, ts.Addr())
			rc.login("alice", alicePass)
			for attempt := 0; attempt < 2; attempt++ {
				for _, upload := range []bool{false, true} {
					port := rc.epsvPort()
					early := dialDataFrom(t, "127.0.0.2", port) // before the transfer command
					if upload {
						_, _ = early.Write([]byte("planted by the intruder"))
					}
					expectNoData(t, early)
					if upload {
						fmt.Fprintf(rc.conn, "STOR up.txt\r\n")
					} else {
						fmt.Fprintf(rc.conn, "RETR secret.bin\r\n")
					}
					late := dialDataFrom(t, "127.0.0.3", port) // while the transfer waits
					expectNoData(t, late)
					data := dialDataFrom(t, "127.0.0.1", port)
					rc.expect(150)
					if upload {
						_, _ = data.Write([]byte("from the client"))
						_ = data.Close()
						rc.expect(226)
						if got, _ := os.ReadFile(filepath.Join(ts.home("alice"), "up.txt")); string(got) != "from the client" {
							t.Fatalf("attempt %d: uploaded file holds %q", attempt, got)
						}
						continue
					}
					got, _ := io.ReadAll(data)
					_ = data.Close()
					rc.expect(226)
					if sum(got) != sum(secret) {
						t.Fatalf("attempt %d: client got %d bytes, want the file", attempt, len(got))
					}
				}
			}
			if n := strings.Count(ts.logs.String(), `"msg":"data connection refused"`); n != 8 {
				t.Errorf("%d refused data connections logged, want 8", n)
			}
		})
	}
}

// expectNoData checks that the server closes a data connection without sending anything.
func expectNoData(t *testing.T, conn net.Conn) {
	t.Helper()
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, conn)
	if n > 0 {
		t.Fatalf("a data connection from another address received %d bytes", n)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("a data connection from another address was kept open")
	}
}

// TestPassiveListenersBoundToControlAddress: with the control listener on 127.0.0.1, a passive
// port listens on 127.0.0.1 only: not on other local addresses (127.0.0.2, ::1) and no listener
// of the process is on the wildcard address while the transfer waits, in every passive mode.
func TestPassiveListenersBoundToControlAddress(t *testing.T) {
	for _, mode := range passiveModes(t, 2) {
		t.Run(mode.name, func(t *testing.T) {
			ts := startServer(t, mode.config)
			writeFile(t, filepath.Join(ts.home("alice"), "b.txt"), []byte("bound"))
			rc := dialRaw(t, ts.Addr())
			rc.login("alice", alicePass)
			before := wildcardListeners(t)
			for _, cmd := range []string{"EPSV", "PASV"} {
				port := rc.passivePort(cmd)
				for _, other := range []string{"127.0.0.2", "::1"} {
					if c, err := net.DialTimeout("tcp", net.JoinHostPort(other, strconv.Itoa(port)), time.Second); err == nil {
						_ = c.Close()
						t.Fatalf("%s: passive port %d reachable on %s", cmd, port, other)
					}
				}
				for l := range wildcardListeners(t) {
					if !before[l] {
						t.Fatalf("%s: a listener on the wildcard address appeared: %s", cmd, l)
					}
				}
				data, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
				if err != nil {
					t.Fatalf("%s: passive port on the control address: %v", cmd, err)
				}
				rc.mustCmd(150, "RETR b.txt")
				got, _ := io.ReadAll(data)
				_ = data.Close()
				rc.expect(226)
				if string(got) != "bound" {
					t.Fatalf("%s: got %q", cmd, got)
				}
			}
		})
	}
}

// wildcardListeners lists this process's TCP sockets listening on 0.0.0.0 or :: (from
// /proc/net/tcp and tcp6, matched with /proc/self/fd by inode), as "file:local-address".
func wildcardListeners(t *testing.T) map[string]bool {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(target, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	found := map[string]bool{}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] {
				continue
			}
			host, _, _ := strings.Cut(f[1], ":")
			if strings.Trim(host, "0") == "" {
				found[file+":"+f[1]] = true
			}
		}
	}
	return found
}

// TestRepeatedPASVOnOnePort: a session that sends PASV again before using the first port gets
// the same port back (its earlier reservation is given up), even when the range has only one
// port; the transfer then works on it.
func TestRepeatedPASVOnOnePort(t *testing.T) {
	ports := freePortRange(t, 1)
	ts := startServer(t, func(c *Config) { c.PassivePorts = ports })
	writeFile(t, ts.home("alice")+"/f.txt", []byte("one port"))
	rc := dialRaw(t, ts.Addr())
	rc.login("alice", alicePass)
	for _, cmd := range []string{"PASV", "EPSV", "PASV"} {
		if p := rc.passivePort(cmd); p != ports.Start {
			t.Fatalf("%s: port %d, want %d", cmd, p, ports.Start)
		}
	}
	data := dialDataFrom(t, "127.0.0.1", ports.Start)
	defer data.Close()
	rc.mustCmd(150, "RETR f.txt")
	got, _ := io.ReadAll(data)
	rc.expect(226)
	if string(got) != "one port" {
		t.Fatalf("got %q", got)
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(entries)
}

// TestTransferFileDescriptors: while a download runs, its session holds its control
// connection, its data connection and the file, and no longer ftpserverlib's throwaway passive
// listener, which is closed when the data connection is handed over. With thousands of
// sessions at once, file descriptors are what runs out first (RLIMIT_NOFILE: the sessions-at-
// scale benchmark, docs/benchmarks.md).
func TestTransferFileDescriptors(t *testing.T) {
	const sessions = 10
	ports := freePortRange(t, 1)
	ts := startServer(t, func(c *Config) { c.PassivePorts = ports })
	// More than the loopback socket buffers hold, so that every transfer stays in flight.
	writeFile(t, ts.home("alice")+"/big.bin", make([]byte, 32<<20))
	rcs := make([]*rawConn, sessions)
	for i := range rcs {
		rcs[i] = dialRaw(t, ts.Addr())
		rcs[i].login("alice", alicePass)
	}
	before := openFDs(t)
	for _, rc := range rcs {
		port := rc.epsvPort()
		data := dialDataFrom(t, "127.0.0.1", port)
		defer data.Close()
		rc.mustCmd(150, "RETR big.bin")
	}
	during := openFDs(t)
	// Per session: the client's data socket (this process is the client too), the server's
	// data socket and the file; ftpserverlib's listener would be a fourth.
	if got, want := during-before, 3*sessions; got > want {
		t.Fatalf("%d downloads in flight opened %d descriptors, want at most %d (3 each)", sessions, got, want)
	}
}
