package harness

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// mount is one volume of a pod: a host directory shown at a path inside the pod.
type mount struct {
	hostPath string
	podPath  string
	readOnly bool
}

// sandboxCommand stands in for the container runtime. It runs the binary in a new user and
// mount namespace (unprivileged: `unshare -Ur -m`), builds a root filesystem on a tmpfs holding
// only the binary, the pod's volumes bind-mounted at their mount paths, and the host's
// /etc/hosts and /etc/resolv.conf, then chroots into it. The daemon therefore sees its config,
// users, certificates and data at the very paths the Deployment declares, read-only where the
// Deployment says so, and Kubernetes-style "..data" swaps in the volumes show through live.
// netnsWrap, when set, prefixes the command to enter the pod's network namespace.
func sandboxCommand(binary, rootDir string, mounts []mount, args, env []string, netnsWrap []string) *exec.Cmd {
	var script strings.Builder
	script.WriteString("set -e\n")
	fmt.Fprintf(&script, "R=%s\n", shellQuote(rootDir))
	script.WriteString("mount -t tmpfs -o mode=755 pod-root \"$R\"\n")
	script.WriteString("mkdir -p \"$R/bin\" \"$R/etc\" \"$R/dev\" \"$R/proc\"\n")
	script.WriteString("touch \"$R/bin/ftp-operator\" \"$R/etc/hosts\" \"$R/etc/resolv.conf\" \"$R/dev/null\"\n")
	fmt.Fprintf(&script, "mount --bind %s \"$R/bin/ftp-operator\"\n", shellQuote(binary))
	script.WriteString("mount --bind /etc/hosts \"$R/etc/hosts\"\n")
	script.WriteString("[ -e /etc/resolv.conf ] && mount --bind /etc/resolv.conf \"$R/etc/resolv.conf\" || true\n")
	script.WriteString("mount --bind /dev/null \"$R/dev/null\"\n")
	script.WriteString("mount --rbind /proc \"$R/proc\" 2>/dev/null || true\n")
	// Shallow paths first, so a volume at /a/b is mounted after the one at /a.
	sorted := append([]mount(nil), mounts...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].podPath < sorted[j].podPath })
	for _, m := range sorted {
		target := "\"$R\"" + shellQuote(m.podPath)
		fmt.Fprintf(&script, "mkdir -p %s\nmount --bind %s %s\n", target, shellQuote(m.hostPath), target)
		if m.readOnly {
			fmt.Fprintf(&script, "mount -o remount,bind,ro %s\n", target)
		}
	}
	// The pod gets exactly its declared environment (env -i), nothing of the harness's.
	script.WriteString("CHROOT=$(command -v chroot)\nexec env -i")
	for _, e := range env {
		script.WriteString(" " + shellQuote(e))
	}
	script.WriteString(" \"$CHROOT\" \"$R\" /bin/ftp-operator \"$@\"\n")

	argv := append([]string{}, netnsWrap...)
	argv = append(argv, "unshare", "--user", "--map-root-user", "--mount", "--propagation", "private",
		"--", "/bin/sh", "-c", script.String(), "pod-sandbox")
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	// The launcher itself needs the host's tools (mount, chroot live in sbin).
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Dir = filepath.Dir(rootDir)
	return cmd
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// sandboxAvailable tells whether unprivileged user and mount namespaces work here.
func sandboxAvailable() error {
	out, err := exec.Command("unshare", "--user", "--map-root-user", "--mount", "true").CombinedOutput()
	if err != nil {
		return fmt.Errorf("user and mount namespaces are not available (unshare: %v: %s); the harness needs them to run pods", err, strings.TrimSpace(string(out)))
	}
	return nil
}
