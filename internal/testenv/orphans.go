package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A test binary that is killed (go test's -timeout, a Ctrl-C that reaches only it, SIGKILL)
// leaves the processes it started running: envtest's kube-apiserver and etcd, the
// kube-controller-manager and kube-scheduler of StartKubeControllers, the harness's pods. They
// hold ports, memory and CPU, and the next run on the machine would compete with them. Start
// therefore removes, before it boots a control plane, the orphans of earlier runs.

// orphan is a process of an earlier, killed test run.
type orphan struct {
	pid  int
	what string
}

// controlPlaneBinaries are the components started from KUBEBUILDER_ASSETS.
var controlPlaneBinaries = map[string]bool{
	"kube-apiserver": true, "etcd": true, "kube-controller-manager": true, "kube-scheduler": true,
}

// orphanKind says why a process is a leftover of a killed run, or "" when it is not. Only
// processes adopted by init (ppid 1: their starter is gone) count, so a test running at the
// same time is never touched: its processes still have their test binary as parent.
//   - a control-plane component started from assets (the directory of KUBEBUILDER_ASSETS);
//   - a harness pod: the daemon binary the harness puts at /bin/ftp-operator in a pod's chroot
//     (its root is not the machine's).
func orphanKind(ppid int, argv []string, root, assets string) string {
	if ppid != 1 || len(argv) == 0 {
		return ""
	}
	if assets != "" && controlPlaneBinaries[filepath.Base(argv[0])] && filepath.Dir(argv[0]) == filepath.Clean(assets) {
		return filepath.Base(argv[0])
	}
	if argv[0] == "/bin/ftp-operator" && len(argv) > 1 && argv[1] == "ftpd" && root != "/" && root != "" {
		return "harness pod"
	}
	return ""
}

// findOrphans lists the orphans among this machine's processes.
func findOrphans(assets string) []orphan {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var found []orphan
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		root, _ := os.Readlink(filepath.Join(dir, "root"))
		if what := orphanKind(parentOf(dir), argv, root, assets); what != "" {
			found = append(found, orphan{pid: pid, what: what})
		}
	}
	return found
}

// parentOf reads the PPid line of /proc/PID/status (0 when unreadable).
func parentOf(procDir string) int {
	status, err := os.ReadFile(filepath.Join(procDir, "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// SweepOrphans kills (SIGKILL) the orphans of killed runs and waits up to 5 s for them to go,
// naming each on logf. It returns what it could not remove.
func SweepOrphans(assets string, logf func(format string, args ...any)) error {
	orphans := findOrphans(assets)
	for _, o := range orphans {
		logf("testenv: killing pid %d, a %s left by an earlier run that was killed", o.pid, o.what)
		_ = syscall.Kill(o.pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, o := range orphans {
		for syscall.Kill(o.pid, 0) == nil {
			if time.Now().After(deadline) {
				return fmt.Errorf("pid %d (%s) survived SIGKILL", o.pid, o.what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}
