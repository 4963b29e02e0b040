package ftpd

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// utf8Name exercises non-ASCII file names end to end (FTP sends them as UTF-8 bytes).
const utf8Name = "Grüße-日本-файл.txt"

// TestListingsTimesAndUTF8Names: MLSD (machine listing), MDTM, SIZE and UTF-8 names, with the Go
// client (which uses MLSD when FEAT advertises it).
func TestListingsTimesAndUTF8Names(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.dial(t, "alice", alicePass)
	data := []byte("unicode says hello\n")
	if err := c.Stor(utf8Name, bytes.NewReader(data)); err != nil {
		t.Fatalf("STOR %s: %v", utf8Name, err)
	}
	if _, err := os.Stat(filepath.Join(ts.home("alice"), utf8Name)); err != nil {
		t.Fatalf("the UTF-8 name did not reach the disk as is: %v", err)
	}

	// MLSD, sent raw so the test does not depend on the client's FEAT handling.
	rc := dialRaw(t, ts.Addr())
	rc.login("alice", alicePass)
	_, feat := rc.cmd("FEAT")
	for _, want := range []string{"MLST", "UTF8", "SIZE", "MDTM"} {
		if !strings.Contains(feat, want) {
			t.Errorf("FEAT does not advertise %s:\n%s", want, feat)
		}
	}
	dataConn := rc.epsv()
	rc.mustCmd(150, "MLSD")
	listing := readUntilClosed(t, dataConn)
	rc.expect(226)
	// RFC 3659 fact names are case-insensitive.
	facts := strings.ToLower(listing)
	if !strings.Contains(facts, "type=file") || !strings.Contains(facts, "size=19") || !strings.Contains(listing, "; "+utf8Name) {
		t.Fatalf("MLSD listing lacks the file's facts:\n%s", listing)
	}

	entries, err := c.List("")
	if err != nil {
		t.Fatalf("LIST/MLSD via the Go client: %v", err)
	}
	var found bool
	for _, e := range entries {
		if e.Name == utf8Name && e.Size == uint64(len(data)) {
			found = true
		}
	}
	if !found {
		t.Fatalf("listing lacks %s: %+v", utf8Name, entries)
	}

	mtime := time.Date(2024, 2, 29, 12, 34, 56, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(ts.home("alice"), utf8Name), mtime, mtime); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetTime(utf8Name)
	if err != nil || !got.Equal(mtime) {
		t.Fatalf("MDTM = %v, %v; want %v", got, err, mtime)
	}
	if size, err := c.FileSize(utf8Name); err != nil || size != int64(len(data)) {
		t.Fatalf("SIZE = %d, %v", size, err)
	}
}

// TestCurlClient drives curl in clear text: upload, listing, ranged download (REST), append,
// and a UTF-8 name.
func TestCurlClient(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed (hack/install-test-deps.sh installs it)")
	}
	ts := startServer(t, nil)
	work := t.TempDir()
	payload := randomBytes(t, 300_000)
	writeFile(t, filepath.Join(work, "src.bin"), payload)
	base := "ftp://alice:" + alicePass + "@" + ts.Addr() + "/"
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(curl, append([]string{"-sS", "--max-time", "20"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("-T", filepath.Join(work, "src.bin"), base+"up.bin")
	if listing := run(base); !strings.Contains(listing, "up.bin") {
		t.Fatalf("listing lacks up.bin:\n%s", listing)
	}
	tail := run("-r", "299990-", base+"up.bin")
	if tail != string(payload[299990:]) {
		t.Fatalf("ranged download (REST) returned %d bytes, want the last 10", len(tail))
	}
	writeFile(t, filepath.Join(work, "more.bin"), []byte("more"))
	run("--append", "-T", filepath.Join(work, "more.bin"), base+"up.bin")
	onDisk, _ := os.ReadFile(filepath.Join(ts.home("alice"), "up.bin"))
	if !bytes.Equal(onDisk, append(append([]byte{}, payload...), "more"...)) {
		t.Fatal("APPE through curl did not append")
	}
	writeFile(t, filepath.Join(work, "u.txt"), []byte("ü"))
	run("-T", filepath.Join(work, "u.txt"), base+"%C3%BC.txt")
	if got := run(base + "%C3%BC.txt"); got != "ü" {
		t.Fatalf("UTF-8 name round trip through curl: %q", got)
	}
}

func readUntilClosed(t *testing.T, c interface {
	Read([]byte) (int, error)
	Close() error
}) string {
	t.Helper()
	defer c.Close()
	var buf bytes.Buffer
	chunk := make([]byte, 4096)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n, err := c.Read(chunk)
		buf.Write(chunk[:n])
		if err != nil {
			break
		}
	}
	return buf.String()
}
