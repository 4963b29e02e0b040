package realnode

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// idPattern matches a cluster's id (ftprn-<pid>-<hex>) at the start of a name.
var idPattern = regexp.MustCompile(`^(ftprn-(\d+)-[0-9a-f]{6})`)

// runBase is where run directories go. Not $TMPDIR: containerd's shim socket directory must stay
// within 42 bytes, and unix socket paths within 108.
const runBase = "/tmp"

// cgroupMounts lists the mount points of every cgroup hierarchy (v1 and v2).
func cgroupMounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// ID parent major:minor root mountpoint options [optional...] - fstype source superoptions
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) {
				if fields[i+1] == "cgroup" || fields[i+1] == "cgroup2" {
					mounts = append(mounts, unescapeMount(fields[4]))
				}
				break
			}
		}
	}
	return mounts, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// makeCgroups creates root in every hierarchy. A new v1 cpuset group starts with no CPUs and no
// memory nodes, and no task can join it until they are set: copy the parent's.
func makeCgroups(root string) error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	for _, m := range mounts {
		dir := filepath.Join(m, root)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			parent, err := os.ReadFile(filepath.Join(m, f))
			if err != nil {
				continue // not the v1 cpuset hierarchy
			}
			if err := os.WriteFile(filepath.Join(dir, f), parent, 0o644); err != nil {
				return fmt.Errorf("set %s of %s: %w", f, dir, err)
			}
		}
	}
	return nil
}

// removeCgroups kills every task left in root's tree, in every hierarchy, and removes the
// groups deepest first.
func removeCgroups(root string) error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range mounts {
		top := filepath.Join(m, root)
		if _, err := os.Stat(top); err != nil {
			continue
		}
		var dirs []string
		_ = filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		var pids []int
		for _, d := range dirs {
			pids = append(pids, readPids(filepath.Join(d, "cgroup.procs"))...)
		}
		if len(pids) > 0 {
			if err := killAndWait(pids, 10*time.Second); err != nil {
				errs = append(errs, fmt.Errorf("cgroup %s: %w", top, err))
			}
		}
		// Deepest first; a group whose last task just died may need a moment to be removable.
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			var rerr error
			for range 50 {
				if rerr = os.Remove(d); rerr == nil || errors.Is(rerr, fs.ErrNotExist) {
					rerr = nil
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if rerr != nil {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, rerr))
			}
		}
	}
	return errors.Join(errs...)
}

func readPids(path string) []int {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// processesMentioning lists the processes whose command line contains s (the run directory or
// the cluster id: every component is started with paths inside the run directory).
func processesMentioning(s string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), s) {
			continue
		}
		if processAlive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// netnsPids lists the processes in a named network namespace, by comparing namespace inodes.
func netnsPids(name string) []int {
	target, err := os.Stat(filepath.Join("/run/netns", name))
	if err != nil {
		return nil
	}
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		st, err := os.Stat(filepath.Join("/proc", e.Name(), "ns", "net"))
		if err == nil && os.SameFile(st, target) && processAlive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// namespacesOf lists the named network namespaces of cluster id.
func namespacesOf(id string) []string {
	entries, _ := os.ReadDir("/run/netns")
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), id+"-") {
			names = append(names, e.Name())
		}
	}
	return names
}

// mountsUnder lists the root namespace's mount points inside dir.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var found []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			if mp := unescapeMount(fields[4]); mp == dir || strings.HasPrefix(mp, dir+"/") {
				found = append(found, mp)
			}
		}
	}
	return found
}

// teardownID removes everything of cluster id: its processes (named in the run directory's pids
// file, found in its network namespaces and cgroups, or mentioning its run directory), its
// namespaces, cgroups and run directory. Used by Stop after the orderly shutdown, and by Start
// for clusters whose test process is gone.
func teardownID(id string, logf func(string, ...any)) error {
	dir := filepath.Join(runBase, id)
	var errs []error
	var pids []int
	for _, line := range strings.Split(readFileString(filepath.Join(dir, "pids")), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		pid, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		// Only if the PID still runs something of this cluster (PIDs are reused).
		cmdline := readFileString(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(cmdline, dir) || strings.Contains(cmdline, id) {
			pids = append(pids, pid)
		}
	}
	for _, ns := range namespacesOf(id) {
		pids = append(pids, netnsPids(ns)...)
	}
	pids = append(pids, processesMentioning(dir)...)
	if len(pids) > 0 {
		logf("cleanup %s: killing %d leftover processes", id, len(pids))
		if err := killAndWait(pids, 15*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	// Pods' processes live in their own network namespaces, but in our cgroups.
	if err := removeCgroups("/" + id); err != nil {
		errs = append(errs, err)
	}
	// The root end of a node's veth goes with the node namespace, but only once the kernel's
	// namespace cleanup has run, some time later: delete it now, so that it is gone when Stop
	// returns.
	for _, veth := range rootVethsOf(id) {
		if _, err := os.Stat(filepath.Join("/sys/class/net", veth)); err == nil {
			if _, err := run("ip", "link", "del", veth); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, ns := range namespacesOf(id) {
		// Killed above; what remains in a pod's namespace is gone with the cgroups.
		if _, err := run("ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	for _, mp := range mountsUnder(dir) {
		// Not expected (the node's mounts live in its own mount namespace), but never rm -rf
		// through a mount.
		if _, err := run("umount", "-l", mp); err != nil {
			errs = append(errs, err)
		}
	}
	if len(mountsUnder(dir)) == 0 {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

// rootVethOf is the name of the root namespace's end of node index's link in cluster id:
// frn<hex> for the first node, frn<hex>-2 for the second, ...
func rootVethOf(id string, index int) string {
	i := strings.LastIndexByte(id, '-')
	if i < 0 {
		return ""
	}
	if index == 0 {
		return "frn" + id[i+1:]
	}
	return fmt.Sprintf("frn%s-%d", id[i+1:], index+1)
}

// rootVethsOf are the names every node of cluster id could have given its link.
func rootVethsOf(id string) []string {
	var names []string
	for k := range MaxNodes {
		if veth := rootVethOf(id, k); veth != "" {
			names = append(names, veth)
		}
	}
	return names
}

func readFileString(path string) string {
	data, _ := os.ReadFile(path)
	return string(data)
}

// removeStale tears down clusters whose test process is gone: a run killed before Stop.
func removeStale(logf func(string, ...any)) {
	ids := map[string]int{}
	collect := func(names []string) {
		for _, n := range names {
			if m := idPattern.FindStringSubmatch(n); m != nil {
				pid, _ := strconv.Atoi(m[2])
				ids[m[1]] = pid
			}
		}
	}
	list := func(dir string) []string {
		entries, _ := os.ReadDir(dir)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	collect(list("/run/netns"))
	collect(list(runBase))
	if mounts, err := cgroupMounts(); err == nil {
		for _, m := range mounts {
			collect(list(m))
		}
	}
	for id, pid := range ids {
		if pid == os.Getpid() || processAlive(pid) {
			continue
		}
		logf("cleanup: removing the leftovers of %s (process %d is gone)", id, pid)
		if err := teardownID(id, logf); err != nil {
			logf("cleanup %s: %v", id, err)
		}
	}
}

// leftovers lists what of cluster id still exists.
func leftovers(id string) []string {
	dir := filepath.Join(runBase, id)
	var found []string
	for _, pid := range processesMentioning(dir) {
		found = append(found, fmt.Sprintf("process %d: %s", pid, strings.ReplaceAll(readFileString(fmt.Sprintf("/proc/%d/cmdline", pid)), "\x00", " ")))
	}
	for _, ns := range namespacesOf(id) {
		found = append(found, "network namespace "+ns)
	}
	for _, mp := range mountsUnder(dir) {
		found = append(found, "mount "+mp)
	}
	if mounts, err := cgroupMounts(); err == nil {
		for _, m := range mounts {
			if _, err := os.Stat(filepath.Join(m, id)); err == nil {
				found = append(found, "cgroup "+filepath.Join(m, id))
			}
		}
	}
	for _, veth := range rootVethsOf(id) {
		if _, err := os.Stat(filepath.Join("/sys/class/net", veth)); err == nil {
			found = append(found, "interface "+veth)
		}
	}
	if _, err := os.Stat(dir); err == nil {
		found = append(found, "directory "+dir)
	}
	return found
}
