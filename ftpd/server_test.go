package ftpd

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
)

func TestLogin(t *testing.T) {
	ts := startServer(t, nil)
	tests := []struct {
		name, user, pass string
		ok               bool
	}{
		{"plain password", "alice", alicePass, true},
		{"read-only user", "guest", guestPass, true},
		{"bcrypt hash", "bob", bobPass, true},
		{"wrong plain password", "alice", "nope", false},
		{"wrong bcrypt password", "bob", "nope", false},
		{"empty password", "alice", "", false},
		{"unknown user", "mallory", alicePass, false},
		{"password of another user", "alice", guestPass, false},
	}
	var failReplies []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := dialRaw(t, ts.Addr())
			rc.mustCmd(331, "USER %s", tt.user)
			code, text := rc.cmd("PASS %s", tt.pass)
			if tt.ok && code != 230 {
				t.Fatalf("want 230, got %q", text)
			}
			if !tt.ok {
				if code != 530 {
					t.Fatalf("want 530, got %q", text)
				}
				failReplies = append(failReplies, text)
			}
		})
	}
	// Unknown users and wrong passwords must be indistinguishable.
	for _, r := range failReplies {
		if r != failReplies[0] {
			t.Errorf("failure replies differ: %q vs %q", r, failReplies[0])
		}
	}
	if !strings.Contains(ts.logs.String(), `"msg":"login failed"`) || !strings.Contains(ts.logs.String(), `"reason":"unknown_user"`) {
		t.Errorf("login failures not logged:\n%s", ts.logs.String())
	}
}

func TestFileOperations(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.dial(t, "alice", alicePass)
	data := randomBytes(t, 3<<20+123)

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"STOR and RETR with checksum", func(t *testing.T) {
			if err := c.Stor("big.bin", bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			got, err := readAll(t, c, "big.bin")
			if err != nil {
				t.Fatal(err)
			}
			if sum(got) != sum(data) {
				t.Fatalf("checksum mismatch: %d bytes back, want %d", len(got), len(data))
			}
			onDisk, _ := os.ReadFile(filepath.Join(ts.home("alice"), "big.bin"))
			if sum(onDisk) != sum(data) {
				t.Fatal("file on disk differs")
			}
		}},
		{"STOR overwrites", func(t *testing.T) {
			if err := c.Stor("small.txt", strings.NewReader("first version, longer")); err != nil {
				t.Fatal(err)
			}
			if err := c.Stor("small.txt", strings.NewReader("second")); err != nil {
				t.Fatal(err)
			}
			got, err := readAll(t, c, "small.txt")
			if err != nil || string(got) != "second" {
				t.Fatalf("got %q, %v", got, err)
			}
		}},
		{"SIZE", func(t *testing.T) {
			n, err := c.FileSize("big.bin")
			if err != nil || n != int64(len(data)) {
				t.Fatalf("SIZE = %d, %v; want %d", n, err, len(data))
			}
		}},
		{"MKD and LIST", func(t *testing.T) {
			if err := c.MakeDir("sub"); err != nil {
				t.Fatal(err)
			}
			if err := c.Stor("sub/inner.txt", strings.NewReader("inner")); err != nil {
				t.Fatal(err)
			}
			entries, err := c.List("/")
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range entries {
				names = append(names, e.Name)
			}
			sort.Strings(names)
			if strings.Join(names, ",") != "big.bin,small.txt,sub" {
				t.Fatalf("LIST / = %v", names)
			}
			entries, err = c.List("sub")
			if err != nil || len(entries) != 1 || entries[0].Name != "inner.txt" || entries[0].Size != 5 {
				t.Fatalf("LIST sub = %+v, %v", entries, err)
			}
		}},
		{"CWD and relative paths", func(t *testing.T) {
			if err := c.ChangeDir("sub"); err != nil {
				t.Fatal(err)
			}
			got, err := readAll(t, c, "inner.txt")
			if err != nil || string(got) != "inner" {
				t.Fatalf("got %q, %v", got, err)
			}
			if err := c.ChangeDir("/"); err != nil {
				t.Fatal(err)
			}
		}},
		{"RNFR/RNTO", func(t *testing.T) {
			if err := c.Rename("small.txt", "sub/renamed.txt"); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(ts.home("alice"), "sub", "renamed.txt")); err != nil {
				t.Fatal(err)
			}
			if _, err := c.FileSize("small.txt"); err == nil {
				t.Fatal("old name still exists")
			}
		}},
		{"APPE", func(t *testing.T) {
			if err := c.Append("sub/renamed.txt", strings.NewReader("+more")); err != nil {
				t.Fatal(err)
			}
			got, err := readAll(t, c, "sub/renamed.txt")
			if err != nil || string(got) != "second+more" {
				t.Fatalf("got %q, %v", got, err)
			}
		}},
		{"REST and STOR resume", func(t *testing.T) {
			if err := c.StorFrom("sub/renamed.txt", strings.NewReader("X"), 6); err != nil {
				t.Fatal(err)
			}
			got, err := readAll(t, c, "sub/renamed.txt")
			if err != nil || string(got) != "secondXmore" {
				t.Fatalf("got %q, %v", got, err)
			}
		}},
		{"REST and RETR", func(t *testing.T) {
			r, err := c.RetrFrom("big.bin", 1000)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			_ = r.Close()
			if err != nil || !bytes.Equal(got, data[1000:]) {
				t.Fatalf("resumed download differs (%d bytes, %v)", len(got), err)
			}
		}},
		{"DELE refuses directories, RMD refuses files", func(t *testing.T) {
			if err := c.Delete("sub"); err == nil {
				t.Fatal("DELE of a directory succeeded")
			}
			if err := c.RemoveDir("big.bin"); err == nil {
				t.Fatal("RMD of a file succeeded")
			}
		}},
		{"DELE and RMD", func(t *testing.T) {
			for _, f := range []string{"sub/inner.txt", "sub/renamed.txt", "big.bin"} {
				if err := c.Delete(f); err != nil {
					t.Fatalf("DELE %s: %v", f, err)
				}
			}
			if err := c.RemoveDir("sub"); err != nil {
				t.Fatal(err)
			}
			left, _ := os.ReadDir(ts.home("alice"))
			if len(left) != 0 {
				t.Fatalf("home not empty: %v", left)
			}
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			break // later steps build on earlier ones
		}
	}
	logs := ts.logs.String()
	for _, want := range []string{`"msg":"session open"`, `"msg":"login ok"`, `"msg":"transfer"`, `"direction":"upload"`, `"direction":"download"`, `"bytes":3145851`, `"path":"/big.bin"`, `"result":"ok"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s", want)
		}
	}
}

func TestReadOnlyUser(t *testing.T) {
	ts := startServer(t, nil)
	writeFile(t, filepath.Join(ts.home("guest"), "readme.txt"), []byte("hello"))
	writeFile(t, filepath.Join(ts.home("guest"), "dir", "x"), []byte("x"))
	c := ts.dial(t, "guest", guestPass)

	got, err := readAll(t, c, "readme.txt")
	if err != nil || string(got) != "hello" {
		t.Fatalf("read-only user cannot read: %q, %v", got, err)
	}
	if _, err := c.List("/"); err != nil {
		t.Fatal(err)
	}
	refused := []struct {
		name string
		op   func() error
	}{
		{"STOR new", func() error { return c.Stor("new.txt", strings.NewReader("x")) }},
		{"STOR overwrite", func() error { return c.Stor("readme.txt", strings.NewReader("x")) }},
		{"APPE", func() error { return c.Append("readme.txt", strings.NewReader("x")) }},
		{"DELE", func() error { return c.Delete("readme.txt") }},
		{"RNFR/RNTO", func() error { return c.Rename("readme.txt", "moved.txt") }},
		{"MKD", func() error { return c.MakeDir("newdir") }},
		{"RMD", func() error { return c.RemoveDir("dir") }},
	}
	for _, r := range refused {
		t.Run(r.name, func(t *testing.T) {
			if err := r.op(); err == nil {
				t.Fatal("write operation succeeded for a read-only user")
			}
		})
	}
	rc := dialRaw(t, ts.Addr())
	rc.login("guest", guestPass)
	if code, text := rc.cmd("SITE CHMOD 777 readme.txt"); code < 500 {
		t.Errorf("SITE CHMOD: %q", text)
	}
	if code, text := rc.cmd("MFMT 20200101000000 readme.txt"); code < 500 {
		t.Errorf("MFMT: %q", text)
	}
	got, _ = os.ReadFile(filepath.Join(ts.home("guest"), "readme.txt"))
	if string(got) != "hello" {
		t.Fatalf("file changed: %q", got)
	}
	entries, _ := os.ReadDir(ts.home("guest"))
	if len(entries) != 2 {
		t.Fatalf("home changed: %v", entries)
	}
	if fi, _ := os.Stat(filepath.Join(ts.home("guest"), "readme.txt")); fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode changed to %v", fi.Mode())
	}
}

func TestConfinement(t *testing.T) {
	ts := startServer(t, nil)
	outside := filepath.Join(filepath.Dir(ts.root), "outside")
	writeFile(t, filepath.Join(outside, "secret.txt"), []byte("outside secret"))
	writeFile(t, filepath.Join(ts.root, "root-secret.txt"), []byte("root secret"))
	writeFile(t, filepath.Join(ts.home("guest"), "guest.txt"), []byte("guest data"))
	home := ts.home("alice")
	writeFile(t, filepath.Join(home, "mine.txt"), []byte("mine"))
	must(t, os.Symlink(outside, filepath.Join(home, "escape-dir")))
	must(t, os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(home, "escape-file")))
	must(t, os.Symlink("../../outside/secret.txt", filepath.Join(home, "escape-relative")))
	must(t, os.Symlink(filepath.Join(outside, "missing.txt"), filepath.Join(home, "dangling")))
	must(t, os.Symlink("mine.txt", filepath.Join(home, "inside-link")))
	c := ts.dial(t, "alice", alicePass)

	reads := []struct {
		path string
		want string // "" means the read must fail
	}{
		{"../root-secret.txt", ""},
		{"../guest/guest.txt", ""},
		{"../../outside/secret.txt", ""},
		{"/../../outside/secret.txt", ""},
		{"/etc/passwd", ""},
		{outside + "/secret.txt", ""},
		{"escape-file", ""},
		{"escape-relative", ""},
		{"escape-dir/secret.txt", ""},
		{"dangling", ""},
		{"inside-link", "mine"},
		{"/../mine.txt", "mine"},
		{"sub/../../mine.txt", "mine"},
	}
	for _, r := range reads {
		t.Run("RETR "+r.path, func(t *testing.T) {
			got, err := readAll(t, c, r.path)
			if r.want == "" {
				if err == nil {
					t.Fatalf("read %q outside the home: %q", r.path, got)
				}
				return
			}
			if err != nil || string(got) != r.want {
				t.Fatalf("got %q, %v; want %q", got, err, r.want)
			}
		})
	}
	t.Run("CWD through an escaping symlink", func(t *testing.T) {
		if err := c.ChangeDir("escape-dir"); err == nil {
			t.Fatal("CWD into a symlink pointing outside succeeded")
		}
		if err := c.ChangeDir(".."); err != nil {
			t.Fatal(err)
		}
		if dir, _ := c.CurrentDir(); dir != "/" {
			t.Fatalf("CWD .. from / went to %q", dir)
		}
	})
	t.Run("LIST through an escaping symlink", func(t *testing.T) {
		if entries, err := c.List("escape-dir"); err == nil && len(entries) > 0 {
			t.Fatalf("listed outside: %+v", entries)
		}
	})
	t.Run("SIZE through an escaping symlink", func(t *testing.T) {
		if _, err := c.FileSize("escape-file"); err == nil {
			t.Fatal("SIZE of a file outside succeeded")
		}
	})
	writes := []struct {
		name string
		op   func() error
	}{
		{"STOR through a symlinked dir", func() error { return c.Stor("escape-dir/planted.txt", strings.NewReader("x")) }},
		{"STOR over a symlink to a file outside", func() error { return c.Stor("escape-file", strings.NewReader("x")) }},
		{"STOR through a dangling symlink", func() error { return c.Stor("dangling", strings.NewReader("x")) }},
		{"APPE to a symlink to a file outside", func() error { return c.Append("escape-file", strings.NewReader("x")) }},
		{"MKD through a symlinked dir", func() error { return c.MakeDir("escape-dir/newdir") }},
		{"DELE through a symlinked dir", func() error { return c.Delete("escape-dir/secret.txt") }},
		{"RNTO into a symlinked dir", func() error { return c.Rename("mine.txt", "escape-dir/stolen.txt") }},
		{"RNFR from a symlinked dir", func() error { return c.Rename("escape-dir/secret.txt", "got.txt") }},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			if err := w.op(); err == nil {
				t.Fatal("operation outside the home succeeded")
			}
		})
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 1 {
		t.Fatalf("outside directory changed: %v", entries)
	}
	if got, _ := os.ReadFile(filepath.Join(outside, "secret.txt")); string(got) != "outside secret" {
		t.Fatalf("outside file changed: %q", got)
	}
	if _, err := os.Stat(filepath.Join(outside, "missing.txt")); err == nil {
		t.Fatal("file created through a dangling symlink")
	}
	t.Run("DELE of an escaping symlink removes only the link", func(t *testing.T) {
		if err := c.Delete("escape-file"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(outside, "secret.txt")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("absolute path maps into the home", func(t *testing.T) {
		if err := c.Stor("/abs.txt", strings.NewReader("abs")); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(home, "abs.txt")); string(got) != "abs" {
			t.Fatalf("got %q", got)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestInterruptedUpload drops the data connection with a TCP reset in the middle of a STOR over an
// existing file: the old file must stay intact and no temporary file may remain.
func TestInterruptedUpload(t *testing.T) {
	ts := startServer(t, nil)
	target := filepath.Join(ts.home("alice"), "keep.bin")
	old := randomBytes(t, 100_000)
	writeFile(t, target, old)

	for _, mode := range []string{"reset", "abort"} {
		t.Run(mode, func(t *testing.T) {
			rc := dialRaw(t, ts.Addr())
			rc.login("alice", alicePass)
			data := rc.epsv()
			rc.mustCmd(150, "STOR keep.bin")
			if _, err := data.Write(randomBytes(t, 50_000)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "a temporary upload file", func() bool { return len(tempFiles(t, ts.home("alice"))) == 1 })
			switch mode {
			case "reset":
				must(t, data.SetLinger(0)) // Close sends RST: an interrupted transfer, not an EOF
				_ = data.Close()
				code, text := rc.read()
				if code < 400 {
					t.Fatalf("interrupted upload reported as success: %q", text)
				}
			case "abort":
				defer data.Close()
				if _, err := rc.conn.Write([]byte("ABOR\r\n")); err != nil {
					t.Fatal(err)
				}
				// ABOR gets 426 (transfer aborted) and/or 226 (ABOR successful).
				for {
					code, text := rc.read()
					if code != 426 && code != 225 && code != 226 {
						t.Fatalf("unexpected reply to ABOR: %q", text)
					}
					if code != 426 {
						break
					}
				}
			}
			waitFor(t, "the transfer to end", func() bool { return ts.activeTransfers() == 0 })
			got, err := os.ReadFile(target)
			if err != nil || !bytes.Equal(got, old) {
				t.Fatalf("old file damaged: %d bytes, %v", len(got), err)
			}
			if left := tempFiles(t, ts.home("alice")); len(left) != 0 {
				t.Fatalf("temporary files left: %v", left)
			}
		})
	}
	if !strings.Contains(ts.logs.String(), `"result":"aborted"`) {
		t.Error("aborted transfer not logged as aborted")
	}
}

// TestPASVReply checks the address in the raw 227 reply.
func TestPASVReply(t *testing.T) {
	ports := freePortRange(t, 4)
	tests := []struct {
		name, publicHost, want string
	}{
		// 192.0.2.10 is a documentation address: only written in the reply, never connected to.
		{"configured public host", "192.0.2.10", "192,0,2,10,"},
		{"control connection address", "", "127,0,0,1,"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, func(c *Config) { c.PublicHost = tt.publicHost; c.PassivePorts = ports })
			rc := dialRaw(t, ts.Addr())
			rc.login("alice", alicePass)
			text := rc.mustCmd(227, "PASV")
			if !strings.Contains(text, "("+tt.want) {
				t.Fatalf("227 reply %q does not carry %s", text, tt.want)
			}
			var h1, h2, h3, h4, p1, p2 int
			i := strings.Index(text, "(")
			if _, err := fmt.Sscanf(text[i:], "(%d,%d,%d,%d,%d,%d)", &h1, &h2, &h3, &h4, &p1, &p2); err != nil {
				t.Fatalf("cannot parse %q: %v", text, err)
			}
			if port := p1*256 + p2; port < ports.Start || port > ports.End {
				t.Fatalf("PASV port %d outside %v", port, ports)
			}
		})
	}
}

// TestPASVStrictClient transfers with Python's ftplib told to trust the PASV address as given.
func TestPASVStrictClient(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not available: skipping the strict PASV client test")
	}
	ports := freePortRange(t, 4)
	ts := startServer(t, func(c *Config) { c.PublicHost = "127.0.0.1"; c.PassivePorts = ports })
	payload := randomBytes(t, 200_000)
	writeFile(t, filepath.Join(ts.home("alice"), "dl.bin"), payload)
	host, port, _ := strings.Cut(ts.Addr(), ":")
	script := `
import ftplib, hashlib, io, sys
host, port, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
f = ftplib.FTP()
f.trust_server_pasv_ipv4_address = True
f.connect(host, port, timeout=10)
f.login(user, pw)
f.set_pasv(True)
print("PASV", f.sendcmd("PASV"))
buf = io.BytesIO()
f.retrbinary("RETR dl.bin", buf.write)
print("SHA", hashlib.sha256(buf.getvalue()).hexdigest())
f.storbinary("STOR up.bin", io.BytesIO(buf.getvalue()))
f.quit()
`
	out, err := exec.Command(py, "-c", script, host, port, "alice", alicePass).CombinedOutput()
	if err != nil {
		t.Fatalf("python ftplib: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "SHA "+sum(payload)) {
		t.Fatalf("wrong download through PASV:\n%s", out)
	}
	if !strings.Contains(string(out), "(127,0,0,1,") {
		t.Fatalf("PASV reply lacks the public host:\n%s", out)
	}
	up, _ := os.ReadFile(filepath.Join(ts.home("alice"), "up.bin"))
	if sum(up) != sum(payload) {
		t.Fatal("upload through PASV differs")
	}
}

func TestActiveModeDisabled(t *testing.T) {
	ts := startServer(t, nil)
	rc := dialRaw(t, ts.Addr())
	rc.login("alice", alicePass)
	if code, text := rc.cmd("PORT 127,0,0,1,200,10"); code < 400 {
		t.Fatalf("PORT accepted: %q", text)
	}
	if code, text := rc.cmd("EPRT |1|127.0.0.1|51210|"); code < 400 {
		t.Fatalf("EPRT accepted: %q", text)
	}
}

// TestDrain stops the server during an upload: readiness turns false, the upload completes and
// the file is whole, and Serve returns nil.
func TestDrain(t *testing.T) {
	ports := freePortRange(t, 4) // passive-port multiplexing on during the drain
	ts := startServer(t, func(c *Config) { c.HealthAddr = "127.0.0.1:0"; c.PassivePorts = ports })
	health := "http://" + ts.HealthAddr()
	status := func(p string) int {
		resp, err := http.Get(health + p)
		if err != nil {
			return -1
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if s := status("/readyz"); s != 200 {
		t.Fatalf("/readyz = %d before drain", s)
	}
	if s := status("/healthz"); s != 200 {
		t.Fatalf("/healthz = %d", s)
	}

	rc := dialRaw(t, ts.Addr())
	rc.login("alice", alicePass)
	data := rc.epsv()
	rc.mustCmd(150, "STOR drained.bin")
	payload := randomBytes(t, 1<<20)
	half := len(payload) / 2
	if _, err := data.Write(payload[:half]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the transfer to start", func() bool { return ts.activeTransfers() == 1 })

	stopped := make(chan error, 1)
	go func() { stopped <- ts.stop() }()
	waitFor(t, "readiness to turn false", func() bool { return !ts.Ready() })
	if s := status("/readyz"); s != 503 && s != -1 {
		t.Fatalf("/readyz = %d while draining", s)
	}
	// New sessions are refused while the transfer continues.
	if conn, err := net.DialTimeout("tcp", ts.Addr(), time.Second); err == nil {
		_ = conn.Close()
		t.Fatal("new connection accepted while draining")
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := data.Write(payload[half:]); err != nil {
		t.Fatal(err)
	}
	_ = data.Close()
	rc.expect(226)
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop after the transfer")
	}
	got, _ := os.ReadFile(filepath.Join(ts.home("alice"), "drained.bin"))
	if sum(got) != sum(payload) {
		t.Fatalf("drained upload incomplete: %d bytes", len(got))
	}
}

// TestDrainTimeout checks that a stalled transfer does not block shutdown beyond the timeout.
// TestShutdownDelay: after a shutdown request the server reports not ready at once but keeps
// serving new sessions for ShutdownDelay (the time kube-proxy takes to stop sending it new
// connections), then drains and refuses them; with no delay it refuses them at once.
func TestShutdownDelay(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay time.Duration
	}{{"delay", 1500 * time.Millisecond}, {"none", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, func(c *Config) { c.HealthAddr = "127.0.0.1:0"; c.ShutdownDelay = tc.delay })
			writeFile(t, filepath.Join(ts.home("alice"), "f.txt"), []byte("still served"))
			stopped := make(chan error, 1)
			requested := time.Now()
			go func() { stopped <- ts.stop() }()
			waitFor(t, "readiness to turn false", func() bool { return !ts.Ready() })
			c, err := ftp.Dial(ts.Addr(), ftp.DialWithTimeout(time.Second))
			if tc.delay == 0 {
				if err == nil {
					_ = c.Quit()
					t.Fatal("a new session was accepted after the shutdown request, with no delay")
				}
				return
			}
			if err != nil {
				t.Fatalf("a new session %v after the shutdown request was refused: %v", time.Since(requested), err)
			}
			if err := c.Login("alice", alicePass); err != nil {
				t.Fatal(err)
			}
			r, err := c.Retr("f.txt")
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(r)
			_ = r.Close()
			if string(got) != "still served" {
				t.Fatalf("got %q", got)
			}
			_ = c.Quit()
			select {
			case err := <-stopped:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the server did not stop after its delay")
			}
			if took := time.Since(requested); took < tc.delay {
				t.Fatalf("stopped %v after the request, before the %v delay", took, tc.delay)
			}
			if conn, err := net.DialTimeout("tcp", ts.Addr(), time.Second); err == nil {
				_ = conn.Close()
				t.Fatal("a connection was accepted after the server stopped")
			}
			if !strings.Contains(ts.logs.String(), "still accepting sessions") {
				t.Fatal("the delay is not logged")
			}
		})
	}
}

// TestDrainServesLateSessions: a session accepted during the shutdown delay gets its first
// transfer even when the drain begins between its PASV and its RETR, and the drain waits for it
// (at most lateSessionGrace, bounded by the drain timeout); a session from before the shutdown
// request that starts a transfer during the drain gets 421 and is closed, so that its client
// reconnects to a replica that serves, instead of a 550 that blames the file.
func TestDrainServesLateSessions(t *testing.T) {
	const content = "served after the drain began"
	stopping := func(t *testing.T, ts *testServer) (stopped chan error, requested time.Time) {
		t.Helper()
		stopped = make(chan error, 1)
		requested = time.Now()
		go func() { stopped <- ts.stop() }()
		// Ready turns false after the request is noted: sessions accepted from now on are late.
		waitFor(t, "readiness to turn false", func() bool { return !ts.Ready() })
		return stopped, requested
	}
	draining := func(t *testing.T, ts *testServer) {
		t.Helper()
		waitFor(t, "the drain to begin", func() bool { return strings.Contains(ts.logs.String(), `"msg":"draining"`) })
	}
	stopsWithin := func(t *testing.T, stopped chan error, requested time.Time, within time.Duration) {
		t.Helper()
		select {
		case err := <-stopped:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(within):
			t.Fatalf("the server did not stop within %v of the request", within)
		}
		t.Logf("stopped %v after the request", time.Since(requested).Round(time.Millisecond))
	}
	for _, tc := range []struct {
		name string
		cfg  func(*Config)
		run  func(t *testing.T, ts *testServer)
	}{{
		name: "a late session's RETR after the drain began is served",
		cfg:  func(c *Config) { c.ShutdownDelay = 500 * time.Millisecond },
		run: func(t *testing.T, ts *testServer) {
			stopped, requested := stopping(t, ts)
			rc := dialRaw(t, ts.Addr())
			rc.login("alice", alicePass)
			data := rc.epsv()
			draining(t, ts)
			rc.mustCmd(150, "RETR f.txt")
			got, err := io.ReadAll(data)
			if err != nil || string(got) != content {
				t.Fatalf("RETR during the drain read %q, %v", got, err)
			}
			rc.expect(226)
			// The transfer done, nothing is left to wait for.
			stopsWithin(t, stopped, requested, 5*time.Second)
		},
	}, {
		name: "a late session that quits does not hold the drain",
		cfg:  func(c *Config) { c.ShutdownDelay = 500 * time.Millisecond },
		run: func(t *testing.T, ts *testServer) {
			stopped, requested := stopping(t, ts)
			rc := dialRaw(t, ts.Addr())
			rc.login("alice", alicePass)
			draining(t, ts)
			select {
			case err := <-stopped:
				t.Fatalf("the drain did not wait for the late session (Serve: %v)", err)
			case <-time.After(300 * time.Millisecond):
			}
			rc.mustCmd(221, "QUIT")
			stopsWithin(t, stopped, requested, 3*time.Second)
		},
	}, {
		name: "a late session that sits idle is given up at the grace, half the drain timeout at most",
		cfg:  func(c *Config) { c.ShutdownDelay = 300 * time.Millisecond; c.DrainTimeout = 700 * time.Millisecond },
		run: func(t *testing.T, ts *testServer) {
			stopped, requested := stopping(t, ts)
			rc := dialRaw(t, ts.Addr())
			rc.login("alice", alicePass)
			stopsWithin(t, stopped, requested, 5*time.Second)
			logs := ts.logs.String()
			if !strings.Contains(logs, "late sessions did not start a transfer in time") || strings.Contains(logs, "drain timeout reached") {
				t.Fatal("the late session was not given up before the drain timeout")
			}
			rc.expectClosed(3 * time.Second)
		},
	}, {
		name: "an earlier session's transfer during the drain gets 421 and the session is closed",
		cfg:  func(c *Config) {},
		run: func(t *testing.T, ts *testServer) {
			early := dialRaw(t, ts.Addr())
			early.login("alice", alicePass)
			// A running upload keeps the drain going.
			up := dialRaw(t, ts.Addr())
			up.login("alice", alicePass)
			upData := up.epsv()
			up.mustCmd(150, "STOR held.bin")
			waitFor(t, "the upload to start", func() bool { return ts.activeTransfers() == 1 })
			stopped, requested := stopping(t, ts)
			draining(t, ts)
			earlyData := early.epsv()
			defer earlyData.Close()
			code, text := early.cmd("RETR f.txt")
			if code != 421 || !strings.Contains(text, "shutting down") {
				t.Fatalf("RETR during the drain: %q, want 421 server is shutting down", text)
			}
			early.expectClosed(3 * time.Second)
			if _, err := upData.Write([]byte("whole")); err != nil {
				t.Fatal(err)
			}
			_ = upData.Close()
			up.expect(226)
			stopsWithin(t, stopped, requested, 5*time.Second)
			if got, _ := os.ReadFile(filepath.Join(ts.home("alice"), "held.bin")); string(got) != "whole" {
				t.Fatalf("the upload that held the drain stored %q", got)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, func(c *Config) { c.HealthAddr = "127.0.0.1:0"; tc.cfg(c) })
			writeFile(t, filepath.Join(ts.home("alice"), "f.txt"), []byte(content))
			tc.run(t, ts)
		})
	}
}

// TestDrainTimeout: a transfer still running at the drain timeout is cut and leaves the old
// file; a drain timeout of 0 cuts it at once instead of falling back to a default.
func TestDrainTimeout(t *testing.T) {
	for _, drain := range []time.Duration{0, 300 * time.Millisecond} {
		t.Run(drain.String(), func(t *testing.T) {
			ts := startServer(t, func(c *Config) { c.DrainTimeout = drain })
			target := filepath.Join(ts.home("alice"), "stalled.bin")
			writeFile(t, target, []byte("old"))
			rc := dialRaw(t, ts.Addr())
			rc.login("alice", alicePass)
			data := rc.epsv()
			defer data.Close()
			rc.mustCmd(150, "STOR stalled.bin")
			_, _ = data.Write([]byte("partial"))
			waitFor(t, "the transfer to start", func() bool { return ts.activeTransfers() == 1 })
			start := time.Now()
			if err := ts.stop(); err != nil {
				t.Fatal(err)
			}
			// The drain timeout, plus the 2 s the daemon gives sessions to log their close.
			if d := time.Since(start); d > drain+3*time.Second {
				t.Fatalf("stop took %v with drain timeout %v", d, drain)
			}
			if !strings.Contains(ts.logs.String(), "drain timeout reached") {
				t.Fatal("the transfer was not cut by the drain timeout")
			}
			waitFor(t, "the transfer to end", func() bool { return ts.activeTransfers() == 0 })
			if got, _ := os.ReadFile(target); string(got) != "old" {
				t.Fatalf("stalled upload replaced the file: %q", got)
			}
		})
	}
}

func TestNewServerErrors(t *testing.T) {
	root := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no users", Config{Root: root}, "no users"},
		{"no root", Config{Users: []User{{Name: "a", Password: "b"}}}, "root"},
		{"duplicate user", Config{Root: root, Users: []User{{Name: "a", Password: "b"}, {Name: "a", Password: "c"}}}, "twice"},
		{"bad public host", Config{Root: root, PublicHost: "ftp.example.com", Users: []User{{Name: "a", Password: "b"}}}, "public host"},
		{"IPv6 public host", Config{Root: root, PublicHost: "2001:db8::1", Users: []User{{Name: "a", Password: "b"}}}, "IPv4"},
		{"bad bcrypt hash", Config{Root: root, Users: []User{{Name: "a", Password: "$2a$10$short"}}}, "bcrypt"},
		{"bad listen address", Config{Root: root, ListenAddr: "nowhere", Users: []User{{Name: "a", Password: "b"}}}, "listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewServer(tt.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	t.Run("homes are created", func(t *testing.T) {
		r := filepath.Join(t.TempDir(), "new-root")
		if _, err := NewServer(Config{Root: r, Users: []User{{Name: "carol", Password: "x"}}}, nil); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(filepath.Join(r, "carol")); err != nil || !fi.IsDir() {
			t.Fatalf("home not created: %v", err)
		}
	})
}

// TestRestartOffsets: REST values that would make the server seek before the start or past the
// end are refused with replies that name no real path, create no file and never grow a sparse
// file; valid resumes still work.
func TestRestartOffsets(t *testing.T) {
	ts := startServer(t, nil)
	home := ts.home("alice")
	tests := []struct {
		name     string
		rest     string
		cmd      string
		wantCode int    // reply to the transfer command
		file     string // content of existing.txt afterwards
		missing  bool   // new.txt must not exist afterwards
	}{
		{"negative offset before RETR", "-1", "RETR existing.txt", 550, "hello", true},
		{"negative offset before STOR", "-1", "STOR existing.txt", 550, "hello", true},
		{"huge offset before STOR of a new file", "9223372036854775807", "STOR new.txt", 550, "hello", true},
		{"offset past the end before STOR", "1000000000", "STOR existing.txt", 550, "hello", true},
		{"offset past the end of a missing file", "1", "STOR new.txt", 550, "hello", true},
		{"offset at the end appends", "5", "STOR existing.txt", 150, "hello world", true},
		{"offset inside overwrites in place", "1", "STOR existing.txt", 150, "h world", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeFile(t, filepath.Join(home, "existing.txt"), []byte("hello"))
			_ = os.Remove(filepath.Join(home, "new.txt"))
			rc := dialRaw(t, ts.Addr())
			rc.login("alice", alicePass)
			data := rc.epsv()
			defer data.Close()
			rc.mustCmd(350, "REST %s", tt.rest)
			code, text := rc.cmd("%s", tt.cmd)
			if code != tt.wantCode {
				t.Fatalf("%s: got %q, want %d", tt.cmd, text, tt.wantCode)
			}
			if strings.Contains(text, ts.root) || strings.Contains(text, os.TempDir()) {
				t.Fatalf("reply names a real path: %q", text)
			}
			if code == 150 {
				_, _ = data.Write([]byte(" world"))
				_ = data.Close()
				rc.expect(226)
			}
			if got, _ := os.ReadFile(filepath.Join(home, "existing.txt")); string(got) != tt.file {
				t.Fatalf("existing.txt holds %q, want %q", got, tt.file)
			}
			if _, err := os.Stat(filepath.Join(home, "new.txt")); tt.missing && err == nil {
				t.Fatal("a refused resume created new.txt")
			}
		})
	}
}

// TestReservedNames: names starting with the upload temporary prefix cannot be created, renamed
// to or read by clients (553 where FTP has it), so no client can hide a file from listings.
func TestReservedNames(t *testing.T) {
	ts := startServer(t, nil)
	home := ts.home("alice")
	writeFile(t, filepath.Join(home, "visible.txt"), []byte("visible"))
	writeFile(t, filepath.Join(home, tempPrefix+"planted"), []byte("in progress"))
	must(t, os.MkdirAll(filepath.Join(home, "sub"), 0o755))
	rc := dialRaw(t, ts.Addr())
	rc.login("alice", alicePass)
	tests := []struct {
		name  string
		cmds  []string
		codes []int
	}{
		{"STOR", []string{"STOR .ftpd-upload-hidden"}, []int{553}},
		{"STOR in a subdirectory", []string{"STOR sub/.ftpd-upload-hidden"}, []int{553}},
		{"APPE", []string{"APPE .ftpd-upload-appended"}, []int{553}},
		{"RNTO", []string{"RNFR visible.txt", "RNTO .ftpd-upload-renamed"}, []int{350, 553}},
		{"MKD", []string{"MKD .ftpd-upload-dir"}, []int{550}},
		{"STOR below a reserved directory name", []string{"STOR .ftpd-upload-dir/x"}, []int{553}},
		{"RETR of an upload in progress", []string{"RETR " + tempPrefix + "planted"}, []int{553}},
		{"DELE of an upload in progress", []string{"DELE " + tempPrefix + "planted"}, []int{550}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, cmd := range tt.cmds {
				code, text := rc.cmd("%s", cmd)
				if code != tt.codes[i] {
					t.Fatalf("%s: got %q, want %d", cmd, text, tt.codes[i])
				}
				if code >= 500 && !strings.Contains(text, "reserved") {
					t.Errorf("%s: reply %q does not say the name is reserved", cmd, text)
				}
			}
		})
	}
	entries, _ := os.ReadDir(home)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != tempPrefix+"planted,sub,visible.txt" {
		t.Fatalf("home holds %v", names)
	}
	if got, _ := os.ReadFile(filepath.Join(home, tempPrefix+"planted")); string(got) != "in progress" {
		t.Fatalf("the upload in progress changed: %q", got)
	}
}

// TestStaleUploadsRemovedAtStart: temporaries left by a daemon killed during uploads are removed
// when the next one starts; other files, and temporaries newer than the start, stay.
func TestStaleUploadsRemovedAtStart(t *testing.T) {
	var stale []string
	var keep []string
	ts := startServer(t, func(c *Config) {
		old := time.Now().Add(-time.Hour)
		for _, p := range []string{"alice/" + tempPrefix + "111", "alice/deep/dir/" + tempPrefix + "222", "bob/" + tempPrefix + "333"} {
			full := filepath.Join(c.Root, p)
			writeFile(t, full, []byte("partial"))
			must(t, os.Chtimes(full, old, old))
			stale = append(stale, full)
		}
		for _, p := range []string{"alice/deep/dir/kept.txt", "alice/" + tempPrefix + "future"} {
			full := filepath.Join(c.Root, p)
			writeFile(t, full, []byte("kept"))
			future := time.Now().Add(time.Hour)
			must(t, os.Chtimes(full, future, future))
			keep = append(keep, full)
		}
	})
	waitFor(t, "stale uploads to be removed", func() bool {
		for _, p := range stale {
			if _, err := os.Stat(p); err == nil {
				return false
			}
		}
		return true
	})
	for _, p := range keep {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", p, err)
		}
	}
	waitFor(t, "the removal to be logged", func() bool { return strings.Contains(ts.logs.String(), `"msg":"stale upload files removed","files":3`) })
}

// TestSiteArguments: SITE subcommands with a missing or empty path get 501 (ftpserverlib
// panicked on SITE CHMOD without a path, and took an empty one as the current directory).
func TestSiteArguments(t *testing.T) {
	ts := startServer(t, nil)
	writeFile(t, filepath.Join(ts.home("alice"), "f.txt"), []byte("f"))
	rc := dialRaw(t, ts.Addr())
	rc.login("alice", alicePass)
	tests := []struct {
		cmd  string
		want int
	}{
		{"SITE CHMOD", 501},
		{"SITE CHMOD 700", 501},
		{"SITE CHMOD 700 ", 501},
		{"SITE chmod 700", 501},
		{"SITE RMDIR", 501},
		{"SITE MKDIR ", 501},
		{"SITE CHMOD 600 f.txt", 200},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			if code, text := rc.cmd("%s", tt.cmd); code != tt.want {
				t.Fatalf("got %q, want %d", text, tt.want)
			}
		})
	}
	if fi, err := os.Stat(ts.home("alice")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("home mode changed: %v, %v", fi.Mode(), err)
	}
	if fi, _ := os.Stat(filepath.Join(ts.home("alice"), "f.txt")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("SITE CHMOD with a path did not apply: %v", fi.Mode())
	}
	if strings.Contains(ts.logs.String(), "Internal command handling error") {
		t.Fatal("a SITE command panicked in ftpserverlib")
	}
}

// TestStalledDataConnection: a data connection that stops moving bytes in the middle of a
// transfer ends the transfer after the data timeout, although the idle timeout does not apply
// while a transfer runs: the session is then dropped by the idle timeout and frees its slot, an
// interrupted atomic upload leaves the old file intact and no temporary file, and a drain does
// not wait for the drain timeout. Each case runs on the zero-copy paths (sendfile, splice) and
// on the buffered one.
func TestStalledDataConnection(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 4<<20) // 64 MiB: more than socket buffers hold
	tests := []struct {
		name  string
		drain bool // stop the server while the transfer is stalled
		retr  bool // a download whose client stops reading
	}{
		{"stalled upload", false, false},
		{"stalled download", false, true},
		{"drain during a stalled upload", true, false},
	}
	for _, tt := range tests {
		for _, path := range []CopyPath{CopyAuto, CopyBuffered} {
			t.Run(tt.name+", "+string(path), func(t *testing.T) {
				t.Parallel()
				ts := startServer(t, func(c *Config) {
					c.IdleTimeout = 2 * time.Second
					c.Limits.DataTimeout = time.Second
					c.Limits.MaxSessionsPerIP = 1
					c.DrainTimeout = 30 * time.Second
					c.DownloadCopy, c.UploadCopy = path, path
				})
				old := randomBytes(t, 10_000)
				target := filepath.Join(ts.home("alice"), "keep.bin")
				writeFile(t, target, old)
				if tt.retr {
					writeFile(t, filepath.Join(ts.home("alice"), "big.bin"), big)
				}
				rc := dialRaw(t, ts.Addr())
				rc.login("alice", alicePass)
				data := rc.epsv()
				defer data.Close()
				if tt.retr {
					rc.mustCmd(150, "RETR big.bin")
				} else {
					rc.mustCmd(150, "STOR keep.bin")
					if _, err := data.Write([]byte("0123456789")); err != nil {
						t.Fatal(err)
					}
				}
				start := time.Now()
				if tt.drain {
					waitFor(t, "the upload to start", func() bool { return ts.activeTransfers() == 1 })
					if err := ts.stop(); err != nil {
						t.Fatal(err)
					}
					if d := time.Since(start); d > 10*time.Second {
						t.Fatalf("drain took %v with a stalled upload (data timeout 1s)", d)
					}
				} else {
					code, text := rc.read()
					if code < 400 {
						t.Fatalf("stalled transfer reported as %q", text)
					}
					if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
						t.Fatalf("stalled transfer ended after %v, want about the 1s data timeout", d)
					}
					if !tt.retr && !strings.Contains(text, "no data moved on the data connection for 1s") {
						t.Errorf("reply %q does not explain the data timeout", text)
					}
					// Now idle, the session is dropped by the idle timeout and frees its slot.
					rc.expect(421)
					rc.expectClosed(5 * time.Second)
					waitFor(t, "the session slot to be freed", func() bool {
						next := dialRawFrom(t, ts.Addr(), "127.0.0.1")
						code, _ := next.read()
						_ = next.conn.Close()
						return code == 220
					})
				}
				if got, _ := os.ReadFile(target); sum(got) != sum(old) {
					t.Fatal("the stalled upload changed the old file")
				}
				if left := tempFiles(t, ts.home("alice")); len(left) != 0 {
					t.Fatalf("temporary files left: %v", left)
				}
				// The stall was met on the path under test.
				direction, want := "upload", CopySplice
				if tt.retr {
					direction, want = "download", CopySendfile
				}
				if path == CopyBuffered {
					want = CopyBuffered
				}
				if copiedBytes(t, ts, direction, want) == 0 {
					t.Errorf("no %s bytes moved by %s", direction, want)
				}
			})
		}
	}
}
