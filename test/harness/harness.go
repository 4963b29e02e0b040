// Package harness runs a local cluster around the real product, without privileges: the
// source-built kube-apiserver and etcd with our CRD, the real kube-controller-manager and
// kube-scheduler (Deployments, ReplicaSets, Pods, garbage collection, claim binding and
// EndpointSlices are Kubernetes' own), the manager as `ftp-operator manager` wires it
// (controllers.NewManager), and stand-ins only for what a node and a cloud add: a kubelet and
// container runtime that run the Pods bound to the harness's Node as local processes of the
// real `ftp-operator` binary, a hostPath volume provisioner, and a load balancer/kube-proxy. The
// network comes in two modes (Options.Network): loopback, unprivileged, with user-space
// forwarding on 127.0.0.0/8; and namespace mode, as root, with a network namespace per pod
// behind a router namespace doing nftables DNAT. The e2e tests and `make demo` use it.
// docs/testing.md says what is real and what is stood in for.
package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/controllers"
	"github.com/kubeftp/ftp-operator/internal/testenv"
)

// Options configure a harness.
type Options struct {
	// Binary is a statically linked ftp-operator (CGO_ENABLED=0): it runs chrooted.
	Binary string
	// WorkDir holds pods, volumes and claims; claims survive the pods, as PersistentVolumes do.
	WorkDir string
	// Log receives the harness's and the pods' output; nil discards it.
	Log io.Writer
	// BcryptCost for the operator's password hashing (0: bcrypt's default).
	BcryptCost int
	// Network is NetworkLoopback (the default, no privileges) or NetworkNetns (root, ip and
	// nft: pods, clients and the load balancer in network namespaces; see NetnsAvailable).
	Network string
}

// Harness is a running local cluster stand-in.
type Harness struct {
	// Client talks to the API server as an administrator would.
	Client client.Client

	env     *testenv.Env
	binary  string
	workDir string
	log     io.Writer
	node    *node
	network network

	mu          sync.Mutex
	lbOverrides map[string]string

	stopManager func() error
	cancel      context.CancelFunc
	done        sync.WaitGroup
}

// Start boots the control plane, the manager and the stand-ins.
func Start(opts Options) (*Harness, error) {
	if opts.Binary == "" || opts.WorkDir == "" {
		return nil, fmt.Errorf("harness: Binary and WorkDir are required")
	}
	if err := sandboxAvailable(); err != nil {
		return nil, err
	}
	switch opts.Network {
	case "", NetworkLoopback:
	case NetworkNetns:
		if err := NetnsAvailable(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("harness: unknown network mode %q (want %q or %q)", opts.Network, NetworkLoopback, NetworkNetns)
	}
	env, reason, err := testenv.Start()
	if err != nil {
		return nil, err
	}
	if env == nil {
		return nil, fmt.Errorf("harness: %s", reason)
	}
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	h := &Harness{
		Client: env.Client, env: env, binary: opts.Binary, workDir: opts.WorkDir, log: logw,
		lbOverrides: map[string]string{},
	}
	h.node = newNode(h)
	if opts.Network == NetworkNetns {
		nw, err := newNetnsNetwork(h)
		if err != nil {
			_ = env.Stop()
			return nil, err
		}
		h.network = nw
	} else {
		nw, err := newLoopbackNetwork(h)
		if err != nil {
			_ = env.Stop()
			return nil, err
		}
		h.network = nw
	}
	fail := func(err error) (*Harness, error) {
		h.network.close()
		_ = env.Stop()
		return nil, err
	}

	ctrl.SetLogger(logr.Discard())
	mgr, err := controllers.NewManager(env.Config, controllers.ManagerOptions{
		Scheme: env.Scheme, DaemonImage: NodeImage, BcryptCost: opts.BcryptCost,
		// The operator asks the pods which config they serve from where a cluster's pods are
		// reachable: the node's network.
		ConfigProber: &controllers.HTTPDaemonConfigProber{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return h.network.dialContext(ctx, roleNode, network, addr)
		}},
		// Several harnesses may run in one process (one per network mode), each with its own
		// API server and manager: the controller's name is then registered more than once.
		SkipNameValidation: true,
	})
	if err != nil {
		return fail(err)
	}

	if err := env.StartKubeControllers(filepath.Join(opts.WorkDir, "kube"), func(component string) io.Writer { return h.podLog(component) }); err != nil {
		return fail(err)
	}
	setupCtx, cancelSetup := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelSetup()
	if err := h.node.register(setupCtx); err != nil {
		return fail(err)
	}
	if err := h.createStorageClass(setupCtx); err != nil {
		return fail(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.stopManager = testenv.RunManager(mgr, func(err error) { h.logf("manager: %v", err) })
	h.done.Add(3)
	go func() { defer h.done.Done(); h.node.run(ctx) }()
	go func() { defer h.done.Done(); h.runServices(ctx) }()
	go func() { defer h.done.Done(); h.runProvisioner(ctx) }()
	return h, nil
}

// Stop stops the pods (SIGTERM with their grace period), the stand-ins, the manager and the
// control plane.
func (h *Harness) Stop() error {
	h.cancel()
	_ = h.stopManager() // its error was logged when it returned
	h.done.Wait()
	h.network.close()
	return h.env.Stop()
}

// KubeConfig is a kubeconfig for the harness's API server.
func (h *Harness) KubeConfig() []byte { return h.env.KubeConfig }

// ClaimPath is the directory backing a PersistentVolumeClaim.
func (h *Harness) ClaimPath(namespace, claim string) string {
	return filepath.Join(h.workDir, "volumes", namespace, claim)
}

// SetLoadBalancerAddress makes the load balancer give a Service another address, as a cloud
// does when a load balancer is re-created.
func (h *Harness) SetLoadBalancerAddress(namespace, service, ip string) {
	h.mu.Lock()
	h.lbOverrides[namespace+"/"+service] = ip
	h.mu.Unlock()
}

// NodeAddress is where node ports are reached.
func (h *Harness) NodeAddress() string { return h.network.nodeAddress() }

// Network is the network mode: NetworkLoopback or NetworkNetns.
func (h *Harness) Network() string { return h.network.mode() }

// PodNetworkCIDR is the pods' network (in-cluster clients come from it).
func (h *Harness) PodNetworkCIDR() string { return h.network.podNetwork() }

// ClientIP is the source address of role's connections.
func (h *Harness) ClientIP(role ClientRole) string { return h.network.clientIP(role) }

// DialContext connects from where role is: in namespace mode from inside the client's network
// namespace, in loopback mode from the client's address.
func (h *Harness) DialContext(ctx context.Context, role ClientRole, network, addr string) (net.Conn, error) {
	return h.network.dialContext(ctx, role, network, addr)
}

// Dialer is DialContext for role with a timeout per connection, in the shape of
// ftp.DialWithDialFunc (it serves both the control and the data connections).
func (h *Harness) Dialer(role ClientRole, timeout time.Duration) func(network, addr string) (net.Conn, error) {
	return func(network, addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return h.network.dialContext(ctx, role, network, addr)
	}
}

// ClientCommand prepares argv to run where role is (in namespace mode inside the client's
// network namespace). In loopback mode the command shares the harness's network and must bind
// its source address to ClientIP(role) itself.
func (h *Harness) ClientCommand(ctx context.Context, role ClientRole, argv ...string) (*exec.Cmd, error) {
	return h.network.command(ctx, role, argv)
}

// ClientExec runs argv where role is and returns its combined output.
func (h *Harness) ClientExec(ctx context.Context, role ClientRole, argv ...string) ([]byte, error) {
	cmd, err := h.network.command(ctx, role, argv)
	if err != nil {
		return nil, err
	}
	return cmd.CombinedOutput()
}

// PodIP is the address of the running pod of an FTPServer, or "".
func (h *Harness) PodIP(namespace, server string) string {
	if p := h.node.podFor(namespace, server); p != nil {
		return p.ip
	}
	return ""
}

// PodLog is the output of the running pod of an FTPServer.
func (h *Harness) PodLog(namespace, server string) string {
	p := h.node.podFor(namespace, server)
	if p == nil {
		return ""
	}
	data, _ := os.ReadFile(filepath.Join(p.dir, "log"))
	return string(data)
}

// LastExit tells how the most recent pod of an FTPServer ended.
func (h *Harness) LastExit(namespace, server string) (PodExit, bool) {
	h.node.mu.Lock()
	defer h.node.mu.Unlock()
	e, ok := h.node.lastExit[types.NamespacedName{Namespace: namespace, Name: server}]
	return e, ok
}

// PodPID is the process ID of the running pod of an FTPServer, or 0.
func (h *Harness) PodPID(namespace, server string) int {
	if p := h.node.podFor(namespace, server); p != nil {
		return p.proc.Pid
	}
	return 0
}

// Apply creates or updates the objects of a multi-document YAML file in namespace (where they
// do not name one), with server-side apply as kubectl apply --server-side would.
func (h *Harness) Apply(ctx context.Context, namespace string, manifest []byte) error {
	return testenv.ApplyManifest(ctx, h.Client, namespace, manifest)
}

// WaitReady waits until the FTPServer's Ready condition is True for its current generation.
func (h *Harness) WaitReady(ctx context.Context, namespace, name string, timeout time.Duration) (*ftpv1alpha1.FTPServer, error) {
	return testenv.WaitFTPServer(ctx, h.Client, namespace, name, timeout, "Ready", testenv.IsReady)
}

// WaitReason waits until the FTPServer's Ready condition has reason for its current generation.
func (h *Harness) WaitReason(ctx context.Context, namespace, name, reason string, timeout time.Duration) (*ftpv1alpha1.FTPServer, error) {
	return testenv.WaitFTPServer(ctx, h.Client, namespace, name, timeout, "Ready reason "+reason, testenv.HasReason(reason))
}

// syncEvery runs sync now and then every interval until ctx ends, logging its errors under
// what. The stand-ins reconcile by polling: simple, and fast enough at test scale. (A wait for
// a condition is internal/poll's; this never ends by itself.)
func (h *Harness) syncEvery(ctx context.Context, interval time.Duration, what string, sync func(context.Context) error) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if err := sync(ctx); err != nil && ctx.Err() == nil {
			h.logf("%s: %v", what, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (h *Harness) logf(format string, args ...any) {
	fmt.Fprintf(h.log, "harness: "+format+"\n", args...)
}

// podLog prefixes a pod's output lines with its name.
func (h *Harness) podLog(pod string) io.Writer {
	return &prefixWriter{w: h.log, prefix: pod + ": "}
}

type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := strings.IndexByte(string(p.buf), '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

// BuildBinary builds a static ftp-operator into dir (CGO off, so it runs in an empty chroot).
func BuildBinary(repoRoot, dir string) (string, error) {
	out := filepath.Join(dir, "ftp-operator")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./cmd")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build ftp-operator: %v\n%s", err, msg)
	}
	return out, nil
}
