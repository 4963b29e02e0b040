package ftpd

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"golang.org/x/crypto/bcrypt"

	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
)

// kubeletDir lays out files the way the kubelet mounts a ConfigMap or Secret: each version in
// a timestamped directory, "..data" a symlink to the current one, and each file a symlink
// through "..data". publish swaps versions atomically, as the kubelet does.
type kubeletDir struct {
	t       *testing.T
	dir     string
	version int
}

func newKubeletDir(t *testing.T) *kubeletDir {
	return &kubeletDir{t: t, dir: t.TempDir()}
}

func (k *kubeletDir) path(name string) string { return filepath.Join(k.dir, name) }

func (k *kubeletDir) publish(files map[string]string) {
	t := k.t
	t.Helper()
	k.version++
	versionDir := fmt.Sprintf("..2026_11_22_00_00_%02d.%d", k.version, k.version)
	must(t, os.Mkdir(filepath.Join(k.dir, versionDir), 0o755))
	for name, content := range files {
		must(t, os.WriteFile(filepath.Join(k.dir, versionDir, name), []byte(content), 0o644))
	}
	old, _ := os.Readlink(filepath.Join(k.dir, "..data"))
	must(t, os.Symlink(versionDir, filepath.Join(k.dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(k.dir, "..data_tmp"), filepath.Join(k.dir, "..data")))
	for name := range files {
		link := filepath.Join(k.dir, name)
		if _, err := os.Lstat(link); err != nil {
			must(t, os.Symlink(filepath.Join("..data", name), link))
		}
	}
	if old != "" {
		must(t, os.RemoveAll(filepath.Join(k.dir, old)))
	}
}

func bcryptHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// fileSetup is a config ConfigMap and a users Secret mounted kubelet-style.
type fileSetup struct {
	configDir, usersDir *kubeletDir
	dataRoot            string
	ports               PortRange
}

func newFileSetup(t *testing.T) *fileSetup {
	return &fileSetup{
		configDir: newKubeletDir(t),
		usersDir:  newKubeletDir(t),
		dataRoot:  filepath.Join(t.TempDir(), "data"),
		ports:     freePortRange(t, 4),
	}
}

// configYAML renders ftpd.yaml with the given extra top-level YAML appended.
func (f *fileSetup) configYAML(extra string) string {
	return fmt.Sprintf(`listen: "127.0.0.1:0"
opsListen: "127.0.0.1:0"
dataRoot: %s
usersFile: %s
passive:
  listenedPorts: "%d-%d"
limits:
  failedLoginDelay: 1ms
  banAfterFailures: 1000
%s`, f.dataRoot, f.usersDir.path("users.yaml"), f.ports.Start, f.ports.End, extra)
}

func usersYAML(t *testing.T, alicePassword string, anonymous bool) string {
	y := fmt.Sprintf(`users:
  - name: alice
    passwordHash: %q
    home: alice
  - name: reader
    passwordHash: %q
    home: alice
    readOnly: true
`, bcryptHash(t, alicePassword), bcryptHash(t, "reader-pw"))
	if anonymous {
		y += "anonymous:\n  enabled: true\n  home: pub\n"
	}
	return y
}

// start loads the files as `ftpd --config` does and runs the server.
func (f *fileSetup) start(t *testing.T) *testServer {
	t.Helper()
	cfg, _, err := LoadConfigFile(f.configDir.path("ftpd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ReloadInterval = 50 * time.Millisecond
	return runServer(t, cfg)
}

// scrape fetches /metrics and returns the samples by "name{labels}".
func scrape(t *testing.T, ts *testServer) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + ts.HealthAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	samples := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad metrics line %q", line)
		}
		samples[line[:i]] = v
	}
	return samples
}

func tryDial(addr, user, pass string) (*ftp.ServerConn, error) {
	c, err := ftp.Dial(addr, ftp.DialWithTimeout(5*time.Second))
	if err != nil {
		return nil, err
	}
	if err := c.Login(user, pass); err != nil {
		_ = c.Quit()
		return nil, err
	}
	return c, nil
}

// TestConfigFileMode: ftpd.yaml plus the users file (bcrypt, homes under dataRoot, a read-only
// user sharing a home, anonymous read-only access as "anonymous" or "ftp").
func TestConfigFileMode(t *testing.T) {
	f := newFileSetup(t)
	f.usersDir.publish(map[string]string{"users.yaml": usersYAML(t, "alice-pw", true)})
	f.configDir.publish(map[string]string{"ftpd.yaml": f.configYAML("")})
	ts := f.start(t)
	writeFile(t, filepath.Join(f.dataRoot, "pub", "readme.txt"), []byte("public"))

	alice := ts.dial(t, "alice", "alice-pw")
	if err := alice.Stor("a.txt", strings.NewReader("from alice")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(f.dataRoot, "alice", "a.txt")); string(got) != "from alice" {
		t.Fatalf("home not under dataRoot: %q", got)
	}
	reader := ts.dial(t, "reader", "reader-pw")
	if got, err := readAll(t, reader, "a.txt"); err != nil || string(got) != "from alice" {
		t.Fatalf("reader: %q, %v", got, err)
	}
	if err := reader.Stor("no.txt", strings.NewReader("x")); err == nil {
		t.Fatal("read-only user could upload")
	}
	for _, name := range []string{"anonymous", "ftp", "FTP"} {
		anon := ts.dial(t, name, "guest@example.com")
		if got, err := readAll(t, anon, "readme.txt"); err != nil || string(got) != "public" {
			t.Fatalf("%s: %q, %v", name, got, err)
		}
		if err := anon.Stor("up.txt", strings.NewReader("x")); err == nil {
			t.Fatalf("%s could upload", name)
		}
	}
	if _, err := tryDial(ts.Addr(), "alice", "wrong"); err == nil {
		t.Fatal("wrong password accepted")
	}
	if !strings.Contains(ts.logs.String(), `"anonymous":true`) {
		t.Error("anonymous login not logged as such")
	}
}

// TestHotReload: users, passive address and a broken users file, published with the kubelet's
// atomic ..data swap while a session stays open.
func TestHotReload(t *testing.T) {
	f := newFileSetup(t)
	f.usersDir.publish(map[string]string{"users.yaml": usersYAML(t, "old-pw", false)})
	f.configDir.publish(map[string]string{"ftpd.yaml": f.configYAML("")})
	ts := f.start(t)

	open := ts.dial(t, "alice", "old-pw")
	if err := open.Stor("before.txt", strings.NewReader("before")); err != nil {
		t.Fatal(err)
	}

	// 1. A new password: new logins use it, the open session keeps working.
	f.usersDir.publish(map[string]string{"users.yaml": usersYAML(t, "new-pw", false)})
	waitFor(t, "the new password", func() bool {
		c, err := tryDial(ts.Addr(), "alice", "new-pw")
		if err == nil {
			_ = c.Quit()
		}
		return err == nil
	})
	if _, err := tryDial(ts.Addr(), "alice", "old-pw"); err == nil {
		t.Fatal("old password still accepted after the reload")
	}
	if err := open.Stor("during.txt", strings.NewReader("during")); err != nil {
		t.Fatalf("open session broken by the reload: %v", err)
	}
	if got, err := readAll(t, open, "before.txt"); err != nil || string(got) != "before" {
		t.Fatalf("open session: %q, %v", got, err)
	}

	// 2. A broken users file is rejected: the previous users stay.
	f.usersDir.publish(map[string]string{"users.yaml": "users:\n  - name: alice\n    passwordHash: plain-text\n    home: alice\n"})
	waitFor(t, "the broken users file to be rejected", func() bool {
		return scrape(t, ts)[`ftpd_config_reloads_total{result="error"}`] == 1
	})
	if c, err := tryDial(ts.Addr(), "alice", "new-pw"); err != nil {
		t.Fatalf("users lost after a broken reload: %v", err)
	} else {
		_ = c.Quit()
	}
	if !strings.Contains(ts.logs.String(), "config reload rejected") || !strings.Contains(ts.logs.String(), "passwordHash") {
		t.Error("the rejected reload is not logged with its cause")
	}

	// 3. A config change: the passive address applies to the next PASV; a restart-only change
	// is reported, not applied.
	f.usersDir.publish(map[string]string{"users.yaml": usersYAML(t, "new-pw", false)})
	f.configDir.publish(map[string]string{"ftpd.yaml": strings.Replace(f.configYAML("drainTimeout: 7s\n"),
		"passive:\n", "passive:\n  address:\n    static: 192.0.2.44\n", 1)})
	waitFor(t, "the new passive address", func() bool {
		rc := dialRaw(t, ts.Addr())
		rc.login("alice", "new-pw")
		host, _ := rc.pasv()
		_ = rc.conn.Close()
		return host == "192.0.2.44"
	})
	if !strings.Contains(ts.logs.String(), "drainTimeout") {
		t.Error("restart-only change not reported")
	}
	if m := scrape(t, ts); m[`ftpd_config_reloads_total{result="ok"}`] < 2 {
		t.Errorf("reloads ok = %v", m[`ftpd_config_reloads_total{result="ok"}`])
	}
	if err := open.NoOp(); err != nil {
		t.Fatalf("open session dropped: %v", err)
	}
}

func TestLoadConfigFileErrors(t *testing.T) {
	f := newFileSetup(t)
	goodUsers := usersYAML(t, "pw", false)
	tests := []struct {
		name, config, users, podIP, want string
	}{
		{"unknown field", f.configYAML("bogus: 1\n"), goodUsers, "", "bogus"},
		{"plain password in the users file", f.configYAML(""), "users:\n  - name: a\n    passwordHash: secret\n    home: a\n", "", "bcrypt"},
		{"home escaping dataRoot", f.configYAML(""), "users:\n  - name: a\n    passwordHash: " + strconv.Quote(bcryptHash(t, "x")) + "\n    home: ../etc\n", "", "'..'"},
		{"usePodIP without POD_IP", strings.Replace(f.configYAML(""), "passive:\n",
			"passive:\n  address:\n    overrides:\n      - cidrs: [10.0.0.0/8]\n        usePodIP: true\n", 1), goodUsers, "", "POD_IP"},
		{"missing users file", strings.Replace(f.configYAML(""), f.usersDir.path("users.yaml"), "/nonexistent/users.yaml", 1), goodUsers, "", "users file"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(PodIPEnv, tt.podIP)
			dir := t.TempDir()
			cfgPath := filepath.Join(dir, "ftpd.yaml")
			cfgText := strings.Replace(tt.config, f.usersDir.path("users.yaml"), filepath.Join(dir, "users.yaml"), 1)
			writeFile(t, cfgPath, []byte(cfgText))
			writeFile(t, filepath.Join(dir, "users.yaml"), []byte(tt.users))
			_, _, err := LoadConfigFile(cfgPath)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("case %d: got %v, want an error containing %q", i, err, tt.want)
			}
		})
	}
	t.Run("usePodIP with POD_IP", func(t *testing.T) {
		t.Setenv(PodIPEnv, "127.0.0.3")
		dir := t.TempDir()
		cfgPath := filepath.Join(dir, "ftpd.yaml")
		writeFile(t, cfgPath, []byte(strings.Replace(strings.Replace(f.configYAML(""), f.usersDir.path("users.yaml"), filepath.Join(dir, "users.yaml"), 1),
			"passive:\n", "passive:\n  address:\n    overrides:\n      - cidrs: [10.0.0.0/8]\n        usePodIP: true\n", 1)))
		writeFile(t, filepath.Join(dir, "users.yaml"), []byte(goodUsers))
		cfg, _, err := LoadConfigFile(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		if o := cfg.PassiveAddress.Overrides; len(o) != 1 || o[0].Address != "127.0.0.3" {
			t.Fatalf("overrides = %+v", o)
		}
	})
}

// servedInputs asks the ops endpoint which config, users and certificate files the daemon serves.
func servedInputs(t *testing.T, ts *testServer) fileconfig.ServedConfig {
	t.Helper()
	resp, err := http.Get("http://" + ts.HealthAddr() + fileconfig.ServedConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var served fileconfig.ServedConfig
	if err := json.NewDecoder(resp.Body).Decode(&served); err != nil {
		t.Fatalf("decode %s: %v", fileconfig.ServedConfigPath, err)
	}
	return served
}

// servedDigest is the digest of the config file the daemon serves.
func servedDigest(t *testing.T, ts *testServer) string { return servedInputs(t, ts).ConfigSHA256 }

// TestServedConfigDigest: the ops endpoint reports the digest of the config file in force, the
// operator's proof that a pod serves the address it rendered. The digest moves only once the new
// config is applied (a PASV right after carries the new address), and a rejected file leaves it
// on the version still in force.
func TestServedConfigDigest(t *testing.T) {
	f := newFileSetup(t)
	f.usersDir.publish(map[string]string{"users.yaml": usersYAML(t, "pw", false)})
	first := f.configYAML("")
	f.configDir.publish(map[string]string{"ftpd.yaml": first})
	ts := f.start(t)
	if got, want := servedDigest(t, ts), fileconfig.ContentDigest([]byte(first)); got != want {
		t.Fatalf("served digest at start = %q, want %q", got, want)
	}

	second := strings.Replace(first, "passive:\n", "passive:\n  address:\n    static: 192.0.2.45\n", 1)
	f.configDir.publish(map[string]string{"ftpd.yaml": second})
	waitFor(t, "the new digest", func() bool { return servedDigest(t, ts) == fileconfig.ContentDigest([]byte(second)) })
	rc := dialRaw(t, ts.Addr())
	rc.login("alice", "pw")
	if host, _ := rc.pasv(); host != "192.0.2.45" {
		t.Fatalf("digest reports the new config but PASV advertises %q", host)
	}
	_ = rc.conn.Close()

	f.configDir.publish(map[string]string{"ftpd.yaml": second + "bogus: 1\n"})
	waitFor(t, "the broken config to be rejected", func() bool {
		return scrape(t, ts)[`ftpd_config_reloads_total{result="error"}`] == 1
	})
	if got := servedDigest(t, ts); got != fileconfig.ContentDigest([]byte(second)) {
		t.Fatalf("after a rejected file the digest is %q, want the version in force", got)
	}
}

// TestServedUsersDigest: the ops endpoint also reports the users file in force, so that the
// operator's Ready after a password change means the new password works: the digest moves only
// once the new users are applied, and a rejected users file leaves it on the version in force.
func TestServedUsersDigest(t *testing.T) {
	f := newFileSetup(t)
	firstUsers := usersYAML(t, "pw", false)
	f.usersDir.publish(map[string]string{"users.yaml": firstUsers})
	f.configDir.publish(map[string]string{"ftpd.yaml": f.configYAML("")})
	ts := f.start(t)
	if got, want := servedInputs(t, ts).UsersSHA256, fileconfig.ContentDigest([]byte(firstUsers)); got != want {
		t.Fatalf("served users digest at start = %q, want %q", got, want)
	}
	if got := servedInputs(t, ts).CertificateSHA256; got != "" {
		t.Fatalf("a daemon without TLS reports certificate digest %q", got)
	}

	secondUsers := usersYAML(t, "new-pw", false)
	f.usersDir.publish(map[string]string{"users.yaml": secondUsers})
	waitFor(t, "the new users digest", func() bool {
		return servedInputs(t, ts).UsersSHA256 == fileconfig.ContentDigest([]byte(secondUsers))
	})
	rc := dialRaw(t, ts.Addr())
	rc.login("alice", "new-pw") // fails the test unless the new password is in force
	_ = rc.conn.Close()

	f.usersDir.publish(map[string]string{"users.yaml": "users: [{name: \"\"}]\n"})
	waitFor(t, "the broken users file to be rejected", func() bool {
		return scrape(t, ts)[`ftpd_config_reloads_total{result="error"}`] == 1
	})
	if got := servedInputs(t, ts).UsersSHA256; got != fileconfig.ContentDigest([]byte(secondUsers)) {
		t.Fatalf("after a rejected users file the digest is %q, want the version in force", got)
	}
}

// TestServedConfigDigestStandalone: a daemon run from flags has no config file to report.
func TestServedConfigDigestStandalone(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.HealthAddr = "127.0.0.1:0" })
	if got := servedDigest(t, ts); got != "" {
		t.Fatalf("standalone daemon reports digest %q", got)
	}
}
