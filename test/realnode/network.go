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
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kubeftp/ftp-operator/test/harness"
)

// The address plan (see the package documentation for the picture).
const (
	// rootSlots is 198.51.100.0/25 cut into /30s: one per node of every cluster running on this
	// machine, the only addresses this package puts in the root namespace.
	rootSlotsPrefix = "198.51.100."
	rootSlots       = 32

	// The outside network: a bridge in the client's namespace with the client and every node's
	// ext0 on it (node k at .253-k), as a LAN or a router's segment in front of the nodes.
	outsideIP     = "198.51.100.254" // the outside client
	outsideLAN    = "198.51.100.240/28"
	firstNodeLAN  = 253
	outsideBridge = "lan0"

	podCIDR = "192.0.2.0/24" // only inside the node namespaces and the namespaces on their bridges

	serviceCIDR      = "203.0.113.0/25"
	kubernetesSvcIP  = "203.0.113.1"
	loadBalancerCIDR = "203.0.113.128/25"
	firstLBOctet     = 129
	lastLBOctet      = 249 // .250 and above are left for tests moving a Service by hand

	nodeTable = "realnode" // our nftables table in each node namespace, beside kube-proxy's

	// MaxNodes bounds Options.Nodes: the pod network is cut into one block per node, and the
	// outside network has room for four.
	MaxNodes = 4
)

// Client roles are the harness's, so that tests can run against either.
type ClientRole = harness.ClientRole

const (
	Outside   = harness.Outside
	InCluster = harness.InCluster
)

// network is the namespaces and links shared by the nodes of one cluster.
type network struct {
	rootIP      string // the API server's address: the root side of the first node's link
	clientNS    string // names under /run/netns
	inClusterNS string
	inClusterIP string // on the first node's pod bridge, outside its CNI range
}

func (n *network) nsPath(name string) string { return filepath.Join("/run/netns", name) }

// podBlock is one node's share of the pod network: the whole /24 for a single node, else a
// /25 or /26 each. The gateway is the block's first address, the CNI hands out from its 10th
// to 16 before its end, and the last few are left for hosts the tests add (the in-cluster
// client).
type podBlock struct {
	cidr, gateway, first, last string
	prefixLen                  int
	spare                      string // 5 before the end: the in-cluster client's, on the first node
}

func podBlockOf(index, nodes int) podBlock {
	bits := 0
	for 1<<bits < nodes {
		bits++
	}
	size := 256 >> bits
	base := index * size
	at := func(off int) string { return fmt.Sprintf("192.0.2.%d", base+off) }
	return podBlock{
		cidr:      fmt.Sprintf("192.0.2.%d/%d", base, 24+bits),
		prefixLen: 24 + bits,
		gateway:   at(1),
		first:     at(10),
		last:      at(size - 17),
		spare:     at(size - 6),
	}
}

// pickSlots returns n free /30s of 198.51.100.0/25: those with no address in the root namespace.
func pickSlots(n int) ([]int, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list root namespace addresses: %w", err)
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
	var slots []int
	for k := range rootSlots {
		if !used[k] {
			slots = append(slots, k)
			if len(slots) == n {
				return slots, nil
			}
		}
	}
	return nil, fmt.Errorf("fewer than %d free /30s of 198.51.100.0/25 in the root namespace: too many clusters at once", n)
}

// lockSlots serialises picking slots and claiming them (their addresses on the root veths)
// among the clusters of all processes on this machine: an flock on the run directories' parent,
// which needs no lock file of ours to be left behind. (Not /run/netns: ip netns add locks that
// one.)
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

// newNodes lays out n nodes: names, namespaces, directories, addresses.
func (c *Cluster) newNodes(n int, slots []int) []*node {
	nodes := make([]*node, n)
	for k := range n {
		nd := &node{
			index:    k,
			name:     "realnode",
			dir:      c.dir,
			ns:       c.id + "-node",
			rootVeth: rootVethOf(c.id, k),
			rootIP:   fmt.Sprintf("%s%d", rootSlotsPrefix, 4*slots[k]+1),
			ip:       fmt.Sprintf("%s%d", rootSlotsPrefix, 4*slots[k]+2),
			lanIP:    fmt.Sprintf("%s%d", rootSlotsPrefix, firstNodeLAN-k),
			pods:     podBlockOf(k, n),
		}
		if k > 0 {
			// Short: containerd's shim socket directory must stay within 42 bytes.
			nd.name = fmt.Sprintf("realnode-%d", k+1)
			nd.dir = filepath.Join(c.dir, fmt.Sprintf("n%d", k+1))
			nd.ns = fmt.Sprintf("%s-node%d", c.id, k+1)
		}
		nodes[k] = nd
	}
	return nodes
}

func (c *Cluster) setupNetwork(nodes int) error {
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
	slots, err := pickSlots(nodes)
	if err != nil {
		return err
	}
	c.nodes = c.newNodes(nodes, slots)
	first := c.nodes[0]
	n := &network{
		rootIP:      first.rootIP,
		clientNS:    c.id + "-client",
		inClusterNS: c.id + "-incluster",
		inClusterIP: first.pods.spare,
	}
	c.net = n
	client, inc := n.clientNS, n.inClusterNS
	for _, ns := range append([]string{client, inc}, c.nodeNamespaces()...) {
		if _, err := run("ip", "netns", "add", ns); err != nil {
			return err
		}
		if _, err := run("ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	steps := [][]string{
		// The outside network, and the client on it: it routes load balancer addresses to the
		// first node unless the load balancer routes an address over the nodes that serve it
		// (several nodes: routeLoadBalancers).
		{"ip", "-n", client, "link", "add", outsideBridge, "type", "bridge"},
		{"ip", "-n", client, "addr", "add", outsideIP + "/28", "dev", outsideBridge},
		{"ip", "-n", client, "link", "set", outsideBridge, "up"},
		{"ip", "-n", client, "route", "add", loadBalancerCIDR, "via", first.lanIP},
	}
	for _, nd := range c.nodes {
		node, lanPort := nd.ns, fmt.Sprintf("n%d", nd.index+1)
		steps = append(steps,
			// The link to the root namespace: the API server is reached here, and reaches the kubelet.
			[]string{"ip", "link", "add", nd.rootVeth, "type", "veth", "peer", "name", "eth0", "netns", node},
			[]string{"ip", "addr", "add", nd.rootIP + "/30", "dev", nd.rootVeth},
			[]string{"ip", "link", "set", nd.rootVeth, "up"},
			[]string{"ip", "-n", node, "addr", "add", nd.ip + "/30", "dev", "eth0"},
			[]string{"ip", "-n", node, "link", "set", "eth0", "up"},
			// ClusterIPs from the node's own processes: connect() needs a route before kube-proxy's
			// output chain rewrites the destination. On-link on eth0, an unclaimed ClusterIP gets no
			// ARP answer instead of leaking anywhere.
			[]string{"ip", "-n", node, "route", "add", serviceCIDR, "dev", "eth0"},
			// The pod bridge, made here rather than by the bridge plugin so that the in-cluster
			// client can join it before the first pod exists.
			[]string{"ip", "-n", node, "link", "add", "cni0", "type", "bridge"},
			[]string{"ip", "-n", node, "addr", "add", fmt.Sprintf("%s/%d", nd.pods.gateway, nd.pods.prefixLen), "dev", "cni0"},
			[]string{"ip", "-n", node, "link", "set", "cni0", "up"},
			// The node's port on the outside network.
			[]string{"ip", "link", "add", "ext0", "netns", node, "type", "veth", "peer", "name", lanPort, "netns", client},
			[]string{"ip", "-n", client, "link", "set", lanPort, "master", outsideBridge},
			[]string{"ip", "-n", client, "link", "set", lanPort, "up"},
			[]string{"ip", "-n", node, "addr", "add", nd.lanIP + "/28", "dev", "ext0"},
			[]string{"ip", "-n", node, "link", "set", "ext0", "up"},
			// Node ports: the client reaches each node's InternalIP over the outside network.
			[]string{"ip", "-n", client, "route", "add", nd.ip + "/32", "via", nd.lanIP},
		)
		if len(c.nodes) > 1 {
			// The load balancer sends a connection to this node by marking it (routeLoadBalancers).
			table := strconv.Itoa(nd.lbRouteTable())
			steps = append(steps,
				[]string{"ip", "-n", client, "route", "add", loadBalancerCIDR, "via", nd.lanIP, "table", table},
				[]string{"ip", "-n", client, "rule", "add", "fwmark", strconv.Itoa(nd.lbMark()), "table", table},
			)
		}
		if nd.index > 0 {
			// The API server listens on the first node's link; the root namespace answers on
			// every link for its own addresses.
			steps = append(steps, []string{"ip", "-n", node, "route", "add", n.rootIP + "/32", "via", nd.rootIP})
		}
		for _, other := range c.nodes {
			if other != nd {
				// Pod to pod across nodes, as a cloud's routes (or kubenet) do it: each node's
				// block via that node.
				steps = append(steps, []string{"ip", "-n", node, "route", "add", other.pods.cidr, "via", other.lanIP})
			}
		}
	}
	steps = append(steps,
		// The in-cluster client: one more host on the first node's pod bridge.
		[]string{"ip", "link", "add", "eth0", "netns", inc, "type", "veth", "peer", "name", "vi0", "netns", first.ns},
		[]string{"ip", "-n", first.ns, "link", "set", "vi0", "master", "cni0"},
		[]string{"ip", "-n", first.ns, "link", "set", "vi0", "up"},
		[]string{"ip", "-n", inc, "addr", "add", fmt.Sprintf("%s/%d", n.inClusterIP, first.pods.prefixLen), "dev", "eth0"},
		[]string{"ip", "-n", inc, "link", "set", "eth0", "up"},
		[]string{"ip", "-n", inc, "route", "add", "default", "via", first.pods.gateway},
	)
	if err := runAll(steps); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	unlock() // the slots' addresses are on the root veths now: the next cluster sees them taken
	locked = false
	var lanIPs []string
	for _, nd := range c.nodes {
		lanIPs = append(lanIPs, nd.lanIP)
	}
	for _, nd := range c.nodes {
		if err := c.setupNodeNetwork(nd, lanIPs); err != nil {
			return err
		}
	}
	c.logf("network: API server %s; outside client %s in %s, in-cluster client %s in %s", n.rootIP, outsideIP, client, n.inClusterIP, inc)
	return nil
}

// setupNodeNetwork turns routing on in a node's namespace and loads its own nftables rules.
func (c *Cluster) setupNodeNetwork(nd *node, lanIPs []string) error {
	// Routing between the pod bridge, the outside network and the API server link.
	if err := writeNetnsSysctl(c.net.nsPath(nd.ns), "net/ipv4/ip_forward", "1"); err != nil {
		return err
	}
	// Pod -> ClusterIP -> pod on the same bridge: the reply is bridged, not routed, and only
	// passes conntrack (to be un-DNATed) with bridge netfilter on. Per namespace since Linux 5.3.
	if err := writeNetnsSysctl(c.net.nsPath(nd.ns), "net/bridge/bridge-nf-call-iptables", "1"); err != nil {
		c.logf("network: bridge netfilter unavailable (in-cluster clients cannot use ClusterIPs of pods on the same bridge): %v", err)
	}
	rules := fmt.Sprintf(`table ip %[1]s {}
delete table ip %[1]s
table ip %[1]s {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		# Pod egress leaves the node with the node's address, as on any node: the root namespace
		# must never see a 192.0.2.x source, and the client has no route back to pods. Pod to
		# pod on another node keeps its addresses.
		ip saddr %[2]s ip daddr != %[2]s oifname { "eth0", "ext0" } masquerade
	}
	chain forward {
		type filter hook forward priority filter - 10; policy accept;
		# From outside, pods are reachable only through kube-proxy's DNAT (load balancer
		# addresses, node ports) and from the other nodes (their pods, and what their
		# kube-proxy forwards); a pod IP is refused at once instead of timing out.
		iifname "ext0" ip daddr %[2]s ct status dnat accept
		iifname "ext0" ip daddr %[2]s ct state established,related accept
		iifname "ext0" ip saddr { %[2]s, %[3]s } ip daddr %[2]s accept
		iifname "ext0" ip daddr %[2]s reject with icmp type admin-prohibited
		# Nothing from the outside network goes toward the root namespace.
		iifname "ext0" oifname "eth0" reject with icmp type admin-prohibited
	}
}
`, nodeTable, podCIDR, strings.Join(lanIPs, ", "))
	cmd := exec.Command("ip", "netns", "exec", nd.ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("network: load nftables rules in %s: %w: %s", nd.ns, err, strings.TrimSpace(string(out)))
	}
	c.logf("network: node %s at %s (root side %s) in %s, %s on the outside network, pods %s", nd.name, nd.ip, nd.rootIP, nd.ns, nd.lanIP, nd.pods.cidr)
	return nil
}

// nodeNamespaces are the nodes' network namespaces.
func (c *Cluster) nodeNamespaces() []string {
	var names []string
	for _, nd := range c.nodes {
		names = append(names, nd.ns)
	}
	return names
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
		if out, err := run("ip", "-n", c.net.clientNS, "addr", "replace", ip+"/32", "dev", outsideBridge); err != nil {
			return nil, fmt.Errorf("outside address %s: %w: %s", ip, err, out)
		}
		ips = append(ips, ip)
	}
	for _, nd := range c.nodes {
		if out, err := run("ip", "-n", nd.ns, "route", "replace", moreOutsidePrefix, "via", outsideIP); err != nil {
			return nil, fmt.Errorf("route to the extra outside addresses from %s: %w: %s", nd.name, err, out)
		}
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
		return c.nodes[0].ns, nil
	}
	return "", fmt.Errorf("unknown client role %q", role)
}

// roleNode is the first node itself (where the kubelet and kube-proxy run), for debugging.
const roleNode ClientRole = "node"
