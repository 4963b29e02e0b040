package ftpd_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"golang.org/x/crypto/bcrypt"
)

// TestUsersFileKeepsPasswordsOutOfProcessList runs the ftpd binary standalone twice: with
// --user the password can be read by any local user from /proc/PID/cmdline (what `ps` shows);
// with --users-file it cannot, and the same login works over a real connection.
func TestUsersFileKeepsPasswordsOutOfProcessList(t *testing.T) {
	if _, err := os.Stat("/proc/self/cmdline"); err != nil {
		t.Skipf("no /proc: %v", err)
	}
	bin := natDaemonBinary(t)
	const password = "process-list-secret-7f3a"
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	usersFile := filepath.Join(dir, "users.yaml")
	if err := os.WriteFile(usersFile, []byte(fmt.Sprintf("users:\n  - name: carol\n    passwordHash: %q\n    home: carol\n", hash)), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		visible bool
	}{
		{"--user", []string{"--user", "carol:" + password}, true},
		{"--users-file", []string{"--users-file", usersFile}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"ftpd", "--listen", "127.0.0.1:0", "--root", filepath.Join(dir, "root"), "--drain-timeout", "1s"}, tt.args...)
			cmd := exec.Command(bin, args...)
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var exitErr error // read once done is closed
			done := make(chan struct{})
			go func() { exitErr = cmd.Wait(); close(done) }()
			defer func() {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					_ = cmd.Process.Kill()
					<-done
				}
			}()
			addr := make(chan string, 1)
			go func() {
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					var rec struct{ Msg, Listen string }
					if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "ftpd started" {
						addr <- rec.Listen
					}
				}
				_, _ = io.Copy(io.Discard, stderr)
			}()
			var listen string
			select {
			case listen = <-addr:
			case <-done:
				t.Fatalf("daemon exited: %v", exitErr)
			case <-time.After(20 * time.Second):
				t.Fatal("daemon did not start")
			}
			cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cmdline")
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(string(cmdline), password); got != tt.visible {
				t.Fatalf("password in the process list: %v, want %v (%q)", got, tt.visible, strings.ReplaceAll(string(cmdline), "\x00", " "))
			}
			c, err := ftp.Dial(listen, ftp.DialWithTimeout(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Quit()
			if err := c.Login("carol", password); err != nil {
				t.Fatalf("login: %v", err)
			}
		})
	}
}
