package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestOrphanKind(t *testing.T) {
	const assets = "/cache/control-plane/k8s"
	tests := []struct {
		name string
		ppid int
		argv []string
		root string
		want string
	}{
		{"orphaned apiserver from the assets", 1, []string{assets + "/kube-apiserver", "--etcd-servers=x"}, "/", "kube-apiserver"},
		{"orphaned etcd from the assets", 1, []string{assets + "/etcd"}, "/", "etcd"},
		{"apiserver of a running test", 4242, []string{assets + "/kube-apiserver"}, "/", ""},
		{"a kube-apiserver from elsewhere", 1, []string{"/usr/bin/kube-apiserver"}, "/", ""},
		{"orphaned harness pod", 1, []string{"/bin/ftp-operator", "ftpd", "--config", "/etc/ftpd/config/ftpd.yaml"}, "/tmp/w/pods/x/root", "harness pod"},
		{"a standalone daemon of this machine", 1, []string{"/bin/ftp-operator", "ftpd"}, "/", ""},
		{"a pod of a running harness", 777, []string{"/bin/ftp-operator", "ftpd"}, "/tmp/w/pods/x/root", ""},
		{"the manager", 1, []string{"/bin/ftp-operator", "manager"}, "/x", ""},
		{"no argv (kernel thread)", 1, nil, "/", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := orphanKind(tt.ppid, tt.argv, tt.root, assets); got != tt.want {
				t.Fatalf("orphanKind = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestSweepOrphansKillsAnOrphanedComponent: a "kube-apiserver" of the assets directory whose
// starter is gone (adopted by init, as after a killed test binary) is killed; one whose starter
// lives is not.
func TestSweepOrphansKillsAnOrphanedComponent(t *testing.T) {
	if os.Getpid() == 1 {
		t.Skip("this process is init: orphans would be adopted by it")
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	assets := t.TempDir()
	fake := filepath.Join(assets, "kube-apiserver")
	data, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fake, data, 0o755); err != nil {
		t.Fatal(err)
	}
	// Orphaned: started by a shell that exits at once, so init adopts it.
	out, err := exec.Command("sh", "-c", `"$0" 300 >/dev/null 2>&1 & echo $!`, fake).Output()
	if err != nil {
		t.Fatal(err)
	}
	orphanPID, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Kill(orphanPID, syscall.SIGKILL) }()
	// Ours: its parent (this test) lives.
	ours := exec.Command(fake, "300")
	if err := ours.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ours.Process.Kill(); _ = ours.Wait() }()

	// Wait for the adoption (the shell has exited once its output is read).
	for deadline := time.Now().Add(5 * time.Second); parentOf("/proc/"+strconv.Itoa(orphanPID)) != 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Skipf("pid %d was not adopted by init (a subreaper on this machine?)", orphanPID)
		}
	}
	var logged []string
	if err := SweepOrphans(assets, func(f string, a ...any) { logged = append(logged, f) }); err != nil {
		t.Fatal(err)
	}
	if syscall.Kill(orphanPID, 0) == nil {
		t.Fatalf("the orphan %d still runs", orphanPID)
	}
	if len(logged) != 1 {
		t.Fatalf("logged %d kills, want 1", len(logged))
	}
	if err := ours.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the component of a live test was killed: %v", err)
	}
}
