package ftpd

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
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
