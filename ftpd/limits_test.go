package ftpd

import (
	"golang.org/x/crypto/bcrypt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHostileClients runs one server per hostile behaviour and checks the daemon's answer.
func TestHostileClients(t *testing.T) {
	sharedPorts := freePortRange(t, 2)
	tests := []struct {
		name   string
		config func(*Config)
		run    func(t *testing.T, ts *testServer)
	}{
		{"more sessions than the per-IP limit", func(c *Config) { c.Limits.MaxSessionsPerIP = 2 }, func(t *testing.T, ts *testServer) {
			first := dialRaw(t, ts.Addr())
			first.login("alice", alicePass)
			dialRaw(t, ts.Addr()).login("alice", alicePass)
			refused := dialRawFrom(t, ts.Addr(), "127.0.0.1")
			if text := refused.expect(421); !strings.Contains(text, "from your address (limit 2)") {
				t.Fatalf("421 reply %q does not explain the per-IP limit", text)
			}
			refused.expectClosed(5 * time.Second)
			// Another client IP is not affected.
			other := dialRawFrom(t, ts.Addr(), "127.0.0.2")
			other.expect(220)
			// A closed session frees its slot.
			first.mustCmd(221, "QUIT")
			waitFor(t, "the slot to be released", func() bool {
				rc := dialRawFrom(t, ts.Addr(), "127.0.0.1")
				code, _ := rc.read()
				_ = rc.conn.Close()
				return code == 220
			})
		}},
		{"more sessions than the global limit", func(c *Config) { c.Limits.MaxSessions, c.Limits.MaxSessionsPerIP = 2, 2 }, func(t *testing.T, ts *testServer) {
			dialRawFrom(t, ts.Addr(), "127.0.0.1").expect(220)
			dialRawFrom(t, ts.Addr(), "127.0.0.2").expect(220)
			if text := dialRawFrom(t, ts.Addr(), "127.0.0.3").expect(421); !strings.Contains(text, "server limit 2") {
				t.Fatalf("421 reply %q does not explain the global limit", text)
			}
		}},
		{"brute force reaches the ban", func(c *Config) {
			c.Limits.BanAfterFailures, c.Limits.BanDuration, c.Limits.FailedLoginDelay = 3, 700*time.Millisecond, 100*time.Millisecond
		}, func(t *testing.T, ts *testServer) {
			for i := 0; i < 3; i++ {
				rc := dialRaw(t, ts.Addr())
				rc.mustCmd(331, "USER alice")
				start := time.Now()
				rc.mustCmd(530, "PASS guess-%d", i)
				if d := time.Since(start); d < 100*time.Millisecond {
					t.Fatalf("failed login answered after %v, before the failed-login delay", d)
				}
				rc.expectClosed(5 * time.Second)
			}
			banned := dialRawFrom(t, ts.Addr(), "127.0.0.1")
			if text := banned.expect(421); !strings.Contains(text, "failed logins") {
				t.Fatalf("banned IP got %q", text)
			}
			// The right password does not help a banned IP, other IPs are fine.
			dialRawFrom(t, ts.Addr(), "127.0.0.2").expect(220)
			if !strings.Contains(ts.logs.String(), `"msg":"client banned"`) {
				t.Error("ban not logged")
			}
			// The ban expires.
			time.Sleep(800 * time.Millisecond)
			dialRaw(t, ts.Addr()).login("alice", alicePass)
		}},
		{"a command line of 1 MiB", nil, func(t *testing.T, ts *testServer) {
			for _, loggedIn := range []bool{false, true} {
				rc := dialRaw(t, ts.Addr())
				if loggedIn {
					rc.login("alice", alicePass)
				}
				go func() {
					line := "NOOP " + strings.Repeat("A", 1<<20) + "\r\n"
					_, _ = io.WriteString(rc.conn, line) // the server stops reading: errors expected
				}()
				if text := rc.expect(500); !strings.Contains(text, "too long") {
					t.Fatalf("reply %q", text)
				}
				rc.expectClosed(5 * time.Second)
			}
		}},
		{"a client that connects and says nothing", func(c *Config) { c.Limits.LoginTimeout = 300 * time.Millisecond }, func(t *testing.T, ts *testServer) {
			start := time.Now()
			rc := dialRaw(t, ts.Addr())
			if text := rc.expect(421); !strings.Contains(text, "Login timeout") {
				t.Fatalf("reply %q", text)
			}
			rc.expectClosed(5 * time.Second)
			if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
				t.Fatalf("dropped after %v, want about 300ms", d)
			}
		}},
		{"a client that never finishes logging in", func(c *Config) { c.Limits.LoginTimeout = 300 * time.Millisecond }, func(t *testing.T, ts *testServer) {
			rc := dialRaw(t, ts.Addr())
			rc.mustCmd(331, "USER alice")
			time.Sleep(100 * time.Millisecond)
			rc.mustCmd(200, "NOOP") // commands do not extend the login deadline
			rc.expect(421)
			rc.expectClosed(5 * time.Second)
			// A session that logged in is not affected by the login timeout.
			ok := dialRaw(t, ts.Addr())
			ok.login("alice", alicePass)
			time.Sleep(500 * time.Millisecond)
			ok.mustCmd(200, "NOOP")
		}},
		{"an idle session", func(c *Config) { c.IdleTimeout = time.Second }, func(t *testing.T, ts *testServer) {
			rc := dialRaw(t, ts.Addr())
			rc.login("alice", alicePass)
			start := time.Now()
			rc.expect(421)
			rc.expectClosed(5 * time.Second)
			if d := time.Since(start); d < 900*time.Millisecond || d > 4*time.Second {
				t.Fatalf("idle session dropped after %v, want about 1s", d)
			}
		}},
		{"PORT to a third-party address", func(c *Config) { c.ActiveMode = true }, func(t *testing.T, ts *testServer) {
			rc := dialRaw(t, ts.Addr())
			rc.login("alice", alicePass)
			rc.mustCmd(501, "PORT 192,0,2,1,200,10")
			rc.mustCmd(501, "EPRT |1|192.0.2.1|51210|")
			rc.mustCmd(501, "PORT 127,0,0,2,200,10") // another loopback address is another host too
		}},
		{"PORT to a privileged port", func(c *Config) { c.ActiveMode = true }, func(t *testing.T, ts *testServer) {
			rc := dialRaw(t, ts.Addr())
			rc.login("alice", alicePass)
			if text := rc.mustCmd(501, "PORT 127,0,0,1,0,22"); !strings.Contains(text, "privileged") {
				t.Fatalf("reply %q", text)
			}
			rc.mustCmd(501, "EPRT |1|127.0.0.1|1023|")
			// Encodings a laxer parser would read as privileged ports: bytes above 255 and signs.
			rc.mustCmd(501, "PORT 127,0,0,1,0,445")
			rc.mustCmd(501, "PORT 127,0,0,1,1,511")
			rc.mustCmd(501, "PORT 127,0,0,1,+0,+22")
			rc.mustCmd(501, "EPRT |1|127.0.0.1|+22|")
		}},
		{"active mode to the client's own port works", func(c *Config) { c.ActiveMode = true }, func(t *testing.T, ts *testServer) {
			payload := randomBytes(t, 50_000)
			writeFile(t, filepath.Join(ts.home("alice"), "active.bin"), payload)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			port := ln.Addr().(*net.TCPAddr).Port
			rc := dialRaw(t, ts.Addr())
			rc.login("alice", alicePass)
			rc.mustCmd(200, "PORT 127,0,0,1,%d,%d", port/256, port%256)
			got := make(chan []byte, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					got <- nil
					return
				}
				defer c.Close()
				b, _ := io.ReadAll(c)
				got <- b
			}()
			rc.mustCmd(150, "RETR active.bin")
			rc.expect(226)
			if b := <-got; sum(b) != sum(payload) {
				t.Fatalf("active download got %d bytes", len(b))
			}
		}},
		{"a data connection from another IP (shared ports)", func(c *Config) { c.PassivePorts = sharedPorts }, func(t *testing.T, ts *testServer) {
			writeFile(t, filepath.Join(ts.home("alice"), "x.txt"), []byte("shared"))
			rc := dialRaw(t, ts.Addr())
			rc.login("alice", alicePass)
			port := rc.epsvPort()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
			intruder, err := d.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
			if err != nil {
				t.Fatal(err)
			}
			defer intruder.Close()
			_ = intruder.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, _ := intruder.Read(make([]byte, 1)); n != 0 {
				t.Fatal("intruder got data")
			}
			// The port stays reserved for the real client.
			data, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			rc.mustCmd(150, "RETR x.txt")
			b, _ := io.ReadAll(data)
			rc.expect(226)
			if string(b) != "shared" {
				t.Fatalf("got %q", b)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, tt.config)
			tt.run(t, ts)
		})
	}
}

// TestLimitsCommandLengthConfigurable: limits.maxCommandLength counts the whole line.
func TestLimitsCommandLengthConfigurable(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.Limits.MaxCommandLength = 100 })
	rc := dialRaw(t, ts.Addr())
	rc.login("alice", alicePass)
	rc.mustCmd(550, "CWD %s", strings.Repeat("d", 90)) // 96 bytes with CR LF: allowed, no such dir
	if text := rc.mustCmd(500, "CWD %s", strings.Repeat("d", 100)); !strings.Contains(text, "limit 100") {
		t.Fatalf("reply %q", text)
	}
	rc.expectClosed(5 * time.Second)
}

// TestParallelGuessesStopAtTheBan: a client with many sessions sends wrong passwords on all of
// them at once; no more than banAfterFailures of them may reach the password check.
func TestParallelGuessesStopAtTheBan(t *testing.T) {
	// A real bcrypt cost makes each check slow enough for the attempts to overlap.
	hash, err := bcrypt.GenerateFromPassword([]byte("carols-secret"), bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, func(c *Config) {
		c.Users = append(c.Users, User{Name: "carol", Password: string(hash)})
		c.Limits.BanAfterFailures = 3
		c.Limits.BanDuration = time.Minute
		c.Limits.FailedLoginDelay = 50 * time.Millisecond
	})
	const sessions = 10
	conns := make([]*rawConn, sessions)
	for i := range conns {
		conns[i] = dialRaw(t, ts.Addr())
		conns[i].mustCmd(331, "USER carol")
	}
	var wg sync.WaitGroup
	for _, rc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc.cmd("PASS wrong-password")
		}()
	}
	wg.Wait()
	checked := strings.Count(ts.logs.String(), `"reason":"bad_password"`)
	if checked != 3 {
		t.Fatalf("%d wrong passwords were checked before the ban; want exactly 3 (banAfterFailures)", checked)
	}
	if banned := strings.Count(ts.logs.String(), `"reason":"banned"`); banned != sessions-3 {
		t.Fatalf("%d attempts refused as banned, want %d", banned, sessions-3)
	}
}

// TestActiveModeTargetIsWhatWasChecked sends PORT/EPRT lines that a lax or different parser
// reads as another target than the filter (the EPRT delimiter trick among them). Each must be
// refused, and the server must never connect to the privileged port they hide.
func TestActiveModeTargetIsWhatWasChecked(t *testing.T) {
	// A privileged listener on the client's own address plays the service to bounce to; binding
	// it needs root, without it the test still checks the replies.
	victim, err := net.Listen("tcp", "127.0.0.1:859")
	if err != nil {
		t.Logf("cannot bind port 859 (%v): checking replies only", err)
	}
	connected := make(chan struct{}, 10)
	if victim != nil {
		defer victim.Close()
		go func() {
			for {
				c, err := victim.Accept()
				if err != nil {
					return
				}
				connected <- struct{}{}
				_ = c.Close()
			}
		}()
	}
	ts := startServer(t, func(c *Config) { c.ActiveMode = true })
	writeFile(t, filepath.Join(ts.home("alice"), "a.txt"), []byte("a"))
	tests := []struct{ name, line string }{
		{"EPRT with another delimiter hiding a second target", "EPRT !!127.0.0.1!2000!|1|127.0.0.1|859|"},
		{"EPRT with another delimiter", "EPRT !1!127.0.0.1!2000!"},
		{"EPRT family 2 with an IPv4 address", "EPRT |2|127.0.0.1|2000|"},
		{"EPRT family 1 with an IPv6 address", "EPRT |1|::1|2000|"},
		{"EPRT IPv4-mapped address", "EPRT |2|::ffff:127.0.0.1|2000|"},
		{"EPRT unknown family", "EPRT |3|127.0.0.1|2000|"},
		{"EPRT trailing field", "EPRT |1|127.0.0.1|2000||859|"},
		{"EPRT port with leading spaces", "EPRT |1|127.0.0.1| 2000|"},
		{"EPRT port 0", "EPRT |1|127.0.0.1|0|"},
		{"EPRT port above 65535", "EPRT |1|127.0.0.1|66395|"}, // 66395 mod 65536 = 859
		{"PORT with spaces", "PORT 127, 0, 0, 1, 7, 208"},
		{"PORT with a fourth digit", "PORT 127,0,0,1,0003,91"},
		{"PORT with seven fields", "PORT 127,0,0,1,7,208,3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := dialRaw(t, ts.Addr())
			rc.login("alice", alicePass)
			if code, text := rc.cmd("%s", tt.line); code != 501 {
				t.Fatalf("%s: got %q, want 501", tt.line, text)
			}
			// A transfer now would use the target if one had been set.
			if code, _ := rc.cmd("RETR a.txt"); code < 400 {
				t.Fatalf("RETR after a refused %s started a transfer", tt.line)
			}
		})
	}
	select {
	case <-connected:
		t.Fatal("the server connected to the privileged port")
	case <-time.After(200 * time.Millisecond):
	}
}

// TestIPv6ClientGroups: IPv6 clients of one /64 (by default) are one client for the per-IP
// session limit and for bans; IPv4 addresses and other prefixes stay separate.
func TestIPv6ClientGroups(t *testing.T) {
	groups := []struct {
		name   string
		bits   int
		a, b   string
		shared bool
	}{
		{"same /64", 64, "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true},
		{"neighbouring /64", 64, "2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"same /56 with a /56 setting", 56, "2001:db8:1:2::1", "2001:db8:1:3::1", true},
		{"/128 counts each address", 128, "2001:db8:1:2::1", "2001:db8:1:2::2", false},
		{"IPv4 addresses alone", 64, "192.0.2.1", "192.0.2.2", false},
		{"IPv4-mapped is IPv4", 64, "::ffff:192.0.2.1", "192.0.2.1", true},
		{"zones ignored", 64, "fe80::1%lo", "fe80::2%eth0", true},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			l := Limits{IPv6PrefixLength: g.bits}
			ga, gb := l.clientGroup(netip.MustParseAddr(g.a)), l.clientGroup(netip.MustParseAddr(g.b))
			if (ga == gb) != g.shared {
				t.Fatalf("groups %v and %v: shared %v, want %v", ga, gb, ga == gb, g.shared)
			}
		})
	}

	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	_ = ln.Close()
	ts := startServer(t, func(c *Config) {
		c.ListenAddr = "[::1]:0"
		c.Limits.MaxSessions, c.Limits.MaxSessionsPerIP = 10, 2
		c.Limits.BanAfterFailures, c.Limits.BanDuration = 2, time.Minute
	})
	admitted := func(ip string) bool {
		t.Helper()
		group := ts.dyn.Load().limits.clientGroup(netip.MustParseAddr(ip))
		if rej := ts.admit(group); rej != nil {
			return false
		}
		ts.limiter.release(group)
		return true
	}
	// Over real sockets the only IPv6 loopback address is ::1, which is in ::/64 together with
	// ::2 (never bound): what ::1 uses up, ::2 no longer has.
	first := dialRaw(t, ts.Addr())
	first.login("alice", alicePass)
	if !admitted("::2") {
		t.Fatal("::2 refused while its /64 holds one of two sessions")
	}
	second := dialRaw(t, ts.Addr())
	second.login("alice", alicePass)
	if admitted("::2") {
		t.Fatal("::2 admitted while its /64 (::1) holds the per-IP limit of sessions")
	}
	if !admitted("2001:db8::1") {
		t.Fatal("another /64 refused")
	}
	first.mustCmd(221, "QUIT")
	second.mustCmd(221, "QUIT")
	waitFor(t, "the sessions of ::/64 to end", func() bool {
		ts.limiter.mu.Lock()
		defer ts.limiter.mu.Unlock()
		return ts.limiter.total == 0
	})
	for i := 0; i < 2; i++ {
		rc := dialRawFrom(t, ts.Addr(), "::1")
		rc.expect(220)
		rc.mustCmd(331, "USER alice")
		rc.mustCmd(530, "PASS wrong-%d", i)
		rc.expectClosed(5 * time.Second)
		waitFor(t, "the failed session to end", func() bool {
			ts.limiter.mu.Lock()
			defer ts.limiter.mu.Unlock()
			return ts.limiter.total == 0
		})
	}
	if ts.bans.isBanned(ts.dyn.Load().limits.clientGroup(netip.MustParseAddr("::2")), time.Now()) != true {
		t.Fatal("failed logins from ::1 did not ban its /64")
	}
	if admitted("::abcd") {
		t.Fatal("an address of the banned /64 was admitted")
	}
	if !admitted("2001:db8::1") {
		t.Fatal("the ban of ::/64 reached another prefix")
	}
}
