package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The namespace mode's addresses. Only documentation ranges (RFC 5737) are used, and only
// inside the network namespaces the harness creates.
const (
	netnsPodCIDR     = "192.0.2.0/24"    // the pod network, on a bridge in the router namespace
	netnsRouterPodIP = "192.0.2.1"       // the router's address on the pod network
	netnsInClusterIP = "192.0.2.250"     // a client inside the cluster (on the pod bridge)
	netnsClientCIDR  = "198.51.100.0/24" // the outside world
	netnsRouterOutIP = "198.51.100.1"    // the router's address toward outside clients
	netnsClientIP    = "198.51.100.2"    // an outside client
	netnsPublicCIDR  = "203.0.113.0/24"  // load balancer addresses and the node address
	netnsNodeIP      = "203.0.113.200"   // where node ports are reached

	// netnsFirstPod..netnsLastPod is the pod IP pool (last octet).
	netnsFirstPod = 10
	netnsLastPod  = 249
	// netnsFirstLB is the last octet of the first load balancer address handed out.
	netnsFirstLB = 10

	// netnsPrefix starts the name of every namespace of the namespace mode:
	// ftpe2e-<pid>-<random>-<role>. Start removes stale ones whose process is gone.
	netnsPrefix = "ftpe2e-"
	// netnsTable is the harness's nftables table in the router namespace.
	netnsTable = "ftp_harness"

	netnsCmdTimeout = 15 * time.Second
)

// netnsNetwork puts every pod in a network namespace of its own, behind a router namespace
// that stands in for the node, the cloud load balancer and kube-proxy (nftables DNAT):
//
//	outside client ns            router ns                              pod ns (one per pod)
//	eth0 198.51.100.2 ---veth--- vc  198.51.100.1
//	                             br0 192.0.2.1 ---veth vp<N>----------- eth0 192.0.2.10, .11, ...
//	                              |            ---veth vi------------- in-cluster client ns:
//	                              |                                      eth0 192.0.2.250
//	                             lo: local route 203.0.113.0/24 (load balancer and node addresses)
//
// Every forwarded port, passive ports included, is a DNAT rule in the router: load balancer
// address:Service port -> pod IP:targetPort, node address:nodePort -> pod IP:targetPort. There is
// no SNAT, so the daemon sees the real client address (externalTrafficPolicy: Local) and its
// replies route back through the router's connection tracking. The router forwards nothing
// from the outside network to the pod network except DNATed connections: a pod IP is
// unreachable from the client namespace, as in a real cluster, so a PASV reply carrying the
// wrong address fails a client that trusts it. Only pod-network sources that hairpin through a
// load balancer address are masqueraded (as kube-proxy does for hairpin traffic).
type netnsNetwork struct {
	h *Harness
	// id is ftpe2e-<pid>-<random>; namespaces are id-router, id-client, id-incluster, id-pod<N>.
	id                        string
	router, client, inCluster string

	mu      sync.Mutex
	nextPod int
	podIPs  map[string]bool     // in use
	pods    map[string]netnsPod // by pod name
	lbs     map[string]string   // Service key -> address
	nextLB  int                 // last octet of the next load balancer address
	fwds    []forward           // the active forwards (targets resolved when applied)
	created map[string]bool     // namespaces created and not yet deleted
	closed  bool

	applyMu sync.Mutex // serialises rule loads
	applied string     // the ruleset last loaded
}

type netnsPod struct {
	ns, ip string
}

// NetnsAvailable tells whether the namespace mode can run here: it needs root (network
// namespaces, nftables), ip(8) and nft(8), and a kernel that allows both inside a namespace.
func NetnsAvailable() (err error) {
	if os.Geteuid() != 0 {
		return errors.New("the namespace network mode needs root (network namespaces and nftables)")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("the namespace network mode needs %s on PATH (Debian: apt-get install iproute2 nftables)", tool)
		}
	}
	probe := fmt.Sprintf("%s%d-probe-%s", netnsPrefix, os.Getpid(), randomHex(3))
	if err := runCmd("ip", "netns", "add", probe); err != nil {
		return fmt.Errorf("cannot create a network namespace: %w", err)
	}
	defer func() {
		// A probe left behind would be a namespace nobody removes: say so.
		if derr := deleteNamespace(probe); derr != nil && err == nil {
			err = derr
		}
	}()
	if err := runCmd("ip", "netns", "exec", probe, "nft", "list", "ruleset"); err != nil {
		return fmt.Errorf("nftables does not work inside a network namespace: %w", err)
	}
	return nil
}

func newNetnsNetwork(h *Harness) (*netnsNetwork, error) {
	removeStaleNamespaces(h)
	id := fmt.Sprintf("%s%d-%s", netnsPrefix, os.Getpid(), randomHex(3))
	n := &netnsNetwork{
		h: h, id: id,
		router: id + "-router", client: id + "-client", inCluster: id + "-incluster",
		podIPs: map[string]bool{}, pods: map[string]netnsPod{}, lbs: map[string]string{},
		nextLB: netnsFirstLB, created: map[string]bool{},
	}
	if err := n.setup(); err != nil {
		n.close()
		return nil, fmt.Errorf("namespace network: %w", err)
	}
	h.logf("network: namespace mode: router %s, outside client %s (%s), in-cluster client %s (%s)",
		n.router, n.client, netnsClientIP, n.inCluster, netnsInClusterIP)
	return n, nil
}

func (n *netnsNetwork) setup() error {
	r := n.router
	if err := n.addNamespace(r); err != nil {
		return err
	}
	steps := [][]string{
		{"ip", "netns", "exec", r, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
		{"ip", "-n", r, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", r, "addr", "add", netnsRouterPodIP + "/24", "dev", "br0"},
		{"ip", "-n", r, "link", "set", "br0", "up"},
		// Load balancer and node addresses are local to the router: what no DNAT rule claims is
		// answered with a reset (no endpoint), not routed anywhere.
		{"ip", "-n", r, "route", "add", "local", netnsPublicCIDR, "dev", "lo"},
	}
	if _, err := exec.LookPath("sysctl"); err != nil {
		steps[0] = []string{"ip", "netns", "exec", r, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"}
	}
	if err := runAll(steps); err != nil {
		return err
	}

	// The outside client.
	c := n.client
	if err := n.addNamespace(c); err != nil {
		return err
	}
	if err := runAll([][]string{
		{"ip", "link", "add", "eth0", "netns", c, "type", "veth", "peer", "name", "vc", "netns", r},
		{"ip", "-n", r, "addr", "add", netnsRouterOutIP + "/24", "dev", "vc"},
		{"ip", "-n", r, "link", "set", "vc", "up"},
		{"ip", "-n", c, "addr", "add", netnsClientIP + "/24", "dev", "eth0"},
		{"ip", "-n", c, "link", "set", "eth0", "up"},
		{"ip", "-n", c, "route", "add", "default", "via", netnsRouterOutIP},
	}); err != nil {
		return err
	}

	// The in-cluster client: one more host on the pod network.
	if err := n.attachToPodNetwork(n.inCluster, "vi", netnsInClusterIP); err != nil {
		return err
	}
	return n.apply(true)
}

// addNamespace creates a namespace and records it for removal.
func (n *netnsNetwork) addNamespace(name string) error {
	if err := runCmd("ip", "netns", "add", name); err != nil {
		return err
	}
	n.mu.Lock()
	n.created[name] = true
	n.mu.Unlock()
	return runCmd("ip", "-n", name, "link", "set", "lo", "up")
}

// attachToPodNetwork creates namespace ns with eth0 at ip on the router's pod bridge (the host
// side of the veth is hostIf) and a default route through the router.
func (n *netnsNetwork) attachToPodNetwork(ns, hostIf, ip string) error {
	if err := n.addNamespace(ns); err != nil {
		return err
	}
	r := n.router
	return runAll([][]string{
		{"ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", hostIf, "netns", r},
		{"ip", "-n", r, "link", "set", hostIf, "master", "br0"},
		{"ip", "-n", r, "link", "set", hostIf, "up"},
		{"ip", "-n", ns, "addr", "add", ip + "/24", "dev", "eth0"},
		{"ip", "-n", ns, "link", "set", "eth0", "up"},
		{"ip", "-n", ns, "route", "add", "default", "via", netnsRouterPodIP},
	})
}

func (n *netnsNetwork) podAddress(pod string) (string, []string, error) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return "", nil, errors.New("network is closed")
	}
	ip := ""
	for range netnsLastPod - netnsFirstPod + 1 {
		octet := netnsFirstPod + n.nextPod%(netnsLastPod-netnsFirstPod+1)
		n.nextPod++
		candidate := "192.0.2." + strconv.Itoa(octet)
		if !n.podIPs[candidate] {
			ip = candidate
			break
		}
	}
	if ip == "" {
		n.mu.Unlock()
		return "", nil, errors.New("pod network 192.0.2.0/24 is full")
	}
	n.podIPs[ip] = true
	seq := n.nextPod
	ns := fmt.Sprintf("%s-pod%d", n.id, seq)
	n.pods[pod] = netnsPod{ns: ns, ip: ip}
	n.mu.Unlock()

	if err := n.attachToPodNetwork(ns, fmt.Sprintf("vp%d", seq), ip); err != nil {
		n.releasePod(pod)
		return "", nil, fmt.Errorf("pod %s network: %w", pod, err)
	}
	n.h.logf("network: pod %s gets %s in namespace %s", pod, ip, ns)
	return ip, []string{"ip", "netns", "exec", ns}, nil
}

func (n *netnsNetwork) releasePod(pod string) {
	n.mu.Lock()
	p, ok := n.pods[pod]
	if ok {
		delete(n.pods, pod)
	}
	n.mu.Unlock()
	if !ok {
		return
	}
	n.deleteNamespace(p.ns)
	n.mu.Lock()
	delete(n.podIPs, p.ip)
	n.mu.Unlock()
}

func (n *netnsNetwork) loadBalancerAddress(service string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ip, ok := n.lbs[service]; ok {
		return ip
	}
	ip := "203.0.113." + strconv.Itoa(n.nextLB)
	n.nextLB++
	if n.nextLB == 200 { // skip the node address and wrap
		n.nextLB = netnsFirstLB
	}
	n.lbs[service] = ip
	return ip
}

func (n *netnsNetwork) nodeAddress() string { return netnsNodeIP }

func (n *netnsNetwork) setForwards(fwds []forward) {
	n.mu.Lock()
	n.fwds = append([]forward(nil), fwds...)
	n.mu.Unlock()
	if err := n.apply(false); err != nil {
		n.h.logf("loadbalancer: %v", err)
	}
}

// endpointsChanged re-resolves the forwards' targets at once when a pod's readiness changes,
// as kube-proxy follows EndpointSlices, so a Service reaches a pod as soon as it is ready.
func (n *netnsNetwork) endpointsChanged() {
	if err := n.apply(false); err != nil {
		n.h.logf("loadbalancer: %v", err)
	}
}

// apply renders the router's table from the forwards and the ready pods and loads it in one
// nft transaction (the table is deleted and re-created atomically), unless nothing changed.
func (n *netnsNetwork) apply(force bool) error {
	n.applyMu.Lock()
	defer n.applyMu.Unlock()
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	fwds := append([]forward(nil), n.fwds...)
	n.mu.Unlock()

	var dnat []string
	for _, f := range fwds {
		target := n.h.node.readyPod(f.ns, f.selector)
		if target == nil {
			continue // no ready endpoint: the router's local route answers with a reset
		}
		dnat = append(dnat, fmt.Sprintf("ip daddr %s tcp dport %d dnat to %s:%d", f.listenIP, f.listenPort, target.ip, f.targetPort))
	}
	sort.Strings(dnat)
	var b strings.Builder
	// Creating, deleting and defining the table in one file is a single atomic transaction.
	fmt.Fprintf(&b, "table ip %s {}\ndelete table ip %s\ntable ip %s {\n", netnsTable, netnsTable, netnsTable)
	b.WriteString("\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n")
	for _, rule := range dnat {
		b.WriteString("\t\t" + rule + "\n")
	}
	b.WriteString("\t}\n")
	fmt.Fprintf(&b, "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n"+
		"\t\tip saddr %[1]s ip daddr %[1]s ct status dnat masquerade\n\t}\n", netnsPodCIDR)
	fmt.Fprintf(&b, "\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n"+
		"\t\tct state established,related accept\n"+
		"\t\tct status dnat accept\n"+
		"\t\tip saddr %[1]s accept\n"+
		"\t\tip saddr %[2]s ip daddr %[1]s counter reject with icmp type admin-prohibited\n\t}\n}\n",
		netnsPodCIDR, netnsClientCIDR)
	rules := b.String()
	if !force && rules == n.applied {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), netnsCmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.router, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("load nftables rules: %v: %s\n%s", err, bytes.TrimSpace(out), rules)
	}
	n.applied = rules
	n.h.logf("loadbalancer: %d DNAT rules in %s", len(dnat), n.router)
	return nil
}

func (n *netnsNetwork) namespaceOf(role ClientRole) (string, error) {
	switch role {
	case roleNode:
		return n.router, nil
	case Outside:
		return n.client, nil
	case InCluster:
		return n.inCluster, nil
	}
	return "", fmt.Errorf("unknown client role %q", role)
}

func (n *netnsNetwork) dialContext(ctx context.Context, role ClientRole, network, addr string) (net.Conn, error) {
	ns, err := n.namespaceOf(role)
	if err != nil {
		return nil, err
	}
	return dialInNamespace(ctx, filepath.Join("/run/netns", ns), network, addr)
}

func (n *netnsNetwork) command(ctx context.Context, role ClientRole, argv []string) (*exec.Cmd, error) {
	ns, err := n.namespaceOf(role)
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, errors.New("empty command")
	}
	prog, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, err
	}
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, prog}, argv[1:]...)...), nil
}

func (n *netnsNetwork) clientIP(role ClientRole) string {
	switch role {
	case Outside:
		return netnsClientIP
	case InCluster:
		return netnsInClusterIP
	}
	return ""
}

func (n *netnsNetwork) podNetwork() string { return netnsPodCIDR }

func (n *netnsNetwork) mode() string { return NetworkNetns }

// close removes every namespace of this network (pods first, the router last).
func (n *netnsNetwork) close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	var names []string
	for name := range n.created {
		if name != n.router {
			names = append(names, name)
		}
	}
	routerCreated := n.created[n.router]
	n.mu.Unlock()
	sort.Strings(names)
	for _, name := range names {
		n.deleteNamespace(name)
	}
	if routerCreated {
		n.deleteNamespace(n.router)
	}
}

// deleteNamespace ends what still runs in a namespace of ours (only our pods run there) and
// deletes it; its veths go with it.
func (n *netnsNetwork) deleteNamespace(name string) {
	if err := deleteNamespace(name); err != nil {
		n.h.logf("network: %v", err)
	}
	n.mu.Lock()
	delete(n.created, name)
	n.mu.Unlock()
}

func deleteNamespace(name string) error {
	if _, err := os.Stat(filepath.Join("/run/netns", name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), netnsCmdTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", "netns", "pids", name).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if err := runCmd("ip", "netns", "del", name); err != nil {
		return fmt.Errorf("delete network namespace %s: %w", name, err)
	}
	return nil
}

// removeStaleNamespaces deletes namespaces left by earlier harnesses whose process is gone (a
// run killed before it could stop).
func removeStaleNamespaces(h *Harness) {
	entries, err := os.ReadDir("/run/netns")
	if errors.Is(err, fs.ErrNotExist) {
		return // no namespace was ever made here
	}
	if err != nil {
		h.logf("network: cannot look for stale namespaces: %v", err)
		return
	}
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(netnsPrefix) + `(\d+)-`)
	for _, e := range entries {
		m := re.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat("/proc/" + m[1]); err == nil {
			continue // its harness still runs
		}
		h.logf("network: removing stale namespace %s", e.Name())
		if err := deleteNamespace(e.Name()); err != nil {
			h.logf("network: %v", err)
		}
	}
}

// dialInNamespace connects from inside the network namespace at nsPath: a goroutine locked to
// its OS thread enters the namespace, creates and connects the socket (a socket belongs to the
// namespace it was created in, wherever it is used later), and returns to the original one.
func dialInNamespace(ctx context.Context, nsPath, network, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		conn, err, restored := dialOnThisThread(ctx, nsPath, network, addr)
		if restored {
			runtime.UnlockOSThread()
		} // else the thread stays locked and ends with this goroutine: it is in the wrong namespace
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}

func dialOnThisThread(ctx context.Context, nsPath, network, addr string) (conn net.Conn, err error, restored bool) {
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		return nil, err, true
	}
	defer self.Close()
	target, err := os.Open(nsPath)
	if err != nil {
		return nil, err, true
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("enter %s: %w", nsPath, err), true
	}
	var d net.Dialer
	conn, err = d.DialContext(ctx, network, addr)
	if serr := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); serr != nil {
		return conn, err, false
	}
	return conn, err, true
}

func runAll(steps [][]string) error {
	for _, s := range steps {
		if err := runCmd(s...); err != nil {
			return err
		}
	}
	return nil
}

func runCmd(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), netnsCmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
