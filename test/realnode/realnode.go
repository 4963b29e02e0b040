package realnode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/internal/testenv"
)

// Options configure a cluster.
type Options struct {
	// ControlPlaneDir holds kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
	// kube-proxy, kubectl and etcd, as hack/control-plane.sh builds them. Empty:
	// $KUBEBUILDER_ASSETS (which `make test` sets to that directory).
	ControlPlaneDir string
	// RuntimeDir holds containerd, containerd-shim-runc-v2, ctr and kube-router
	// (hack/node-runtime.sh).
	// Empty: $NODE_RUNTIME_ASSETS.
	RuntimeDir string
	// Log receives progress lines; nil discards them. Components log to files in the run
	// directory (LogDir).
	Log io.Writer
	// Images are OCI archives (internal/ociimage) imported into the node before it registers,
	// besides the package's own PauseImage and EchoImage.
	Images []string
	// CRDsFromChart leaves the FTPServer CRD out of the start: InstallOperatorChart installs
	// it, as `helm install` does for a user (helm refuses to adopt a CRD it did not create).
	CRDsFromChart bool
	// SaveLogsTo, when set, receives a copy of every component's log at Stop, before the run
	// directory is removed.
	SaveLogsTo string
	// Nodes is the number of nodes, each a kubelet, containerd and kube-proxy in network and
	// mount namespaces of its own (0: one; at most MaxNodes).
	Nodes int
	// NetworkPolicies enforces NetworkPolicies on every node with kube-router's network
	// policy controller (networkpolicies.go). The bridge CNI has no enforcement of its own: without it a
	// NetworkPolicy is stored and has no effect, as on a cluster whose CNI ignores them.
	NetworkPolicies bool
}

// Phase is one timed step of Start or Stop.
type Phase struct {
	Name     string
	Duration time.Duration
}

// Cluster is a running cluster of one node, or of Options.Nodes. Its methods mirror test/harness's Harness (Client,
// KubeConfig, Apply, WaitReady, ClaimPath, SetLoadBalancerAddress, NodeAddress, Network,
// PodNetworkCIDR, ClientIP, DialContext, Dialer, ClientCommand, ClientExec, PodIP, PodLog,
// PodPID, LastExit, Stop, with the same client roles), so that tests can be written against
// either; pods are named by their Deployment, which the operator names after the FTPServer.
type Cluster struct {
	// Client talks to the API server as an administrator (system:masters).
	Client client.Client
	// Config is the administrator's REST config.
	Config *rest.Config
	Scheme *k8sruntime.Scheme

	id         string // ftprn-<pid>-<hex>
	dir        string // the run directory, /tmp/<id>
	nodes      []*node
	controlDir string
	runtimeDir string
	log        io.Writer
	saveLogsTo string

	net   *network
	creds *credentials

	mu          sync.Mutex
	procs       []*proc
	phases      []Phase
	lbOverrides map[string]string
	lbAllocated map[string]string
	lbRoutes    map[string][]string // load balancer address -> the nodes new connections go to (several nodes)
	exits       map[types.NamespacedName]PodExit
	exitSeen    map[types.NamespacedName]string

	cancel  context.CancelFunc
	loops   sync.WaitGroup
	stopped bool
	// stopOperator stops the operator of StartOperator, if any.
	stopOperator func()
}

// Available tells whether a cluster can start here, and if not, why: root, the tools, the
// source-built binaries and Debian's runc and CNI plugins.
func Available(opts Options) error {
	if os.Geteuid() != 0 {
		return errors.New("a real node needs root (network and mount namespaces, cgroups, containerd)")
	}
	tools := []string{"ip", "nft", "nsenter", "unshare", "mount", "umount", "runc", "go"}
	if opts.NetworkPolicies {
		tools = append(tools, "iptables", "ipset") // what kube-router's controller drives
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not on PATH (hack/install-test-deps.sh installs the system tools as root)", tool)
		}
	}
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, p)); err != nil {
			return fmt.Errorf("CNI plugin %s missing from %s (Debian package containernetworking-plugins; hack/install-test-deps.sh installs it as root)", p, cniBinDir)
		}
	}
	controlDir, runtimeDir := resolveDirs(opts)
	if controlDir == "" {
		return errors.New("KUBEBUILDER_ASSETS is not set: point it at the output of hack/control-plane.sh")
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"} {
		if _, err := os.Stat(filepath.Join(controlDir, b)); err != nil {
			return fmt.Errorf("%s missing from %s: hack/control-plane.sh builds it", b, controlDir)
		}
	}
	if runtimeDir == "" {
		return errors.New("NODE_RUNTIME_ASSETS is not set: point it at the output of hack/node-runtime.sh (containerd)")
	}
	runtimeBins := []string{"containerd", "containerd-shim-runc-v2", "ctr"}
	if opts.NetworkPolicies {
		runtimeBins = append(runtimeBins, networkPoliciesName)
	}
	for _, b := range runtimeBins {
		if _, err := os.Stat(filepath.Join(runtimeDir, b)); err != nil {
			return fmt.Errorf("%s missing from %s: hack/node-runtime.sh builds it", b, runtimeDir)
		}
	}
	return nil
}

func resolveDirs(opts Options) (string, string) {
	controlDir, runtimeDir := opts.ControlPlaneDir, opts.RuntimeDir
	if controlDir == "" {
		controlDir = os.Getenv("KUBEBUILDER_ASSETS")
	}
	if runtimeDir == "" {
		runtimeDir = os.Getenv("NODE_RUNTIME_ASSETS")
	}
	return controlDir, runtimeDir
}

// Start brings the cluster up and returns once the node is Ready. On failure everything
// started so far is torn down again; the error carries the failing component's log tail.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if err := Available(opts); err != nil {
		return nil, err
	}
	if opts.Nodes < 0 || opts.Nodes > MaxNodes {
		return nil, fmt.Errorf("%d nodes: between 1 and %d", opts.Nodes, MaxNodes)
	}
	controlDir, runtimeDir := resolveDirs(opts)
	id := fmt.Sprintf("ftprn-%d-%s", os.Getpid(), randomHex(3))
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	c := &Cluster{
		id: id, dir: filepath.Join(runBase, id),
		controlDir: controlDir, runtimeDir: runtimeDir, log: logw, saveLogsTo: opts.SaveLogsTo,
		lbOverrides: map[string]string{}, lbAllocated: map[string]string{}, lbRoutes: map[string][]string{},
		exits: map[types.NamespacedName]PodExit{}, exitSeen: map[types.NamespacedName]string{},
	}
	c.Scheme = k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(c.Scheme); err != nil {
		return nil, err
	}
	if err := ftpv1alpha1.AddToScheme(c.Scheme); err != nil {
		return nil, err
	}
	if err := c.start(ctx, opts); err != nil {
		if serr := c.Stop(); serr != nil {
			c.logf("stop after failed start: %v", serr)
		}
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context, opts Options) error {
	if err := c.phase("remove leftovers of killed runs", func() error { removeStale(c.logf); return nil }); err != nil {
		return err
	}
	for _, d := range []string{"logs", "config", "kubeconfig"} {
		if err := os.MkdirAll(filepath.Join(c.dir, d), 0o755); err != nil {
			return fmt.Errorf("create run directory: %w", err)
		}
	}
	c.logf("run directory %s", c.dir)
	if err := c.phase("network namespaces and links", func() error { return c.setupNetwork(max(opts.Nodes, 1)) }); err != nil {
		return err
	}
	if err := c.phase("certificates and kubeconfigs", c.makeCredentials); err != nil {
		return err
	}

	// The images compile while the control plane starts (both take seconds, on different
	// resources: the compiler and the API server's start-up).
	type built struct {
		archives []string
		err      error
		took     time.Duration
	}
	imagesDone := make(chan built, 1)
	go func() {
		t := time.Now()
		archives, err := c.buildImages(ctx)
		imagesDone <- built{archives, err, time.Since(t)}
	}()
	// On an early return the build must be over before Stop removes the run directory it
	// writes into.
	imagesWaited := false
	defer func() {
		if !imagesWaited {
			<-imagesDone
		}
	}()

	var etcdURL string
	if err := c.phase("etcd and kube-apiserver ready", func() error {
		var err error
		if etcdURL, err = c.startEtcd(); err != nil {
			return err
		}
		if err := c.startAPIServer(etcdURL); err != nil {
			return err
		}
		cfg, err := clientcmd.RESTConfigFromKubeConfig(c.creds.admin)
		if err != nil {
			return fmt.Errorf("admin kubeconfig: %w", err)
		}
		cfg.QPS, cfg.Burst = 100, 200
		c.Config = cfg
		return c.waitAPIServer(ctx, cfg, 90*time.Second)
	}); err != nil {
		return err
	}
	cl, err := client.New(c.Config, client.Options{Scheme: c.Scheme})
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	c.Client = cl
	if !opts.CRDsFromChart {
		if err := c.phase("CRDs installed", func() error { return c.installCRDs(c.Config) }); err != nil {
			return err
		}
	}
	if err := c.phase("controller-manager and scheduler started", func() error {
		if err := c.startControllerManager(); err != nil {
			return err
		}
		return c.startScheduler()
	}); err != nil {
		return err
	}
	if err := c.phase("node namespaces and containerd ready", func() error {
		for _, nd := range c.nodes {
			if err := c.startNodeNamespace(nd); err != nil {
				return err
			}
			if err := c.startContainerd(ctx, nd, PauseImage); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	b := <-imagesDone
	imagesWaited = true
	c.record("images built (go build + OCI archives, beside the control plane)", b.took)
	if b.err != nil {
		return b.err
	}
	if err := c.phase("images imported", func() error {
		for _, a := range append(b.archives, opts.Images...) {
			if err := c.ImportImage(ctx, a); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := c.phase("kubelet and kube-proxy started, nodes Ready, kube-proxy synced", func() error {
		for _, nd := range c.nodes {
			if err := c.startKubelet(nd); err != nil {
				return err
			}
			if err := c.startKubeProxy(nd); err != nil {
				return err
			}
		}
		for _, nd := range c.nodes {
			if err := c.waitNodeReady(ctx, nd, 2*time.Minute); err != nil {
				return err
			}
			if err := c.waitKubeProxy(ctx, nd, time.Minute); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if opts.NetworkPolicies {
		if err := c.phase("network policy controller (kube-router) started and synced on every node", func() error {
			for _, nd := range c.nodes {
				if err := c.startNetworkPolicies(nd); err != nil {
					return err
				}
			}
			for _, nd := range c.nodes {
				if err := c.waitNetworkPolicies(ctx, nd, time.Minute); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if err := c.phase("default service account, storage class", func() error {
		if err := c.createStorageClass(ctx); err != nil {
			return err
		}
		// The controller manager's service account controller works: pods can be created.
		return c.waitFor(ctx, time.Minute, "the default ServiceAccount", func() (bool, error) {
			var sa corev1.ServiceAccount
			err := c.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "default"}, &sa)
			return err == nil, client.IgnoreNotFound(err)
		})
	}); err != nil {
		return err
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.loops.Add(3)
	go func() { defer c.loops.Done(); c.runLoadBalancer(loopCtx) }()
	go func() { defer c.loops.Done(); c.runProvisioner(loopCtx) }()
	go func() { defer c.loops.Done(); c.runExitRecorder(loopCtx) }()
	return nil
}

func (c *Cluster) waitNodeReady(ctx context.Context, nd *node, timeout time.Duration) error {
	return c.waitFor(ctx, timeout, "node "+nd.name+" Ready", func() (bool, error) {
		for _, component := range []string{"kubelet", "kube-proxy", "containerd"} {
			name := nd.procName(component)
			if p := c.proc(name); p != nil && p.exited() {
				return false, fmt.Errorf("%s exited: %v\n%s", name, p.err, p.tail(30))
			}
		}
		var node corev1.Node
		if err := c.Client.Get(ctx, client.ObjectKey{Name: nd.name}, &node); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	})
}

// waitKubeProxy waits until kube-proxy's health endpoint (in the node's namespace) answers 200:
// it has programmed its rules since it started, so Services work from now on.
func (c *Cluster) waitKubeProxy(ctx context.Context, nd *node, timeout time.Duration) error {
	hc := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialIn(ctx, c.net.nsPath(nd.ns), network, addr)
		}},
	}
	return c.waitFor(ctx, timeout, "kube-proxy of "+nd.name+" healthy", func() (bool, error) {
		if p := c.proc(nd.procName("kube-proxy")); p != nil && p.exited() {
			return false, fmt.Errorf("kube-proxy exited: %v\n%s", p.err, p.tail(30))
		}
		resp, err := hc.Get("http://127.0.0.1:10256/healthz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// waitFor polls done every 200ms until it reports true, fails, or timeout passes.
func (c *Cluster) waitFor(ctx context.Context, timeout time.Duration, what string, done func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := done()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not reached after %s (logs in %s)", what, timeout, c.LogDir())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stop takes the cluster down in an order that leaves nothing behind: the controllers first (so
// nothing is re-created), then the node (kubelet and kube-proxy, the pods' processes, containerd
// and its shims, the namespace holder), the API server before etcd (with etcd gone first it
// takes half a minute to give up), and finally whatever is left of this run's processes,
// cgroups, namespaces and directory. Leftovers tells whether that worked.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	stopOperator := c.stopOperator
	c.mu.Unlock()
	if stopOperator != nil {
		stopOperator()
	}
	if c.cancel != nil {
		c.cancel()
		c.loops.Wait()
	}
	var errMu sync.Mutex
	var errs []error
	stop := func(grace time.Duration, names ...string) {
		var wg sync.WaitGroup
		for _, name := range names {
			if p := c.proc(name); p != nil {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := p.stop(grace); err != nil {
						errMu.Lock()
						errs = append(errs, err)
						errMu.Unlock()
					}
				}()
			}
		}
		wg.Wait()
	}
	_ = c.phase("stop controllers", func() error {
		stop(10*time.Second, "kube-controller-manager", "kube-scheduler")
		return nil
	})
	_ = c.phase("stop nodes", func() error {
		names := func(component string) []string {
			var names []string
			for _, nd := range c.nodes {
				names = append(names, nd.procName(component))
			}
			return names
		}
		stop(10*time.Second, append(names("kubelet"), names("kube-proxy")...)...)
		// Its chains and sets go with the node's network namespace.
		stop(5*time.Second, names(networkPoliciesName)...)
		// The kubelet leaves running containers behind by design; their processes are all in
		// our cgroup tree (the further nodes' below the first one's).
		if err := removeCgroups("/" + c.id); err != nil {
			errs = append(errs, err)
		}
		stop(10*time.Second, names("containerd")...)
		for _, nd := range c.nodes {
			if err := killAndWait(netnsPids(nd.ns), 10*time.Second); err != nil {
				errs = append(errs, err)
			}
		}
		stop(time.Second, names("node-namespace")...)
		return nil
	})
	_ = c.phase("stop API server and etcd", func() error {
		stop(15*time.Second, "kube-apiserver")
		stop(10*time.Second, "etcd")
		return nil
	})
	if c.saveLogsTo != "" {
		if err := copyDir(c.LogDir(), c.saveLogsTo); err != nil {
			errs = append(errs, fmt.Errorf("save logs: %w", err))
		} else {
			c.logf("logs saved in %s", c.saveLogsTo)
		}
	}
	_ = c.phase("remove namespaces, cgroups, run directory", func() error {
		if err := teardownID(c.id, c.logf); err != nil {
			errs = append(errs, err)
		}
		return nil
	})
	if left := c.Leftovers(); len(left) > 0 {
		errs = append(errs, fmt.Errorf("left behind: %s", strings.Join(left, "; ")))
	}
	return errors.Join(errs...)
}

// Leftovers lists what of this cluster still exists on the machine: processes, network
// namespaces, mounts, cgroups, the root namespace's interface, the run directory. Empty after
// a successful Stop.
func (c *Cluster) Leftovers() []string {
	return leftovers(c.id)
}

// Phases are the timed steps of Start (and of Stop, once it ran), in order.
func (c *Cluster) Phases() []Phase {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Phase(nil), c.phases...)
}

func (c *Cluster) phase(name string, fn func() error) error {
	t := time.Now()
	err := fn()
	c.record(name, time.Since(t))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func (c *Cluster) record(name string, d time.Duration) {
	c.mu.Lock()
	c.phases = append(c.phases, Phase{Name: name, Duration: d})
	c.mu.Unlock()
	c.logf("phase %q took %s", name, d.Round(time.Millisecond))
}

func (c *Cluster) proc(name string) *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.procs) - 1; i >= 0; i-- {
		if c.procs[i].name == name {
			return c.procs[i]
		}
	}
	return nil
}

func (c *Cluster) bin(name string) string        { return filepath.Join(c.controlDir, name) }
func (c *Cluster) runtimeBin(name string) string { return filepath.Join(c.runtimeDir, name) }

func (c *Cluster) logf(format string, args ...any) {
	fmt.Fprintf(c.log, "realnode: "+format+"\n", args...)
}

// KubeConfig is an administrator's kubeconfig for the cluster.
func (c *Cluster) KubeConfig() []byte { return c.creds.admin }

// KubeConfigPath is the same kubeconfig as a file, for commands that take --kubeconfig.
func (c *Cluster) KubeConfigPath() string { return c.creds.kubeconfigs["admin"] }

// LogDir holds every component's log (etcd.log, kube-apiserver.log, kubelet.log, ...).
func (c *Cluster) LogDir() string { return filepath.Join(c.dir, "logs") }

// NodeName is the name of the cluster's first node (its only one, unless Options.Nodes said
// more).
func (c *Cluster) NodeName() string { return c.nodes[0].name }

// NodeNames are the names of all the cluster's nodes, the first one first.
func (c *Cluster) NodeNames() []string {
	var names []string
	for _, nd := range c.nodes {
		names = append(names, nd.name)
	}
	return names
}

// NodeAddress is the first node's InternalIP, where node ports are reached (from the outside
// client too).
func (c *Cluster) NodeAddress() string { return c.nodes[0].ip }

// PodNetworkCIDR is the pods' network (in-cluster clients come from it).
func (c *Cluster) PodNetworkCIDR() string { return podCIDR }

// LoadBalancerCIDR is the pool load balancer addresses come from.
func (c *Cluster) LoadBalancerCIDR() string { return loadBalancerCIDR }

// ClientIP is the source address of role's connections.
func (c *Cluster) ClientIP(role ClientRole) string {
	switch role {
	case Outside:
		return outsideIP
	case InCluster:
		return c.net.inClusterIP
	}
	return ""
}

// DialContext connects from inside role's network namespace.
func (c *Cluster) DialContext(ctx context.Context, role ClientRole, network, addr string) (net.Conn, error) {
	ns, err := c.roleNamespace(role)
	if err != nil {
		return nil, err
	}
	return dialIn(ctx, c.net.nsPath(ns), network, addr)
}

// Dialer is DialContext for role with a timeout per connection, in the shape of
// ftp.DialWithDialFunc.
func (c *Cluster) Dialer(role ClientRole, timeout time.Duration) func(network, addr string) (net.Conn, error) {
	return func(network, addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return c.DialContext(ctx, role, network, addr)
	}
}

// ClientCommand prepares argv to run inside role's network namespace.
func (c *Cluster) ClientCommand(ctx context.Context, role ClientRole, argv ...string) (*exec.Cmd, error) {
	ns, err := c.roleNamespace(role)
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

// ClientExec runs argv where role is and returns its combined output.
func (c *Cluster) ClientExec(ctx context.Context, role ClientRole, argv ...string) ([]byte, error) {
	cmd, err := c.ClientCommand(ctx, role, argv...)
	if err != nil {
		return nil, err
	}
	return cmd.CombinedOutput()
}

// Kubectl runs the cluster's kubectl (the one built beside the components) as administrator.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.bin("kubectl"), append([]string{"--kubeconfig", c.KubeConfigPath()}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Apply creates or updates the objects of a multi-document YAML file in namespace (where they
// do not name one), with server-side apply as kubectl apply --server-side would.
func (c *Cluster) Apply(ctx context.Context, namespace string, manifest []byte) error {
	return testenv.ApplyManifest(ctx, c.Client, namespace, manifest)
}

// copyDir copies the regular files of src into dst (created if missing).
func copyDir(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			return err
		}
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
