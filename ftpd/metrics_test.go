package ftpd

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
)

// TestMetrics scrapes /metrics around logins and transfers and checks the numbers.
func TestMetrics(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.HealthAddr = "127.0.0.1:0"; c.PassivePorts = freePortRange(t, 4) })
	// A second server in the same process has its own registry (no duplicate registration, no
	// shared counts).
	other := startServer(t, func(c *Config) { c.HealthAddr = "127.0.0.1:0" })

	if _, err := tryDial(ts.Addr(), "alice", "wrong"); err == nil {
		t.Fatal("wrong password accepted")
	}
	if _, err := tryDial(ts.Addr(), "mallory", "x"); err == nil {
		t.Fatal("unknown user accepted")
	}
	c := ts.dial(t, "alice", alicePass)
	up := randomBytes(t, 12_345)
	if err := c.Stor("m.bin", bytes.NewReader(up)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if got, err := readAll(t, c, "m.bin"); err != nil || len(got) != len(up) {
			t.Fatalf("RETR: %d bytes, %v", len(got), err)
		}
	}
	rc := dialRaw(t, ts.Addr())
	rc.login("alice", alicePass)
	data := rc.epsv()

	// Sessions closed by failed logins end asynchronously.
	waitFor(t, "two open sessions", func() bool { return scrape(t, ts)[`ftpd_sessions`] == 2 })
	m := scrape(t, ts)
	want := map[string]float64{
		`ftpd_sessions`:                                              2,
		`ftpd_logins_total{result="ok"}`:                             2,
		`ftpd_logins_total{result="bad_password"}`:                   1,
		`ftpd_logins_total{result="unknown_user"}`:                   1,
		`ftpd_transfers_total{direction="upload",result="ok"}`:       1,
		`ftpd_transfers_total{direction="download",result="ok"}`:     2,
		`ftpd_transfer_bytes_total{direction="upload"}`:              12_345,
		`ftpd_transfer_bytes_total{direction="download"}`:            2 * 12_345,
		`ftpd_passive_ports_in_use`:                                  1,
		`ftpd_passive_ports_configured`:                              4,
		`ftpd_bans_total`:                                            0,
		`ftpd_banned_ips`:                                            0,
		`ftpd_config_reloads_total{result="ok"}`:                     0,
		`ftpd_sessions_rejected_total{reason="max_sessions_per_ip"}`: 0,
		`ftpd_tls_certificate_not_after_seconds`:                     0,
	}
	for k, v := range want {
		got, ok := m[k]
		if !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if _, ok := m["go_goroutines"]; !ok {
		t.Error("Go runtime metrics missing")
	}
	_ = data.Close()
	rc.mustCmd(221, "QUIT")
	waitFor(t, "the passive port to be released", func() bool { return scrape(t, ts)[`ftpd_passive_ports_in_use`] == 0 })
	if o := scrape(t, other); o[`ftpd_logins_total{result="ok"}`] != 0 || o[`ftpd_sessions`] != 0 {
		t.Errorf("second server shares counts: %v", o)
	}

	resp, err := http.Get("http://" + ts.HealthAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(string(body), "# HELP ftpd_transfer_bytes_total") {
		t.Error("metrics lack HELP text")
	}
}

// TestUserMetrics: transfers and failed logins are counted per declared user (anonymous as
// one account), and a name that is not declared never becomes a label value.
func TestUserMetrics(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.HealthAddr = "127.0.0.1:0"
		c.Anonymous = &Anonymous{Home: "pub"}
	})
	writeFile(t, filepath.Join(ts.root, "pub", "readme.txt"), []byte("hello anonymous"))

	alice := ts.dial(t, "alice", alicePass)
	up := randomBytes(t, 5_000)
	if err := alice.Stor("a.bin", bytes.NewReader(up)); err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, alice, "a.bin"); err != nil || len(got) != len(up) {
		t.Fatalf("RETR: %d bytes, %v", len(got), err)
	}
	anon := ts.dial(t, "ftp", "someone@example.com")
	if got, err := readAll(t, anon, "readme.txt"); err != nil || string(got) != "hello anonymous" {
		t.Fatalf("anonymous RETR: %q, %v", got, err)
	}
	for _, attempt := range []struct{ user, pass string }{
		{"alice", "wrong"}, {"alice", "wrong again"}, {"bob", "wrong"}, {"mallory", "x"}, {"Robert'); DROP TABLE users;--", "x"},
	} {
		if _, err := tryDial(ts.Addr(), attempt.user, attempt.pass); err == nil {
			t.Fatalf("%s logged in with a wrong password", attempt.user)
		}
	}

	waitFor(t, "the failed logins", func() bool { return scrape(t, ts)[`ftpd_logins_total{result="unknown_user"}`] == 2 })
	m := scrape(t, ts)
	cases := []struct {
		series string
		want   float64
	}{
		{`ftpd_user_transfers_total{direction="upload",result="ok",user="alice"}`, 1},
		{`ftpd_user_transfers_total{direction="download",result="ok",user="alice"}`, 1},
		{`ftpd_user_transfer_bytes_total{direction="upload",user="alice"}`, 5_000},
		{`ftpd_user_transfer_bytes_total{direction="download",user="alice"}`, 5_000},
		{`ftpd_user_transfers_total{direction="download",result="ok",user="anonymous"}`, 1},
		{`ftpd_user_transfer_bytes_total{direction="download",user="anonymous"}`, 15},
		{`ftpd_user_transfers_total{direction="upload",result="ok",user="guest"}`, 0},
		{`ftpd_user_login_failures_total{reason="bad_password",user="alice"}`, 2},
		{`ftpd_user_login_failures_total{reason="bad_password",user="bob"}`, 1},
		{`ftpd_user_login_failures_total{reason="banned",user="guest"}`, 0},
		{`ftpd_logins_total{result="bad_password"}`, 3},
	}
	for _, c := range cases {
		if got, ok := m[c.series]; !ok || got != c.want {
			t.Errorf("%s = %v (present %v), want %v", c.series, got, ok, c.want)
		}
	}
	for series := range m {
		if strings.Contains(series, "mallory") || strings.Contains(series, "DROP") {
			t.Errorf("an undeclared user name became a label: %s", series)
		}
	}
}

// TestUserMetricsFollowTheUsersFile: a reload that removes a user deletes its series, and one
// that adds a user creates them at 0, so the label set is always the users file's.
func TestUserMetricsFollowTheUsersFile(t *testing.T) {
	f := newFileSetup(t)
	f.usersDir.publish(map[string]string{"users.yaml": usersYAML(t, "pw", false)})
	f.configDir.publish(map[string]string{"ftpd.yaml": f.configYAML("")})
	ts := f.start(t)
	const readerSeries = `ftpd_user_login_failures_total{reason="bad_password",user="reader"}`
	if _, ok := scrape(t, ts)[readerSeries]; !ok {
		t.Fatalf("no %s at start", readerSeries)
	}
	f.usersDir.publish(map[string]string{"users.yaml": "users:\n  - name: alice\n    passwordHash: \"" + bcryptHash(t, "pw") +
		"\"\n    home: alice\n  - name: carol\n    passwordHash: \"" + bcryptHash(t, "pw") + "\"\n    home: carol\n"})
	waitFor(t, "the reload", func() bool {
		_, ok := scrape(t, ts)[`ftpd_user_transfer_bytes_total{direction="upload",user="carol"}`]
		return ok
	})
	for series := range scrape(t, ts) {
		if strings.Contains(series, `user="reader"`) {
			t.Errorf("series of the removed user remain: %s", series)
		}
	}
}

// TestTLSHandshakeFailureMetrics: failed handshakes of control connections, by mode and reason.
func TestTLSHandshakeFailureMetrics(t *testing.T) {
	cases := []struct {
		name   string
		mode   TLSMode
		client func(t *testing.T, addr string, cert testCert)
		series string
	}{
		{
			name: "explicit: a TLS 1.1 client",
			mode: TLSExplicit,
			client: func(t *testing.T, addr string, cert testCert) {
				old := cert.clientConfig()
				old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
				if err := tryLogin(addr, ftp.DialWithExplicitTLS(old)); err == nil {
					t.Fatal("TLS 1.1 client accepted")
				}
			},
			series: `ftpd_tls_handshake_failures_total{mode="explicit",reason="protocol"}`,
		},
		{
			name: "explicit: AUTH TLS, then the client leaves",
			mode: TLSRequired,
			client: func(t *testing.T, addr string, _ testCert) {
				rc := dialRaw(t, addr)
				rc.mustCmd(234, "AUTH TLS")
				_ = rc.conn.Close()
			},
			series: `ftpd_tls_handshake_failures_total{mode="explicit",reason="closed"}`,
		},
		{
			name: "implicit: clear-text FTP on the TLS port",
			mode: TLSImplicit,
			client: func(t *testing.T, addr string, _ testCert) {
				conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				_, _ = conn.Write([]byte("USER alice\r\n"))
				_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, _ = io.ReadAll(conn)
			},
			series: `ftpd_tls_handshake_failures_total{mode="implicit",reason="protocol"}`,
		},
		{
			name: "implicit: a TCP health check",
			mode: TLSImplicit,
			client: func(t *testing.T, addr string, _ testCert) {
				conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				_ = conn.Close()
			},
			series: `ftpd_tls_handshake_failures_total{mode="implicit",reason="closed"}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts, cert := startTLSServer(t, tc.mode, func(c *Config) { c.HealthAddr = "127.0.0.1:0" })
			// A good session first: successful handshakes are not counted.
			opt := ftp.DialWithExplicitTLS(cert.clientConfig())
			if tc.mode == TLSImplicit {
				opt = ftp.DialWithTLS(cert.clientConfig())
			}
			if err := tryLogin(ts.Addr(), opt); err != nil {
				t.Fatalf("FTPS login: %v", err)
			}
			tc.client(t, ts.Addr(), cert)
			waitFor(t, tc.series+" = 1", func() bool { return scrape(t, ts)[tc.series] == 1 })
			total := 0.0
			for series, v := range scrape(t, ts) {
				if strings.HasPrefix(series, "ftpd_tls_handshake_failures_total") {
					total += v
				}
			}
			if total != 1 {
				t.Errorf("%v handshake failures counted, want 1", total)
			}
		})
	}
}
