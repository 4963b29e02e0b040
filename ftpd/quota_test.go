package ftpd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
)

// mountSmallVolume mounts a tmpfs of the given size (a volume that fills up for real) and
// unmounts it when the test ends. It needs root: without, the test is skipped, or fails when
// $CI is set.
func mountSmallVolume(t *testing.T, size string) string {
	t.Helper()
	unmet := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") != "" {
			t.Fatalf("full-volume test cannot run and CI is set: %s", msg)
		}
		t.Skipf("skipping full-volume test: %s (set CI=1 to make this a failure)", msg)
	}
	if os.Geteuid() != 0 {
		unmet("needs root to mount a small tmpfs (run `sudo go test -run TestFullVolume ./ftpd`)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0755", "ftpd-test-full", dir).CombinedOutput(); err != nil {
		unmet("mount tmpfs: %v: %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		// The server is stopped by an earlier cleanup (cleanups run last-in first-out).
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// storRaw uploads data over a passive data connection and returns the final reply. The server
// may close the data connection before all of data is sent (it stops reading on an error).
func (rc *rawConn) storRaw(cmd, name string, data []byte) (int, string) {
	rc.t.Helper()
	conn := rc.epsv()
	code, text := rc.cmd("%s %s", cmd, name)
	if code != 150 {
		_ = conn.Close()
		return code, text
	}
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, _ = conn.Write(data) // an error here is the server refusing the rest
	_ = conn.Close()
	return rc.read()
}

// TestFullVolume fills a real (tmpfs) volume: an upload that does not fit gets 452, the file it
// would have replaced keeps its previous content, the temporary is gone, the reply names no
// real path, the other users' sessions keep working, and uploads work again once space is
// freed. APPE, which writes in place, keeps what fitted and gets 452 too.
func TestFullVolume(t *testing.T) {
	volume := mountSmallVolume(t, "1m")
	ts := startServer(t, func(c *Config) { c.Root = filepath.Join(volume, "root") })
	previous := randomBytes(t, 100_000)
	writeFile(t, filepath.Join(ts.home("alice"), "report.csv"), previous)
	writeFile(t, filepath.Join(ts.home("bob"), "bob.txt"), []byte("bob's file"))

	bob := ts.dial(t, "bob", bobPass) // another user, logged in before the volume fills
	alice := dialRaw(t, ts.Addr())
	alice.login("alice", alicePass)

	tooBig := randomBytes(t, 2<<20)
	for _, name := range []string{"report.csv", "new.bin"} {
		code, text := alice.storRaw("STOR", name, tooBig)
		if code != 452 || !strings.Contains(text, "no space left on the server's volume") {
			t.Fatalf("STOR %s on a full volume: %q, want 452 saying the volume is full", name, text)
		}
		if strings.Contains(text, volume) {
			t.Fatalf("the reply names a real path: %q", text)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(ts.home("alice"), "report.csv")); sum(got) != sum(previous) {
		t.Fatal("the previous version of report.csv was not kept")
	}
	if _, err := os.Stat(filepath.Join(ts.home("alice"), "new.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed upload left new.bin: %v", err)
	}
	if left := tempFiles(t, volume); len(left) > 0 {
		t.Fatalf("temporaries left on the full volume: %v", left)
	}
	if !strings.Contains(ts.logs.String(), `"result":"aborted"`) {
		t.Error("the failed uploads are not logged as such")
	}

	// The other user's session, and alice's, still work.
	if got, err := readAll(t, bob, "bob.txt"); err != nil || string(got) != "bob's file" {
		t.Fatalf("bob's download after the volume filled: %q, %v", got, err)
	}
	if _, err := bob.List("/"); err != nil {
		t.Fatalf("bob's listing: %v", err)
	}
	alice.mustCmd(200, "NOOP")
	if code, text := alice.storRaw("STOR", "small.txt", []byte("fits")); code != 226 {
		t.Fatalf("a small upload once the temporaries are gone: %q", text)
	}

	// APPE writes in place: what fitted stays, and the reply says the volume is full.
	code, text := alice.storRaw("APPE", "report.csv", tooBig)
	if code != 452 {
		t.Fatalf("APPE on a full volume: %q, want 452", text)
	}
	got, _ := os.ReadFile(filepath.Join(ts.home("alice"), "report.csv"))
	if !bytes.HasPrefix(got, previous) {
		t.Fatal("APPE on a full volume damaged the existing content")
	}

	// Space freed: the big file goes in where it fits.
	if err := os.Remove(filepath.Join(ts.home("alice"), "report.csv")); err != nil {
		t.Fatal(err)
	}
	if code, text := alice.storRaw("STOR", "report.csv", previous); code != 226 {
		t.Fatalf("upload after space was freed: %q", text)
	}
	if err := bob.NoOp(); err != nil {
		t.Fatalf("bob's session at the end: %v", err)
	}
}

// quotaServer runs the test server with a quota for alice and fast usage walks.
func quotaServer(t *testing.T, q Quota, mutate func(*Config)) *testServer {
	t.Helper()
	return startServer(t, func(c *Config) {
		c.Users[0].Quota = q // alice
		c.HealthAddr = "127.0.0.1:0"
		c.UsageScanInterval = 200 * time.Millisecond
		if mutate != nil {
			mutate(c)
		}
	})
}

// diskUsage sums the regular files under dir, as the daemon counts them.
func diskUsage(t *testing.T, dir string) (bytes, files int64) {
	t.Helper()
	b, f, err := walkUsage(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b, f
}

func usageMetric(t *testing.T, ts *testServer, user string) (bytes, files float64) {
	t.Helper()
	m := scrape(t, ts)
	return m[`ftpd_user_quota_used_bytes{user="`+user+`"}`], m[`ftpd_user_quota_used_files{user="`+user+`"}`]
}

// TestQuotaBytes: uploads beyond a user's byte quota get 552 and leave nothing (no file, no
// temporary); replacing a file needs room for the new one while the old one is kept; DELE gives
// room back; the usage metric follows; changes made on the volume by something else are seen
// at the next walk.
func TestQuotaBytes(t *testing.T) {
	ts := quotaServer(t, Quota{MaxBytes: 100_000}, nil)
	home := ts.home("alice")
	rc := dialRaw(t, ts.Addr())
	rc.login("alice", alicePass)

	if code, text := rc.storRaw("STOR", "a.bin", randomBytes(t, 60_000)); code != 226 {
		t.Fatalf("upload within the quota: %q", text)
	}
	code, text := rc.storRaw("STOR", "b.bin", randomBytes(t, 60_000))
	if code != 552 || !strings.Contains(text, "quota exceeded: alice may store 100000 bytes") {
		t.Fatalf("upload beyond the quota: %q, want 552 naming the quota", text)
	}
	if _, err := os.Stat(filepath.Join(home, "b.bin")); !errors.Is(err, os.ErrNotExist) || len(tempFiles(t, home)) > 0 {
		t.Fatalf("an upload refused by the quota left something: %v, %v", err, tempFiles(t, home))
	}
	if b, f := usageMetric(t, ts, "alice"); b != 60_000 || f != 1 {
		t.Fatalf("usage metric %v bytes, %v files; want 60000, 1", b, f)
	}
	if m := scrape(t, ts); m[`ftpd_user_quota_limit_bytes{user="alice"}`] != 100_000 {
		t.Errorf("limit metric = %v", m[`ftpd_user_quota_limit_bytes{user="alice"}`])
	}
	if _, ok := scrape(t, ts)[`ftpd_user_quota_used_bytes{user="bob"}`]; ok {
		t.Error("a user without a quota has a usage series")
	}

	// Replacing a.bin (60 kB) by 50 kB needs 110 kB while both exist: refused, a.bin kept.
	if code, text := rc.storRaw("STOR", "a.bin", randomBytes(t, 50_000)); code != 552 {
		t.Fatalf("replacement that does not fit next to the old file: %q", text)
	}
	if fi, _ := os.Stat(filepath.Join(home, "a.bin")); fi == nil || fi.Size() != 60_000 {
		t.Fatal("the refused replacement damaged a.bin")
	}
	if code, text := rc.storRaw("STOR", "a.bin", randomBytes(t, 30_000)); code != 226 {
		t.Fatalf("replacement that fits: %q", text)
	}
	if b, _ := usageMetric(t, ts, "alice"); b != 30_000 {
		t.Fatalf("usage after the replacement: %v, want 30000", b)
	}
	rc.mustCmd(250, "DELE a.bin")
	if b, f := usageMetric(t, ts, "alice"); b != 0 || f != 0 {
		t.Fatalf("usage after DELE: %v bytes, %v files", b, f)
	}

	// APPE beyond the quota: what fitted stays, the rest is refused with 552.
	if code, text := rc.storRaw("STOR", "log.txt", randomBytes(t, 90_000)); code != 226 {
		t.Fatalf("upload: %q", text)
	}
	if code, text := rc.storRaw("APPE", "log.txt", randomBytes(t, 50_000)); code != 552 {
		t.Fatalf("APPE beyond the quota: %q", text)
	}
	diskBytes, diskFiles := diskUsage(t, home)
	if diskBytes > 100_000 {
		t.Fatalf("APPE went beyond the quota: %d bytes on disk", diskBytes)
	}
	if b, f := usageMetric(t, ts, "alice"); int64(b) != diskBytes || int64(f) != diskFiles {
		t.Fatalf("usage %v/%v, on disk %d/%d", b, f, diskBytes, diskFiles)
	}

	// Something else frees space on the volume: the next walk sees it.
	if err := os.Remove(filepath.Join(home, "log.txt")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the walk to see the removal", func() bool { b, _ := usageMetric(t, ts, "alice"); return b == 0 })
	if code, text := rc.storRaw("STOR", "after.bin", randomBytes(t, 90_000)); code != 226 {
		t.Fatalf("upload after the removal: %q", text)
	}
}

// TestQuotaConcurrentUploads: many uploads of one user at once never exceed its quota together,
// whatever their order; those refused leave nothing behind, and the usage matches the disk.
func TestQuotaConcurrentUploads(t *testing.T) {
	ts := quotaServer(t, Quota{MaxBytes: 1_000_000}, func(c *Config) { c.Limits.MaxSessionsPerIP = 20 })
	home := ts.home("alice")
	const uploads, size = 12, 300_000 // 3.6 MB offered, 1 MB allowed
	var wg sync.WaitGroup
	results := make([]error, uploads)
	for i := range uploads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := ftp.Dial(ts.Addr(), ftp.DialWithTimeout(10*time.Second))
			if err != nil {
				results[i] = err
				return
			}
			defer c.Quit()
			if err := c.Login("alice", alicePass); err != nil {
				results[i] = err
				return
			}
			// A slow reader: every upload is in flight at the same time.
			results[i] = c.Stor(fmt.Sprintf("part-%02d.bin", i), &slowReader{data: randomBytes(t, size), chunk: 32 << 10, pause: 5 * time.Millisecond})
		}()
	}
	wg.Wait()
	ok, refused := 0, 0
	for i, err := range results {
		switch {
		case err == nil:
			ok++
		case strings.Contains(err.Error(), "552"):
			refused++
		default:
			t.Errorf("upload %d: %v", i, err)
		}
	}
	diskBytes, diskFiles := diskUsage(t, home)
	if diskBytes > 1_000_000 || ok == 0 || refused == 0 || int64(ok) != diskFiles {
		t.Fatalf("%d uploads completed, %d refused; on disk %d bytes in %d files (quota 1000000)", ok, refused, diskBytes, diskFiles)
	}
	if left := tempFiles(t, home); len(left) > 0 {
		t.Fatalf("refused uploads left temporaries: %v", left)
	}
	if b, f := usageMetric(t, ts, "alice"); int64(b) != diskBytes || int64(f) != diskFiles {
		t.Fatalf("usage %v/%v, on disk %d/%d", b, f, diskBytes, diskFiles)
	}
	t.Logf("%d of %d concurrent uploads of %d bytes fitted in the 1000000-byte quota", ok, uploads, size)
}

// slowReader hands out data in chunks with a pause between them.
type slowReader struct {
	data  []byte
	chunk int
	pause time.Duration
}

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	time.Sleep(r.pause)
	n := copy(p[:min(len(p), r.chunk)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestQuotaFiles: a new file beyond the file quota is refused before any byte moves; replacing
// or renaming an existing file is not a new file; DELE gives a file back.
func TestQuotaFiles(t *testing.T) {
	ts := quotaServer(t, Quota{MaxFiles: 2}, nil)
	rc := dialRaw(t, ts.Addr())
	rc.login("alice", alicePass)
	for _, name := range []string{"one.txt", "two.txt"} {
		if code, text := rc.storRaw("STOR", name, []byte(name)); code != 226 {
			t.Fatalf("STOR %s: %q", name, text)
		}
	}
	_ = rc.epsv() // the data connection the refused STOR never uses
	if code, text := rc.cmd("STOR three.txt"); code != 552 || !strings.Contains(text, "alice may store 2 files") {
		t.Fatalf("third file: %q, want 552 before the transfer", text)
	}
	if code, text := rc.storRaw("APPE", "three.txt", []byte("x")); code != 552 {
		t.Fatalf("APPE creating a third file: %q", text)
	}
	if code, text := rc.storRaw("STOR", "one.txt", []byte("replaced")); code != 226 {
		t.Fatalf("replacing a file: %q", text)
	}
	rc.mustCmd(350, "RNFR two.txt")
	rc.mustCmd(250, "RNTO renamed.txt")
	rc.mustCmd(250, "DELE one.txt")
	if code, text := rc.storRaw("STOR", "three.txt", []byte("fits now")); code != 226 {
		t.Fatalf("a file after DELE: %q", text)
	}
	if _, f := usageMetric(t, ts, "alice"); f != 2 {
		t.Fatalf("usage metric %v files, want 2", f)
	}
}

// TestMaxFileSize: an upload may not leave a file larger than maxFileSize, by STOR, APPE or a
// resumed STOR; a refused STOR leaves the previous version.
func TestMaxFileSize(t *testing.T) {
	ts := quotaServer(t, Quota{MaxFileSize: 50_000}, nil)
	home := ts.home("alice")
	rc := dialRaw(t, ts.Addr())
	rc.login("alice", alicePass)
	first := randomBytes(t, 40_000)
	if code, text := rc.storRaw("STOR", "f.bin", first); code != 226 {
		t.Fatalf("upload under the limit: %q", text)
	}
	code, text := rc.storRaw("STOR", "f.bin", randomBytes(t, 60_000))
	if code != 552 || !strings.Contains(text, "files may not be larger than 50000 bytes") {
		t.Fatalf("upload over the limit: %q", text)
	}
	if got, _ := os.ReadFile(filepath.Join(home, "f.bin")); sum(got) != sum(first) || len(tempFiles(t, home)) > 0 {
		t.Fatal("the refused upload did not leave the previous version alone")
	}
	if code, text := rc.storRaw("APPE", "f.bin", randomBytes(t, 20_000)); code != 552 {
		t.Fatalf("APPE over the limit: %q", text)
	}
	rc.mustCmd(350, "REST 30000")
	if code, text := rc.storRaw("STOR", "f.bin", randomBytes(t, 30_000)); code != 552 {
		t.Fatalf("resumed STOR over the limit: %q", text)
	}
	if fi, _ := os.Stat(filepath.Join(home, "f.bin")); fi.Size() > 50_000 {
		t.Fatalf("f.bin grew to %d bytes", fi.Size())
	}
	if _, ok := scrape(t, ts)[`ftpd_user_quota_used_bytes{user="alice"}`]; ok {
		t.Error("a maximum file size alone needs no usage, yet it is exported")
	}
}

// TestQuotaNestedHomes: usage belongs to the home's tree: what a user whose home contains
// carol's writes into carol's directory counts against carol's quota, and a rename out of
// it gives the room back.
func TestQuotaNestedHomes(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.Users = append(c.Users, User{Name: "carol", Password: "carol-pw", Home: "alice/carol", Quota: Quota{MaxBytes: 50_000}})
		c.HealthAddr = "127.0.0.1:0"
	})
	alice := dialRaw(t, ts.Addr())
	alice.login("alice", alicePass)
	if code, text := alice.storRaw("STOR", "carol/from-alice.bin", randomBytes(t, 40_000)); code != 226 {
		t.Fatalf("alice (no quota) writing into carol's home: %q", text)
	}
	// carol's home is walked in the background from the start; alice does not wait for it.
	waitFor(t, "carol's usage to count the 40000 bytes alice wrote there", func() bool { b, _ := usageMetric(t, ts, "carol"); return b == 40_000 })
	carol := dialRaw(t, ts.Addr())
	carol.login("carol", "carol-pw")
	if code, text := carol.storRaw("STOR", "mine.bin", randomBytes(t, 20_000)); code != 552 {
		t.Fatalf("carol beyond her quota: %q", text)
	}
	alice.mustCmd(350, "RNFR carol/from-alice.bin")
	alice.mustCmd(250, "RNTO moved-out.bin")
	if b, f := usageMetric(t, ts, "carol"); b != 0 || f != 0 {
		t.Fatalf("carol's usage after the file moved out: %v bytes, %v files", b, f)
	}
	if code, text := carol.storRaw("STOR", "mine.bin", randomBytes(t, 20_000)); code != 226 {
		t.Fatalf("carol within her quota: %q", text)
	}

	// A directory moved into carol's home is walked again; one removed with SITE RMDIR is
	// subtracted.
	alice.mustCmd(257, "MKD batch")
	for _, name := range []string{"batch/1.bin", "batch/2.bin"} {
		if code, text := alice.storRaw("STOR", name, randomBytes(t, 10_000)); code != 226 {
			t.Fatalf("STOR %s: %q", name, text)
		}
	}
	alice.mustCmd(350, "RNFR batch")
	alice.mustCmd(250, "RNTO carol/batch")
	waitFor(t, "carol's usage to count the directory moved in", func() bool {
		b, f := usageMetric(t, ts, "carol")
		return b == 40_000 && f == 3
	})
	alice.mustCmd(250, "SITE RMDIR carol/batch")
	if b, f := usageMetric(t, ts, "carol"); b != 20_000 || f != 1 {
		t.Fatalf("carol's usage after SITE RMDIR: %v bytes, %v files; want 20000, 1", b, f)
	}
}

// TestQuotaFromUsersFile: quotas of the users file reach the daemon, and a reload applies a new
// quota to new sessions.
func TestQuotaFromUsersFile(t *testing.T) {
	f := newFileSetup(t)
	users := func(maxBytes int) string {
		return fmt.Sprintf("users:\n  - name: alice\n    passwordHash: %q\n    home: alice\n    quota: {maxBytes: %d, maxFiles: 10, maxFileSize: 30000}\n",
			bcryptHash(t, "alice-pw"), maxBytes)
	}
	f.usersDir.publish(map[string]string{"users.yaml": users(50_000)})
	f.configDir.publish(map[string]string{"ftpd.yaml": f.configYAML("")})
	ts := f.start(t)
	rc := dialRaw(t, ts.Addr())
	rc.login("alice", "alice-pw")
	if code, text := rc.storRaw("STOR", "big.bin", randomBytes(t, 40_000)); code != 552 || !strings.Contains(text, "larger than 30000") {
		t.Fatalf("maxFileSize from the users file: %q", text)
	}
	for _, name := range []string{"a", "b"} {
		if code, text := rc.storRaw("STOR", name, randomBytes(t, 20_000)); code != 226 {
			t.Fatalf("STOR %s: %q", name, text)
		}
	}
	if code, text := rc.storRaw("STOR", "c", randomBytes(t, 20_000)); code != 552 {
		t.Fatalf("maxBytes from the users file: %q", text)
	}
	f.usersDir.publish(map[string]string{"users.yaml": users(100_000)})
	waitFor(t, "the reload", func() bool { return scrape(t, ts)[`ftpd_user_quota_limit_bytes{user="alice"}`] == 100_000 })
	again := dialRaw(t, ts.Addr())
	again.login("alice", "alice-pw")
	if code, text := again.storRaw("STOR", "c", randomBytes(t, 20_000)); code != 226 {
		t.Fatalf("a new session after the quota was raised: %q", text)
	}
}
