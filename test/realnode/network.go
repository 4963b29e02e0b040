package realnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kubeftp/ftp-operator/test/harness"
)

// The address plan (see the package documentation for the picture).
const (
	// rootSlots is 198.51.100.0/25 cut into /30s: one per cluster running on this machine, the
	// only addresses this package puts in the root namespace.
	rootSlotsPrefix = "198.51.100."
	rootSlots       = 32

	nodeExtIP   = "198.51.100.253" // the node's side of the client link
	outsideIP   = "198.51.100.254" // the outside client
	clientLink  = "198.51.100.252/30"
	podCIDR     = "192.0.2.0/24" // only inside the node namespace and the namespaces on its bridge
	podGateway  = "192.0.2.1"
	podFirst    = "192.0.2.10"
	podLast     = "192.0.2.239"
	inClusterIP = "192.0.2.250" // on the pod bridge, outside the CNI's range

	serviceCIDR      = "203.0.113.0/25"
	kubernetesSvcIP  = "203.0.113.1"
	loadBalancerCIDR = "203.0.113.128/25"
	firstLBOctet     = 129
	lastLBOctet      = 249 // .250 and above are left for tests moving a Service by hand

	nodeTable = "realnode" // our nftables table in the node namespace, beside kube-proxy's
)

// Client roles are the harness's, so that tests can run against either.
type ClientRole = harness.ClientRole

const (
	Outside   = harness.Outside
	InCluster = harness.InCluster
)

// network is the namespaces and links of one cluster.
type network struct {
	slot           int
	rootIP, nodeIP string
	rootVeth       string
	nodeNS         string // names under /run/netns
	clientNS       string
	inClusterNS    string
}

func (n *network) nsPath(name string) string { return filepath.Join("/run/netns", name) }

// pickSlot returns the first /30 of 198.51.100.0/25 that has no address in the root namespace.
func pickSlot() (int, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return 0, fmt.Errorf("list root namespace addresses: %w", err)
	}
	used := map[int]bool{}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if netip.MustParsePrefix("198.51.100.0/25").Contains(ip) {
			used[int(ip.As4()[3])/4] = true
		}
	}
	for k := range rootSlots {
		if !used[k] {
			return k, nil
		}
	}
	return 0, errors.New("every /30 of 198.51.100.0/25 is in use in the root namespace: too many clusters at once")
}

// lockSlots serialises picking a slot and claiming it (its address on the root veth) among the
// clusters of all processes on this machine: an flock on the run directories' parent, which
// needs no lock file of ours to be left behind. (Not /run/netns: ip netns add locks that one.)
func lockSlots() (func(), error) {
	f, err := os.Open(runBase)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", runBase, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", runBase, err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

func (c *Cluster) setupNetwork() error {
	unlock, err := lockSlots()
	if err != nil {
		return err
	}
	locked := true
	defer func() {
		if locked {
			unlock()
		}
	}()
	slot, err := pickSlot()
	if err != nil {
		return err
	}
	n := &network{
		slot:        slot,
		rootIP:      fmt.Sprintf("%s%d", rootSlotsPrefix, 4*slot+1),
		nodeIP:      fmt.Sprintf("%s%d", rootSlotsPrefix, 4*slot+2),
		rootVeth:    rootVethOf(c.id),
		nodeNS:      c.id + "-node",
		clientNS:    c.id + "-client",
		inClusterNS: c.id + "-incluster",
	}
	c.net = n
	node, client, inc := n.nodeNS, n.clientNS, n.inClusterNS
	for _, ns := range []string{node, client, inc} {
		if _, err := run("ip", "netns", "add", ns); err != nil {
			return err
		}
		if _, err := run("ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	steps := [][]string{
		// The link to the root namespace: the API server is reached here, and reaches the kubelet.
		{"ip", "link", "add", n.rootVeth, "type", "veth", "peer", "name", "eth0", "netns", node},
		{"ip", "addr", "add", n.rootIP + "/30", "dev", n.rootVeth},
		{"ip", "link", "set", n.rootVeth, "up"},
		{"ip", "-n", node, "addr", "add", n.nodeIP + "/30", "dev", "eth0"},
		{"ip", "-n", node, "link", "set", "eth0", "up"},
		// ClusterIPs from the node's own processes: connect() needs a route before kube-proxy's
		// output chain rewrites the destination. On-link on eth0, an unclaimed ClusterIP gets no
		// ARP answer instead of leaking anywhere.
		{"ip", "-n", node, "route", "add", serviceCIDR, "dev", "eth0"},
		// The pod bridge, made here rather than by the bridge plugin so that the in-cluster
		// client can join it before the first pod exists.
		{"ip", "-n", node, "link", "add", "cni0", "type", "bridge"},
		{"ip", "-n", node, "addr", "add", podGateway + "/24", "dev", "cni0"},
		{"ip", "-n", node, "link", "set", "cni0", "up"},
		// The outside client, routed to the node for load balancer addresses and the node IP only.
		{"ip", "link", "add", "eth0", "netns", client, "type", "veth", "peer", "name", "ext0", "netns", node},
		{"ip", "-n", node, "addr", "add", nodeExtIP + "/30", "dev", "ext0"},
		{"ip", "-n", node, "link", "set", "ext0", "up"},
		{"ip", "-n", client, "addr", "add", outsideIP + "/30", "dev", "eth0"},
		{"ip", "-n", client, "link", "set", "eth0", "up"},
		{"ip", "-n", client, "route", "add", loadBalancerCIDR, "via", nodeExtIP},
		{"ip", "-n", client, "route", "add", n.nodeIP + "/32", "via", nodeExtIP},
		// The in-cluster client: one more host on the pod bridge.
		{"ip", "link", "add", "eth0", "netns", inc, "type", "veth", "peer", "name", "vi0", "netns", node},
		{"ip", "-n", node, "link", "set", "vi0", "master", "cni0"},
		{"ip", "-n", node, "link", "set", "vi0", "up"},
		{"ip", "-n", inc, "addr", "add", inClusterIP + "/24", "dev", "eth0"},
		{"ip", "-n", inc, "link", "set", "eth0", "up"},
		{"ip", "-n", inc, "route", "add", "default", "via", podGateway},
	}
	if err := runAll(steps); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	unlock() // the slot's address is on the root veth now: the next cluster sees it taken
	locked = false
	// Routing between the pod bridge, the client link and the API server link.
	if err := writeNetnsSysctl(n.nsPath(node), "net/ipv4/ip_forward", "1"); err != nil {
		return err
	}
	// Pod -> ClusterIP -> pod on the same bridge: the reply is bridged, not routed, and only
	// passes conntrack (to be un-DNATed) with bridge netfilter on. Per namespace since Linux 5.3.
	if err := writeNetnsSysctl(n.nsPath(node), "net/bridge/bridge-nf-call-iptables", "1"); err != nil {
		c.logf("network: bridge netfilter unavailable (in-cluster clients cannot use ClusterIPs of pods on the same bridge): %v", err)
	}
	rules := fmt.Sprintf(`table ip %[1]s {}
delete table ip %[1]s
table ip %[1]s {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		# Pod egress leaves the node with the node's address, as on any node: the root namespace
		# must never see a 192.0.2.x source, and the client has no route back to pods.
		ip saddr %[2]s oifname { "eth0", "ext0" } masquerade
	}
	chain forward {
		type filter hook forward priority filter - 10; policy accept;
		# From outside, pods are reachable only through kube-proxy's DNAT (load balancer
		# addresses, node ports); a pod IP is refused at once instead of timing out.
		iifname "ext0" ip daddr %[2]s ct status dnat accept
		iifname "ext0" ip daddr %[2]s ct state established,related accept
		iifname "ext0" ip daddr %[2]s reject with icmp type admin-prohibited
		# Nothing from the client link goes toward the root namespace.
		iifname "ext0" oifname "eth0" reject with icmp type admin-prohibited
	}
}
`, nodeTable, podCIDR)
	cmd := exec.Command("ip", "netns", "exec", node, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("network: load nftables rules in %s: %w: %s", node, err, strings.TrimSpace(string(out)))
	}
	c.logf("network: slot %d, API server %s, node %s in %s, outside client %s in %s, in-cluster client %s in %s",
		slot, n.rootIP, n.nodeIP, node, outsideIP, client, inClusterIP, inc)
	return nil
}

// writeNetnsSysctl writes /proc/sys/<key> as seen from the network namespace at nsPath (net.*
// sysctls are per namespace): a thread locked to the namespace opens the file there.
func writeNetnsSysctl(nsPath, key, value string) error {
	return inNetns(nsPath, func() error {
		// /proc/sys/net/* belongs to the network namespace of the task that opens it.
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644)
	})
}

// inNetns runs fn on an OS thread that has entered the network namespace at nsPath. The thread
// goes back to its namespace afterwards or, if that fails, is discarded with its goroutine.
func inNetns(nsPath string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		back, err := enter(nsPath)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		ferr := fn()
		if err := back(); err != nil {
			// Leave the thread locked: it ends with this goroutine instead of serving others
			// from the wrong namespace.
			errc <- errors.Join(ferr, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// enter moves the calling (locked) thread into the network namespace at nsPath and returns the
// way back.
func enter(nsPath string) (func() error, error) {
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		return nil, fmt.Errorf("open own network namespace: %w", err)
	}
	target, err := os.Open(nsPath)
	if err != nil {
		orig.Close()
		return nil, fmt.Errorf("open network namespace: %w", err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		orig.Close()
		return nil, fmt.Errorf("enter %s: %w", nsPath, err)
	}
	return func() error {
		defer orig.Close()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("return from %s: %w", nsPath, err)
		}
		return nil
	}, nil
}

// moreOutsidePrefix holds the outside client's extra addresses (AddOutsideAddresses): inside
// the test's own namespaces only, apart from the root slots and the client link.
const (
	moreOutsidePrefix = "198.51.100.160/27"
	moreOutsideFirst  = 161
)

// AddOutsideAddresses gives the outside client n more source addresses (at most 30), routed
// from the node like its first one, so a test can play many clients. Idempotent.
func (c *Cluster) AddOutsideAddresses(n int) ([]string, error) {
	if n > 30 {
		return nil, fmt.Errorf("at most 30 extra outside addresses, not %d", n)
	}
	var ips []string
	for i := range n {
		ip := fmt.Sprintf("198.51.100.%d", moreOutsideFirst+i)
		if out, err := run("ip", "-n", c.net.clientNS, "addr", "replace", ip+"/32", "dev", "eth0"); err != nil {
			return nil, fmt.Errorf("outside address %s: %w: %s", ip, err, out)
		}
		ips = append(ips, ip)
	}
	if out, err := run("ip", "-n", c.net.nodeNS, "route", "replace", moreOutsidePrefix, "via", outsideIP); err != nil {
		return nil, fmt.Errorf("route to the extra outside addresses: %w: %s", err, out)
	}
	return ips, nil
}

// DialFrom connects from role's namespace with source address src (one of its addresses).
func (c *Cluster) DialFrom(ctx context.Context, role ClientRole, src, network, addr string) (net.Conn, error) {
	ns, err := c.roleNamespace(role)
	if err != nil {
		return nil, err
	}
	var conn net.Conn
	err = inNetns(c.net.nsPath(ns), func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		var err error
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// dialIn connects from inside a network namespace: the socket is created there and keeps
// belonging to it wherever it is used afterwards.
func dialIn(ctx context.Context, nsPath, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := inNetns(nsPath, func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

func (c *Cluster) roleNamespace(role ClientRole) (string, error) {
	switch role {
	case Outside:
		return c.net.clientNS, nil
	case InCluster:
		return c.net.inClusterNS, nil
	case roleNode:
		return c.net.nodeNS, nil
	}
	return "", fmt.Errorf("unknown client role %q", role)
}

// roleNode is the node itself (where the kubelet and kube-proxy run), for debugging.
const roleNode ClientRole = "node"
