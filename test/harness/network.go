package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"sync"
	"syscall"
)

// Network modes (Options.Network).
const (
	// NetworkLoopback needs no privileges: every address is in 127.0.0.0/8 and forwarding is in
	// user space.
	NetworkLoopback = "loopback"
	// NetworkNetns needs root: pods, clients and a router/load balancer in network namespaces,
	// Services as nftables DNAT rules.
	NetworkNetns = "netns"
)

// ClientRole says where a test's client connects from.
type ClientRole string

const (
	// Outside is a client outside the cluster: it reaches Services through the load balancer
	// or a node address, and cannot reach pod IPs (in namespace mode).
	Outside ClientRole = "outside"
	// InCluster is a client in the pod network, such as another pod.
	InCluster ClientRole = "in-cluster"
	// roleNode is the node itself, where the kubelet's probes come from.
	roleNode ClientRole = "node"
)

// forward makes connections to listenIP:listenPort reach targetPort of a ready pod selected by
// selector in namespace ns: a Service port through the load balancer or a node port.
type forward struct {
	listenIP   string
	listenPort int32
	ns         string
	selector   map[string]string
	targetPort int32
	// direct: connections reach the pod without a forwarder in loopback mode (see
	// loopbackNetwork.setForwards).
	direct bool
}

func (f forward) key() string { return fmt.Sprintf("%s:%d", f.listenIP, f.listenPort) }

// network stands in for the pod network, kube-proxy and the cloud's load balancer.
type network interface {
	// podAddress gives a new pod its IP and the command prefix that puts it in its network.
	podAddress(pod string) (ip string, wrap []string, err error)
	releasePod(pod string)
	// loadBalancerAddress allocates an external address for a LoadBalancer Service.
	loadBalancerAddress(service string) string
	// nodeAddress is where node ports are reached.
	nodeAddress() string
	// setForwards makes exactly these forwards active.
	setForwards(fwds []forward)
	// endpointsChanged tells that a pod became ready or unready.
	endpointsChanged()
	// dialContext connects from where role is.
	dialContext(ctx context.Context, role ClientRole, network, addr string) (net.Conn, error)
	// command runs argv where role is.
	command(ctx context.Context, role ClientRole, argv []string) (*exec.Cmd, error)
	// clientIP is the source address of role's connections.
	clientIP(role ClientRole) string
	// podNetwork is the pod network's CIDR.
	podNetwork() string
	mode() string
	close()
}

// loopbackNetwork needs no privileges: pods, load balancers and the node get distinct
// addresses in 127.0.0.0/8 (every one of them is local), and forwarding is done in user space,
// binding each forwarded connection's source to the client's address so the daemon still sees
// the real client IP (as externalTrafficPolicy: Local would). A pod listens on all addresses,
// so a Service port equal to its target port needs no forwarder: connections to the load
// balancer's address reach the pod directly. The price: two pods with the same ports cannot
// run at once, and a wrong PASV address is not caught (every 127.x address reaches the pod);
// the namespace mode proves that part.
type loopbackNetwork struct {
	h *Harness

	mu        sync.Mutex
	nextPod   int
	nextLB    int
	unlock    func() // releases the machine-wide loopback lock (lockLoopback)
	lbs       map[string]string
	listeners map[string]*proxy
}

func newLoopbackNetwork(h *Harness) (*loopbackNetwork, error) {
	unlock, err := lockLoopback(h.logf)
	if err != nil {
		return nil, err
	}
	return &loopbackNetwork{h: h, lbs: map[string]string{}, listeners: map[string]*proxy{}, unlock: unlock}, nil
}

func (l *loopbackNetwork) podAddress(string) (string, []string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nextPod++
	return fmt.Sprintf("127.0.10.%d", l.nextPod%240+1), nil, nil
}

func (l *loopbackNetwork) releasePod(string) {}

// Client addresses of the loopback mode: in-cluster clients are in the "pod network"
// 127.0.10.0/24 (above the pods' addresses), outside clients elsewhere in 127.0.0.0/8.
const (
	loopbackPodCIDR     = "127.0.10.0/24"
	loopbackInClusterIP = "127.0.10.250"
	loopbackOutsideIP   = "127.0.40.1"
)

func (l *loopbackNetwork) endpointsChanged() {} // each forwarded connection looks up its pod

func (l *loopbackNetwork) clientIP(role ClientRole) string {
	switch role {
	case Outside:
		return loopbackOutsideIP
	case InCluster:
		return loopbackInClusterIP
	}
	return ""
}

func (l *loopbackNetwork) dialContext(ctx context.Context, role ClientRole, network, addr string) (net.Conn, error) {
	var d net.Dialer
	if ip := l.clientIP(role); ip != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(ip)}
	} else if role != roleNode {
		return nil, fmt.Errorf("unknown client role %q", role)
	}
	return d.DialContext(ctx, network, addr)
}

// command runs argv in the harness's own network: the command must bind its source address
// to clientIP(role) itself (the strict client takes it as an argument).
func (l *loopbackNetwork) command(ctx context.Context, role ClientRole, argv []string) (*exec.Cmd, error) {
	if len(argv) == 0 {
		return nil, errors.New("empty command")
	}
	return exec.CommandContext(ctx, argv[0], argv[1:]...), nil
}

func (l *loopbackNetwork) podNetwork() string { return loopbackPodCIDR }

func (l *loopbackNetwork) mode() string { return NetworkLoopback }

func (l *loopbackNetwork) loadBalancerAddress(service string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ip, ok := l.lbs[service]; ok {
		return ip
	}
	l.nextLB++
	ip := fmt.Sprintf("127.0.20.%d", l.nextLB%250+1)
	l.lbs[service] = ip
	return ip
}

func (l *loopbackNetwork) nodeAddress() string { return "127.0.30.1" }

func (l *loopbackNetwork) setForwards(fwds []forward) {
	l.mu.Lock()
	defer l.mu.Unlock()
	want := map[string]forward{}
	for _, f := range fwds {
		if f.direct {
			continue // the pod's own listener already answers on this address
		}
		want[f.key()] = f
	}
	for key, p := range l.listeners {
		if f, ok := want[key]; !ok || !p.same(f) {
			p.close()
			delete(l.listeners, key)
		}
	}
	for key, f := range want {
		if _, ok := l.listeners[key]; ok {
			continue
		}
		p, err := newProxy(l.h, f)
		if err != nil {
			l.h.logf("loadbalancer: %v", err)
			continue
		}
		l.listeners[key] = p
	}
}

func (l *loopbackNetwork) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for key, p := range l.listeners {
		p.close()
		delete(l.listeners, key)
	}
	if l.unlock != nil {
		l.unlock()
		l.unlock = nil
	}
}

// proxy is one user-space forwarder.
type proxy struct {
	fwd forward
	ln  net.Listener
}

func newProxy(h *Harness, f forward) (*proxy, error) {
	ln, err := net.Listen("tcp", f.key())
	if err != nil {
		if errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("cannot listen on %s as a non-root user (ports below 1024 are privileged); in loopback mode give the FTPServer ports.control >= 1024", f.key())
		}
		return nil, fmt.Errorf("listen %s: %w", f.key(), err)
	}
	p := &proxy{fwd: f, ln: ln}
	go p.serve(h)
	return p, nil
}

func (p *proxy) same(f forward) bool {
	return p.fwd.ns == f.ns && p.fwd.targetPort == f.targetPort && fmt.Sprint(p.fwd.selector) == fmt.Sprint(f.selector)
}

func (p *proxy) close() { _ = p.ln.Close() }

func (p *proxy) serve(h *Harness) {
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(h, conn)
	}
}

func (p *proxy) handle(h *Harness, in net.Conn) {
	defer in.Close()
	target := h.node.readyPod(p.fwd.ns, p.fwd.selector)
	if target == nil {
		return // no endpoint: the connection is refused, as with a Service without ready pods
	}
	dialer := net.Dialer{}
	if client, ok := in.RemoteAddr().(*net.TCPAddr); ok && client.IP.IsLoopback() {
		// Keep the client's address as the source, so the daemon sees who connected.
		dialer.LocalAddr = &net.TCPAddr{IP: client.IP}
	}
	out, err := dialer.Dial("tcp", joinHostPort(target.ip, p.fwd.targetPort))
	if err != nil {
		return
	}
	defer out.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(out, in); closeWrite(out); done <- struct{}{} }()
	go func() { _, _ = io.Copy(in, out); closeWrite(in); done <- struct{}{} }()
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}
