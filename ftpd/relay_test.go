package ftpd

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var testRelayKey = bytes.Repeat([]byte("k"), MinRelayKeyBytes)

func TestRelayHeader(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	v4c, v4d := netip.MustParseAddrPort("198.51.100.7:40123"), netip.MustParseAddrPort("10.0.0.5:30001")
	v6c, v6d := netip.MustParseAddrPort("[2001:db8::7]:40123"), netip.MustParseAddrPort("[fd00::5]:30001")
	good := encodeRelayHeader(testRelayKey, v4c, v4d, now)
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 1; return b }
	tests := []struct {
		name    string
		header  []byte
		key     []byte
		at      time.Time
		client  netip.AddrPort
		dst     netip.AddrPort
		wantErr string
	}{
		{name: "IPv4", header: good, at: now, client: v4c, dst: v4d},
		{name: "IPv6", header: encodeRelayHeader(testRelayKey, v6c, v6d, now), at: now, client: v6c, dst: v6d},
		{name: "IPv4-mapped addresses travel as IPv4", header: encodeRelayHeader(testRelayKey,
			netip.AddrPortFrom(netip.AddrFrom16(v4c.Addr().As16()), v4c.Port()), v4d, now), at: now, client: v4c, dst: v4d},
		{name: "within the skew", header: good, at: now.Add(relayMaxSkew), client: v4c, dst: v4d},
		{name: "another key", header: good, key: bytes.Repeat([]byte("x"), MinRelayKeyBytes), at: now, wantErr: "signature does not verify"},
		{name: "client address changed", header: flip(16 + 3), at: now, wantErr: "signature does not verify"},
		{name: "port changed", header: flip(16 + 11), at: now, wantErr: "signature does not verify"},
		{name: "time changed", header: flip(16 + 12 + 3 + 7), at: now, wantErr: "signature does not verify"},
		{name: "too old (replayed)", header: good, at: now.Add(relayMaxSkew + time.Second), wantErr: "more than"},
		{name: "from the future", header: good, at: now.Add(-relayMaxSkew - time.Second), wantErr: "more than"},
		{name: "not PROXY v2", header: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), at: now, wantErr: "not a PROXY v2 header"},
		{name: "cut short", header: good[:40], at: now, wantErr: "bad relay header"},
		{name: "unsigned PROXY v2", header: append(append(bytes.Clone(good[:14]), 0, 12), good[16:28]...), at: now, wantErr: "no signature"},
		{name: "oversized length", header: append(append(bytes.Clone(good[:14]), 0xff, 0xff), good[16:]...), at: now, wantErr: "length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := testRelayKey
			if tt.key != nil {
				key = tt.key
			}
			client, dst, err := readRelayHeader(bytes.NewReader(tt.header), key, tt.at)
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, errRelayHeader) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if client != tt.client || dst != tt.dst {
				t.Fatalf("got %v → %v, want %v → %v", client, dst, tt.client, tt.dst)
			}
		})
	}
}

func TestReplicasValidation(t *testing.T) {
	peers := []Peer{{Name: "a", RelayAddress: "127.0.0.1:1"}, {Name: "b", RelayAddress: "127.0.0.1:2"}}
	base := func() Config {
		return Config{ListenAddr: "127.0.0.1:0", Root: t.TempDir(), Users: []User{{Name: "u", Password: "p"}},
			PassivePorts: PortRange{Start: 30000, End: 30009},
			Replicas:     &Replicas{Self: "a", PortsPerReplica: 5, Peers: peers, RelayListen: "127.0.0.1:0", Key: testRelayKey}}
	}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{name: "valid", mutate: func(*Config) {}},
		{name: "no passive range", mutate: func(c *Config) { c.PassivePorts = PortRange{} }, wantErr: "need a passive port range"},
		{name: "slices beyond the range", mutate: func(c *Config) { c.Replicas.PortsPerReplica = 6 }, wantErr: "2 peers of 6 ports need 12 passive ports, the range 30000-30009 has 10"},
		{name: "empty slices", mutate: func(c *Config) { c.Replicas.PortsPerReplica = 0 }, wantErr: "must be at least 1"},
		{name: "not among the peers", mutate: func(c *Config) { c.Replicas.Self = "c" }, wantErr: `this daemon ("c") is not among the peers a, b`},
		{name: "short key", mutate: func(c *Config) { c.Replicas.Key = []byte("short") }, wantErr: "the relay key has 5 bytes"},
		{name: "repeated peer", mutate: func(c *Config) { c.Replicas.Peers = []Peer{peers[0], peers[0]} }, wantErr: `repeated name "a"`},
		{name: "peer without address", mutate: func(c *Config) { c.Replicas.Peers = []Peer{peers[0], {Name: "b"}} }, wantErr: `peer "b": invalid relay address`},
		{name: "no relay listen address", mutate: func(c *Config) { c.Replicas.RelayListen = "" }, wantErr: "invalid relay listen address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base()
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestReplicaSlices(t *testing.T) {
	rs, err := newReplicaSet(&Replicas{Self: "b", PortsPerReplica: 3, Peers: []Peer{{Name: "a", RelayAddress: "h:1"}, {Name: "b"}, {Name: "c", RelayAddress: "h:3"}}}, PortRange{Start: 100, End: 110})
	if err != nil {
		t.Fatal(err)
	}
	if got := rs.own(); got != (PortRange{Start: 103, End: 105}) {
		t.Fatalf("own slice %v, want 103-105", got)
	}
	for port, want := range map[int]int{99: -1, 100: 0, 102: 0, 103: 1, 105: 1, 106: 2, 108: 2, 109: -1, 110: -1} {
		if got := rs.owner(port); got != want {
			t.Errorf("owner(%d) = %d, want %d", port, got, want)
		}
	}
}

// replicaGroup is n daemons sharing one root (a shared volume) and one passive range, each on
// its own loopback address (127.0.0.10+i) with the same ports, as replicas on their pods.
type replicaGroup struct {
	servers []*testServer
	ips     []string
	ports   PortRange // the passive range
	k       int       // ports per replica
	control int       // every replica's control port
}

func startReplicas(t *testing.T, n, k int, mutate func(i int, c *Config)) *replicaGroup {
	t.Helper()
	root := t.TempDir()
	span := freePortRange(t, n*k+2) // the passive range, the relay port, the control port
	g := &replicaGroup{ports: PortRange{Start: span.Start, End: span.Start + n*k - 1}, k: k, control: span.End}
	relayPort := strconv.Itoa(span.End - 1)
	var peers []Peer
	for i := range n {
		ip := fmt.Sprintf("127.0.0.%d", 10+i)
		g.ips = append(g.ips, ip)
		peers = append(peers, Peer{Name: fmt.Sprintf("ftp-%d", i), RelayAddress: net.JoinHostPort(ip, relayPort)})
	}
	for i := range n {
		g.servers = append(g.servers, startServer(t, func(c *Config) {
			c.ListenAddr = net.JoinHostPort(g.ips[i], strconv.Itoa(g.control))
			c.Root = root
			c.HealthAddr = net.JoinHostPort(g.ips[i], "0")
			c.PassivePorts = g.ports
			c.Replicas = &Replicas{Self: peers[i].Name, PortsPerReplica: k, Peers: peers, RelayListen: peers[i].RelayAddress, Key: testRelayKey}
			if mutate != nil {
				mutate(i, c)
			}
		}))
	}
	return g
}

func relayed(ts *testServer, direction, result string) float64 {
	return testutil.ToFloat64(ts.metrics.relayed.WithLabelValues(direction, result))
}

// TestDataConnectionRelayedToOwner: a data connection that reaches a replica other than the one
// that answered PASV/EPSV is carried to that one, for downloads and uploads (whose end is the
// client's half-close), and the transfer is whole. Each port is answered only from the slice of
// the replica asked.
func TestDataConnectionRelayedToOwner(t *testing.T) {
	g := startReplicas(t, 2, 3, nil)
	a, b := g.servers[0], g.servers[1]
	payload := randomBytes(t, 3<<20)
	writeFile(t, a.home("alice")+"/big.bin", payload)
	for _, cmd := range []string{"PASV", "EPSV"} {
		t.Run(cmd+" download", func(t *testing.T) {
			rc := dialRaw(t, b.Addr())
			rc.login("alice", alicePass)
			port := rc.passivePort(cmd)
			if port < g.ports.Start+g.k || port > g.ports.Start+2*g.k-1 {
				t.Fatalf("replica 1 answered port %d, outside its slice %d-%d", port, g.ports.Start+g.k, g.ports.Start+2*g.k-1)
			}
			data := dialDataTo(t, g.ips[0], port) // the load balancer chose replica 0
			rc.mustCmd(150, "RETR big.bin")
			got, err := io.ReadAll(data)
			if err != nil {
				t.Fatal(err)
			}
			rc.expect(226)
			if sum(got) != sum(payload) {
				t.Fatalf("got %d bytes, not the file's %d", len(got), len(payload))
			}
		})
		t.Run(cmd+" upload", func(t *testing.T) {
			rc := dialRaw(t, a.Addr())
			rc.login("alice", alicePass)
			port := rc.passivePort(cmd)
			if port < g.ports.Start || port > g.ports.Start+g.k-1 {
				t.Fatalf("replica 0 answered port %d, outside its slice", port)
			}
			data := dialDataTo(t, g.ips[1], port)
			rc.mustCmd(150, "STOR up-%s.bin", cmd)
			if _, err := data.Write(payload); err != nil {
				t.Fatal(err)
			}
			_ = data.(*net.TCPConn).CloseWrite()
			rc.expect(226)
			_ = data.Close()
			got, err := os.ReadFile(a.home("alice") + "/up-" + cmd + ".bin")
			if err != nil || sum(got) != sum(payload) {
				t.Fatalf("the upload is not whole (%d of %d bytes): %v", len(got), len(payload), err)
			}
		})
	}
	if s, r := relayed(a, "sent", "relayed")+relayed(b, "sent", "relayed"), relayed(a, "received", "accepted")+relayed(b, "received", "accepted"); s != 4 || r != 4 {
		t.Fatalf("relayed: %v sent, %v received; want 4 each", s, r)
	}
	// The owners moved the bytes on the zero-copy paths, to the relay's socket.
	want := float64(2 * len(payload))
	if got := testutil.ToFloat64(b.metrics.copyBytes.WithLabelValues("download", string(CopySendfile))); got != want {
		t.Errorf("sendfile moved %v download bytes, want %v", got, want)
	}
	if got := testutil.ToFloat64(a.metrics.copyBytes.WithLabelValues("upload", string(CopySplice))); got != want {
		t.Errorf("splice moved %v upload bytes, want %v", got, want)
	}
}

// dialDataTo opens a data connection to port on ip from 127.0.0.1 (the client's address).
func dialDataTo(t *testing.T, ip string, port int) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// TestRelayKeepsTheClientCheck: the owner checks the address the relay reports, so a thief's
// connection to the port, through another replica, is refused and the client's still works; a
// connection to the relay endpoint without a header signed by the replicas' key is refused.
func TestRelayKeepsTheClientCheck(t *testing.T) {
	g := startReplicas(t, 2, 2, nil)
	a, b := g.servers[0], g.servers[1]
	writeFile(t, b.home("alice")+"/f.txt", []byte("for alice only"))
	rc := dialRaw(t, b.Addr())
	rc.login("alice", alicePass)
	_, port := rc.pasv()

	thief := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.99")}, Timeout: 5 * time.Second}
	stolen, err := thief.Dial("tcp", net.JoinHostPort(g.ips[0], strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	expectNoData(t, stolen)
	waitFor(t, "the owner to refuse the thief", func() bool {
		return strings.Contains(b.logs.String(), `"client_ip":"127.0.0.99"`) && strings.Contains(b.logs.String(), "not the client of this passive port")
	})

	data := dialDataTo(t, g.ips[0], port)
	rc.mustCmd(150, "RETR f.txt")
	got, _ := io.ReadAll(data)
	rc.expect(226)
	if string(got) != "for alice only" {
		t.Fatalf("got %q", got)
	}

	forged := encodeRelayHeader(bytes.Repeat([]byte("x"), MinRelayKeyBytes), netip.MustParseAddrPort("127.0.0.1:5555"),
		netip.AddrPortFrom(netip.MustParseAddr(g.ips[1]), uint16(port)), time.Now())
	for name, header := range map[string][]byte{"another key": forged, "no header": []byte("USER alice\r\nPASS x\r\n\r\n")} {
		before := relayed(b, "received", "refused")
		conn, err := net.DialTimeout("tcp", b.RelayAddr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write(header)
		expectNoData(t, conn)
		waitFor(t, name+" to be refused", func() bool { return relayed(b, "received", "refused") == before+1 })
		_ = conn.Close()
	}
	if got := relayed(a, "sent", "relayed"); got != 2 {
		t.Fatalf("replica 0 relayed %v connections, want 2 (the thief's and the client's)", got)
	}
}

// TestRelayToAnAbsentOwner: with the owner gone, a connection for its port is closed at once
// (and counted), not left hanging.
func TestRelayToAnAbsentOwner(t *testing.T) {
	g := startReplicas(t, 2, 2, nil)
	a, b := g.servers[0], g.servers[1]
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	conn := dialDataTo(t, g.ips[0], g.ports.Start+g.k) // replica 1's first port
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(make([]byte, 1))
	var ne net.Error
	if n != 0 || err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("read %d bytes, %v: want the connection closed", n, err)
	}
	if got := relayed(a, "sent", "failed"); got != 1 {
		t.Fatalf("sent/failed = %v, want 1", got)
	}
}

// TestDrainWaitsForRelayedTransfers: a replica that is stopping keeps carrying the transfers it
// relays for another replica's sessions until they end.
func TestDrainWaitsForRelayedTransfers(t *testing.T) {
	g := startReplicas(t, 2, 2, nil)
	a, b := g.servers[0], g.servers[1]
	payload := randomBytes(t, 8<<20)
	writeFile(t, b.home("alice")+"/big.bin", payload)
	rc := dialRaw(t, b.Addr())
	rc.login("alice", alicePass)
	_, port := rc.pasv()
	data := dialDataTo(t, g.ips[0], port)
	rc.mustCmd(150, "RETR big.bin")
	first := make([]byte, 1<<20)
	if _, err := io.ReadFull(data, first); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- a.stop() }() // replica 0 drains while it relays
	waitFor(t, "replica 0 to drain", func() bool { return strings.Contains(a.logs.String(), `"msg":"draining"`) })
	time.Sleep(200 * time.Millisecond)
	rest, err := io.ReadAll(data)
	if err != nil {
		t.Fatal(err)
	}
	_ = data.Close() // as clients do at the end of a download
	rc.expect(226)
	if got := slices.Concat(first, rest); sum(got) != sum(payload) {
		t.Fatalf("got %d of %d bytes", len(got), len(payload))
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second): // the drain timeout is 5 s
		t.Fatal("replica 0 still draining after the relayed transfer ended")
	}
	if strings.Contains(a.logs.String(), "drain timeout reached") {
		t.Fatal("replica 0's drain ran into its timeout")
	}
}

// startBalancer forwards each connection to a port on ip to the same port of the next backend
// in turn, for every port given: a load balancer that keeps no affinity between connections.
// It masquerades, so the daemons see its address as the client's.
func startBalancer(t *testing.T, ip string, backends []string, ports []int) {
	t.Helper()
	var next atomic.Uint64
	var wg sync.WaitGroup
	var lns []net.Listener
	for _, port := range ports {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				backend := backends[next.Add(1)%uint64(len(backends))]
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
				up, err := d.Dial("tcp", net.JoinHostPort(backend, strconv.Itoa(port)))
				if err != nil {
					_ = c.Close()
					continue
				}
				go pipe(c, up)
			}
		}()
	}
	t.Cleanup(func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
		wg.Wait()
	})
}

// TestReplicasBehindABalancer: three replicas behind one address whose balancer sends every
// connection, control or data, to the next replica in turn: every transfer of a strict PASV
// client (it connects where the reply says) and of an EPSV client succeeds, and most data
// connections were relayed.
func TestReplicasBehindABalancer(t *testing.T) {
	const lbIP = "127.0.0.20"
	g := startReplicas(t, 3, 2, func(i int, c *Config) { c.PublicHost = lbIP })
	ports := []int{g.control}
	for p := g.ports.Start; p <= g.ports.End; p++ {
		ports = append(ports, p)
	}
	startBalancer(t, lbIP, g.ips, ports)

	payload := randomBytes(t, 256<<10)
	writeFile(t, g.servers[0].home("alice")+"/f.bin", payload)
	for _, mode := range []struct {
		name string
		opts []ftp.DialOption
	}{{"PASV", []ftp.DialOption{ftp.DialWithDisabledEPSV(true)}}, {"EPSV", nil}} {
		t.Run(mode.name, func(t *testing.T) {
			for i := range 12 {
				c, err := ftp.Dial(net.JoinHostPort(lbIP, strconv.Itoa(g.control)), append([]ftp.DialOption{ftp.DialWithTimeout(5 * time.Second)}, mode.opts...)...)
				if err != nil {
					t.Fatal(err)
				}
				if err := c.Login("alice", alicePass); err != nil {
					t.Fatal(err)
				}
				got, err := readAll(t, c, "f.bin")
				if err != nil || sum(got) != sum(payload) {
					t.Fatalf("transfer %d: %d bytes, %v", i, len(got), err)
				}
				name := fmt.Sprintf("up-%s-%d.bin", mode.name, i)
				if err := c.Stor(name, bytes.NewReader(payload)); err != nil {
					t.Fatalf("upload %d: %v", i, err)
				}
				_ = c.Quit()
				if b, err := os.ReadFile(g.servers[0].home("alice") + "/" + name); err != nil || sha256.Sum256(b) != sha256.Sum256(payload) {
					t.Fatalf("upload %d is not whole: %v", i, err)
				}
			}
		})
	}
	var sent float64
	for _, s := range g.servers {
		sent += relayed(s, "sent", "relayed")
		if f := relayed(s, "sent", "failed") + relayed(s, "received", "refused"); f != 0 {
			t.Fatalf("a replica counted %v failed or refused relays", f)
		}
	}
	if sent == 0 {
		t.Fatal("no data connection was relayed: the balancer did not exercise the relay")
	}
	t.Logf("%v of 48 data connections relayed", sent)
}

// TestReplicasFromConfigFile: in config-file mode a replica finds itself by $POD_NAME and reads
// the key from its file; a reload that changes the peers and the slices applies to the next
// PASV without a restart, one that drops replicas waits for a restart; broken settings are
// refused with the field named.
func TestReplicasFromConfigFile(t *testing.T) {
	f := newFileSetup(t)
	f.ports = freePortRange(t, 7)
	keyDir := newKubeletDir(t)
	keyDir.publish(map[string]string{"key": string(testRelayKey) + "\n"})
	replicasYAML := func(k int, peers ...string) string {
		y := fmt.Sprintf("  replicas:\n    portsPerReplica: %d\n    relayListen: \"127.0.0.1:%d\"\n    keyFile: %s\n    peers:\n", k, f.ports.End, keyDir.path("key"))
		for i, p := range peers {
			y += fmt.Sprintf("      - {name: %s, relayAddress: \"127.0.0.1:%d\"}\n", p, 1000+i)
		}
		return y
	}
	withReplicas := func(replicas string) string {
		cfg := f.configYAML("")
		listened := fmt.Sprintf("  listenedPorts: \"%d-%d\"\n", f.ports.Start, f.ports.End-1)
		return strings.Replace(cfg, fmt.Sprintf("  listenedPorts: \"%d-%d\"\n", f.ports.Start, f.ports.End), listened+replicas, 1)
	}
	f.usersDir.publish(map[string]string{"users.yaml": usersYAML(t, "pw", false)})

	t.Run("refused", func(t *testing.T) {
		for name, tt := range map[string]struct{ yaml, podName, want string }{
			"no POD_NAME":       {withReplicas(replicasYAML(2, "ftp-0", "ftp-1")), "", "passive.replicas.self is empty and $POD_NAME is not set"},
			"not a peer":        {withReplicas(replicasYAML(2, "ftp-0", "ftp-1")), "ftp-7", `this daemon ("ftp-7") is not among the peers ftp-0, ftp-1`},
			"slices too large":  {withReplicas(replicasYAML(4, "ftp-0", "ftp-1")), "ftp-0", "passive.replicas: 2 peers of 4 ports need 8 passive ports, listenedPorts has 6"},
			"missing key file":  {strings.Replace(withReplicas(replicasYAML(2, "ftp-0")), keyDir.path("key"), "/nonexistent/key", 1), "ftp-0", "passive.replicas.keyFile: open /nonexistent/key"},
			"relative key file": {strings.Replace(withReplicas(replicasYAML(2, "ftp-0")), keyDir.path("key"), "key", 1), "ftp-0", "passive.replicas.keyFile: must be an absolute path"},
		} {
			t.Run(name, func(t *testing.T) {
				t.Setenv(PodNameEnv, tt.podName)
				f.configDir.publish(map[string]string{"ftpd.yaml": tt.yaml})
				_, _, err := LoadConfigFile(f.configDir.path("ftpd.yaml"))
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("got %v, want an error containing %q", err, tt.want)
				}
			})
		}
	})

	t.Setenv(PodNameEnv, "ftp-1")
	f.configDir.publish(map[string]string{"ftpd.yaml": withReplicas(replicasYAML(2, "ftp-0", "ftp-1", "ftp-2"))})
	ts := f.start(t)
	if ts.RelayAddr() != fmt.Sprintf("127.0.0.1:%d", f.ports.End) {
		t.Fatalf("relay endpoint on %q", ts.RelayAddr())
	}
	pasvPorts := func() map[int]bool {
		seen := map[int]bool{}
		rc := dialRaw(t, ts.Addr())
		rc.login("alice", "pw")
		for range 6 { // a PASV gives up the session's earlier port: a 1-port slice serves them all
			_, p := rc.pasv()
			seen[p] = true
		}
		rc.mustCmd(221, "QUIT")
		return seen
	}
	for p := range pasvPorts() {
		if p != f.ports.Start+2 && p != f.ports.Start+3 {
			t.Fatalf("ftp-1 of 2-port slices answered port %d, want %d or %d", p, f.ports.Start+2, f.ports.Start+3)
		}
	}
	// Scaled: ftp-1 is now the first of three 1-port slices... of a reordered list.
	f.configDir.publish(map[string]string{"ftpd.yaml": withReplicas(replicasYAML(1, "ftp-1", "ftp-0"))})
	waitFor(t, "the reload", func() bool { return ts.dyn.Load().replicas.PortsPerReplica == 1 })
	for p := range pasvPorts() {
		if p != f.ports.Start {
			t.Fatalf("after the reload ftp-1 answered port %d, want %d", p, f.ports.Start)
		}
	}
	// Dropping replicas needs the restart; until then the daemon keeps its slice.
	f.configDir.publish(map[string]string{"ftpd.yaml": f.configYAML("")})
	waitFor(t, "the restart warning", func() bool { return strings.Contains(ts.logs.String(), "passive.replicas.relayListen") })
	if ts.dyn.Load().replicas == nil {
		t.Fatal("a reload dropped the replicas the daemon's listeners were opened for")
	}
}
