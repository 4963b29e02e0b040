package ftpd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLFTPClient drives lftp (installed by hack/install-test-deps.sh): upload, listing,
// download, mkdir, rename and delete, in clear text and over explicit FTPS with PROT P.
func TestLFTPClient(t *testing.T) {
	lftp, err := exec.LookPath("lftp")
	if err != nil {
		t.Skip("lftp not installed (hack/install-test-deps.sh installs it)")
	}
	for _, mode := range []TLSMode{TLSDisabled, TLSRequired} {
		t.Run(string(mode), func(t *testing.T) {
			ts, cert := startTLSServer(t, mode, nil)
			work := t.TempDir()
			payload := randomBytes(t, 500_000)
			writeFile(t, filepath.Join(work, "src.bin"), payload)
			settings := "set net:max-retries 1; set net:timeout 10; set cmd:fail-exit true; set ftp:ssl-allow no;"
			if mode != TLSDisabled {
				settings = "set net:max-retries 1; set net:timeout 10; set cmd:fail-exit true; set ftp:ssl-force true; " +
					"set ftp:ssl-protect-data true; set ssl:ca-file " + cert.certFile + "; set ssl:check-hostname no;"
			}
			script := settings + " open -u alice," + alicePass + " ftp://" + ts.Addr() + "; " +
				"lcd " + work + "; put src.bin -o up.bin; mkdir dir; mv up.bin dir/moved.bin; cls -1 dir; " +
				"get dir/moved.bin -o back.bin; rm dir/moved.bin; rmdir dir; bye"
			cmd := exec.Command(lftp, "-c", script)
			cmd.Env = append(os.Environ(), "HOME="+work) // no user rc file
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("lftp: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "moved.bin") {
				t.Errorf("listing lacks the file:\n%s", out)
			}
			back, _ := os.ReadFile(filepath.Join(work, "back.bin"))
			if sum(back) != sum(payload) {
				t.Fatal("lftp round trip differs")
			}
			if _, err := os.Stat(filepath.Join(ts.home("alice"), "dir")); !os.IsNotExist(err) {
				t.Fatalf("rmdir through lftp: %v", err)
			}
		})
	}
}
