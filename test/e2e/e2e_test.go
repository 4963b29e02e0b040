// Package e2e drives the whole product through the local harness: manifests applied to the real
// API server, the real operator reconciling them, the real daemon binary running as the pods,
// and FTP clients transferring through the (stood-in) load balancer. Every scenario runs in
// both network modes of the harness: loopback (no privileges, user-space forwarding) and
// namespace mode (root: network namespaces and nftables DNAT, where a pod IP is unreachable from
// outside and a wrong PASV address fails). docs/testing.md explains both.
package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/internal/poll"
	"github.com/kubeftp/ftp-operator/internal/testenv"
	"github.com/kubeftp/ftp-operator/test/harness"
	"github.com/kubeftp/ftp-operator/test/realnode"
)

// clusterUnderTest is what the scenarios ask of a cluster: the harness (loopback and namespace
// modes) and the real node (test/realnode) both provide it.
type clusterUnderTest interface {
	KubeConfig() []byte
	Apply(ctx context.Context, namespace string, manifest []byte) error
	WaitReady(ctx context.Context, namespace, name string, timeout time.Duration) (*ftpv1alpha1.FTPServer, error)
	WaitReason(ctx context.Context, namespace, name, reason string, timeout time.Duration) (*ftpv1alpha1.FTPServer, error)
	ClaimPath(namespace, claim string) string
	SetLoadBalancerAddress(namespace, service, ip string)
	NodeAddress() string
	PodNetworkCIDR() string
	ClientIP(role harness.ClientRole) string
	DialContext(ctx context.Context, role harness.ClientRole, network, addr string) (net.Conn, error)
	Dialer(role harness.ClientRole, timeout time.Duration) func(network, addr string) (net.Conn, error)
	ClientCommand(ctx context.Context, role harness.ClientRole, argv ...string) (*exec.Cmd, error)
	ClientExec(ctx context.Context, role harness.ClientRole, argv ...string) ([]byte, error)
	PodIP(namespace, server string) string
	PodLog(namespace, server string) string
	PodPID(namespace, server string) int
	LastExit(namespace, server string) (harness.PodExit, bool)
	Stop() error
}

// Both clusters offer the scenarios the same methods; the compiler checks it.
var (
	_ clusterUnderTest = (*harness.Harness)(nil)
	_ clusterUnderTest = (*realnode.Cluster)(nil)
)

// cluster is one test cluster, in one mode, and what the scenarios need to know about it.
// Every scenario runs in every mode through eachMode; each mode has its own API server.
type cluster struct {
	mode   string
	h      clusterUnderTest
	client client.Client
	skip   string // why this mode does not run here
	// podIPsHidden: outside clients cannot reach pod IPs (namespace mode, the real node), so a
	// wrong PASV address fails as in a real cluster.
	podIPsHidden bool

	lbPrefix string // the load balancer hands out addresses starting with this
	spareLB  string // an address the load balancer may move a Service to
	// control is the control port the scenarios give their FTPServers: in loopback mode the
	// forwarder listens in the harness's own network, where a non-root user cannot take 21.
	control int32
	// namespaces counts the namespaces created, to name the next one.
	namespaces int
	// realNode is the real node's cluster (h as its own type), for what only it has: the
	// operator as a pod installed from the chart, kubectl, the node's containers.
	realNode *realnode.Cluster
}

// realNodeMode runs the scenarios on test/realnode: a real kubelet, containerd and kube-proxy.
const realNodeMode = "realnode"

var (
	loopback = &cluster{mode: harness.NetworkLoopback, lbPrefix: "127.0.20.", spareLB: "127.0.20.77", control: 2121}
	netns    = &cluster{mode: harness.NetworkNetns, lbPrefix: "203.0.113.", spareLB: "203.0.113.150", control: 21, podIPsHidden: true}
	realNode = &cluster{mode: realNodeMode, lbPrefix: "203.0.113.", spareLB: "203.0.113.250", control: 21, podIPsHidden: true}
	clusters = []*cluster{loopback, netns, realNode}
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

// runMain starts one harness per network mode: loopback always, namespace mode when its
// preconditions hold (root, ip, nft). Outside CI a missing precondition skips that mode's tests
// with the reason; with CI set it fails the run. E2E_MODES=loopback (or netns) runs one mode.
func runMain(m *testing.M) int {
	ci := os.Getenv("CI") != ""
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		reason := "KUBEBUILDER_ASSETS is not set: run `make test`"
		if ci {
			fmt.Fprintln(os.Stderr, "e2e:", reason)
			return 1
		}
		for _, c := range clusters {
			c.skip = reason
		}
		return m.Run()
	}
	if modes := os.Getenv("E2E_MODES"); modes != "" {
		for _, c := range clusters {
			if !slices.Contains(strings.Split(modes, ","), c.mode) {
				c.skip = "E2E_MODES=" + modes + " leaves out the " + c.mode + " mode"
			}
		}
	}
	if realNode.skip == "" {
		err := realnode.Available(realNodeOptions(1))
		if err == nil && os.Getenv("HELM") == "" {
			// The operator is installed from its chart there, as users install it.
			err = errors.New("HELM is not set (the pinned helm, which `make test` passes)")
		}
		if err != nil {
			if ci {
				fmt.Fprintf(os.Stderr, "e2e: the real node cannot run and CI is set: %v\n", err)
				return 1
			}
			realNode.skip = fmt.Sprintf("the real node cannot run here: %v (set CI=1 to make this a failure)", err)
		}
	}
	if netns.skip == "" {
		if err := harness.NetnsAvailable(); err != nil {
			if ci {
				fmt.Fprintf(os.Stderr, "e2e: the namespace network mode cannot run and CI is set: %v\n", err)
				return 1
			}
			netns.skip = fmt.Sprintf("namespace network mode unavailable: %v (set CI=1 to make this a failure)", err)
		}
	}

	work, err := os.MkdirTemp("", "ftp-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(work)
	bin := os.Getenv("FTP_OPERATOR_BIN") // a prebuilt static binary, e.g. for a run as another user
	if bin == "" {
		bin, err = harness.BuildBinary(testenv.RepoRoot(), work)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}

	// Start the clusters side by side: each boots its own kube-apiserver and etcd.
	var wg sync.WaitGroup
	errs := make([]error, len(clusters))
	for i, c := range clusters {
		if c.skip != "" {
			continue
		}
		if c == realNode {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = startRealNode(c, filepath.Join(work, c.mode), 1) }()
			continue
		}
		opts := harness.Options{
			Binary: bin, WorkDir: filepath.Join(work, c.mode), BcryptCost: 4, Network: c.mode,
		}
		if os.Getenv("E2E_VERBOSE") != "" {
			opts.Log = &linePrefixer{w: os.Stderr, prefix: "[" + c.mode + "] "}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := harness.Start(opts)
			if errs[i] = err; err == nil {
				c.h, c.client = h, h.Client
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range clusters {
			if c.h == nil {
				continue
			}
			if err := c.h.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "e2e: stop the %s cluster: %v\n", c.mode, err)
			}
		}
	}()
	for i, err := range errs {
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: start the %s cluster: %v\n", clusters[i].mode, err)
			return 1
		}
	}
	return m.Run()
}

// realNodeImage is the image the real node's operator gives its daemon pods: our binary,
// written as `make image` does and imported into the node's containerd.
const realNodeImage = "localhost/ftp-operator/ftp-operator:e2e"

// realNodeOptions are the suite's real-node clusters: the FTPServer CRD comes with the chart,
// and kube-router's controller enforces NetworkPolicies on every node, so that every scenario
// there runs under the policies the operator writes, as on a cluster whose CNI enforces them.
func realNodeOptions(nodeCount int) realnode.Options {
	return realnode.Options{CRDsFromChart: true, SaveLogsTo: os.Getenv("REALNODE_LOGS"), Nodes: nodeCount, NetworkPolicies: true}
}

// startRealNode boots test/realnode with nodeCount nodes and our image, and installs the
// operator from its chart, as a pod with the chart's ServiceAccount and RBAC.
func startRealNode(c *cluster, dir string, nodeCount int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	archive, err := realnode.BuildOperatorImage(ctx, dir, realNodeImage)
	if err != nil {
		return err
	}
	opts := realNodeOptions(nodeCount)
	opts.Images = []string{archive}
	if os.Getenv("E2E_VERBOSE") != "" {
		opts.Log = &linePrefixer{w: os.Stderr, prefix: "[" + c.mode + "] "}
	}
	rn, err := realnode.Start(ctx, opts)
	if err != nil {
		return err
	}
	out, err := rn.InstallOperatorChart(ctx, os.Getenv("HELM"), filepath.Join(testenv.RepoRoot(), "charts", "ftp-operator"), realNodeImage, 3*time.Minute)
	if err != nil {
		_ = rn.Stop()
		return err
	}
	if os.Getenv("E2E_VERBOSE") != "" {
		fmt.Fprintf(os.Stderr, "[%s] helm install:\n%s", c.mode, out)
	}
	c.h, c.client, c.realNode = rn, rn.Client, rn
	nodes, err := rn.Kubectl(ctx, "get", "nodes", "-o", "wide")
	if err != nil {
		return err
	}
	report("the real node (kubectl get nodes -o wide):\n%s", nodes)
	c.reportPods(ctx, realnode.OperatorNamespace, "the operator, installed with helm install charts/ftp-operator")
	return nil
}

// podColumns shows what a pod runs: the image it names and the image the runtime resolved.
const podColumns = "custom-columns=POD:.metadata.name,PHASE:.status.phase,IMAGE:.spec.containers[0].image,IMAGE-ID:.status.containerStatuses[0].imageID,NODE:.spec.nodeName"

// reportPods writes the pods of namespace with their images to the run's report (real node only).
func (c *cluster) reportPods(ctx context.Context, namespace, what string) {
	if c.realNode == nil {
		return
	}
	out, err := c.realNode.Kubectl(ctx, "get", "pods", "-n", namespace, "-o", podColumns)
	if err != nil {
		report("%s: %v\n", what, err)
		return
	}
	report("%s (kubectl get pods -n %s):\n%s", what, namespace, out)
}

// report appends to the file $E2E_REPORT, which `make test` prints after the tests (go test
// shows a passing package's output only with -v), and to stderr with E2E_VERBOSE.
func report(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if os.Getenv("E2E_VERBOSE") != "" {
		fmt.Fprint(os.Stderr, line)
	}
	path := os.Getenv("E2E_REPORT")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: report: %v\n", err)
		return
	}
	defer f.Close()
	_, _ = f.WriteString(line)
}

// eachMode runs a scenario as a subtest per network mode.
func eachMode(t *testing.T, scenario func(t *testing.T, c *cluster)) {
	for _, c := range clusters {
		t.Run(c.mode, func(t *testing.T) {
			c.require(t)
			scenario(t, c)
		})
	}
}

func (c *cluster) require(t *testing.T) {
	t.Helper()
	if c.h == nil {
		t.Skip(c.skip)
	}
}

// newNamespace creates a namespace of its own for a scenario (name plus a counter, so repeated
// runs with -count do not collide) and deletes it when the scenario ends: the real namespace
// controller then removes what is left in it.
func (c *cluster) newNamespace(t *testing.T, name string) string {
	t.Helper()
	c.namespaces++
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", name, c.namespaces)}}
	if err := c.client.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := c.client.Delete(context.Background(), ns); err != nil {
			t.Errorf("delete namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

func (c *cluster) apply(t *testing.T, ns, manifest string) {
	t.Helper()
	if err := c.h.Apply(context.Background(), ns, []byte(manifest)); err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) waitReady(t *testing.T, ns, name string) *ftpv1alpha1.FTPServer {
	t.Helper()
	s, err := c.h.WaitReady(context.Background(), ns, name, 90*time.Second)
	if err != nil {
		t.Fatalf("%v\npod log:\n%s", err, c.h.PodLog(ns, name))
	}
	if c == realNode {
		c.waitForwarded(t, s)
	}
	return s
}

// waitForwarded waits until the real kube-proxy forwards the server's endpoint. Ready means
// the Service's EndpointSlices list the pods; kube-proxy programs the node's nftables from them
// up to its sync period later (a cloud load balancer's health checks take longer still), and
// nothing in the API tells when. The suite waits for the control port to accept a connection
// from the outside client, bounded, and logs the lag; what the server then says (its PASV
// address above all) is checked as strictly as before.
func (c *cluster) waitForwarded(t *testing.T, s *ftpv1alpha1.FTPServer) {
	t.Helper()
	addr := strings.TrimPrefix(s.Status.Endpoint, "ftp://")
	start := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := c.h.DialContext(ctx, harness.Outside, "tcp", addr)
		cancel()
		if err == nil {
			_ = conn.Close()
			t.Logf("kube-proxy forwards %s %s after Ready", addr, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("%s is Ready but %s does not accept connections from outside after 15 s: %v", s.Name, addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *cluster) get(t *testing.T, ns, name string) *ftpv1alpha1.FTPServer {
	t.Helper()
	var s ftpv1alpha1.FTPServer
	if err := c.client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// strictTransfer runs the Python client that trusts PASV replies, from where role is.
func (c *cluster) strictTransfer(role harness.ClientRole, addr, user, pass, mode, op, a, b string) (string, error) {
	host, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	script := filepath.Join(testenv.RepoRoot(), "test", "e2e", "testdata", "strict_client.py")
	out, err := c.h.ClientExec(ctx, role, "python3", script, host, port, user, pass, c.h.ClientIP(role), mode, op, a, b)
	return string(out), err
}

// dialFTP opens a Go FTP client connection from where role is. With tlsConfig it speaks
// explicit FTPS (AUTH TLS, then PROT P data connections).
func (c *cluster) dialFTP(role harness.ClientRole, addr string, tlsConfig *tls.Config) (*ftp.ServerConn, error) {
	dial := c.h.Dialer(role, 5*time.Second)
	opts := []ftp.DialOption{ftp.DialWithTimeout(5 * time.Second), ftp.DialWithDialFunc(dial)}
	if tlsConfig != nil {
		// With a dial function of its own, jlaffaye/ftp leaves TLS on data connections to it:
		// the first connection is the control one (TLS after AUTH TLS), the others are data.
		control := true
		opts = []ftp.DialOption{
			ftp.DialWithTimeout(5 * time.Second), ftp.DialWithExplicitTLS(tlsConfig),
			ftp.DialWithDialFunc(func(network, address string) (net.Conn, error) {
				conn, err := dial(network, address)
				if err != nil || control {
					control = false
					return conn, err
				}
				return tls.Client(conn, tlsConfig), nil
			}),
		}
	}
	return ftp.Dial(addr, opts...)
}

func (c *cluster) dial(t *testing.T, role harness.ClientRole, addr string) *ftp.ServerConn {
	t.Helper()
	conn, err := c.dialFTP(role, addr, nil)
	if err != nil {
		t.Fatalf("dial %s from the %s client: %v", addr, role, err)
	}
	t.Cleanup(func() { _ = conn.Quit() })
	return conn
}

// deleteAndWait deletes an FTPServer and waits for its pod to stop and its Service to go (in
// loopback mode the next test's pod needs the same ports; in both, node ports are freed).
func (c *cluster) deleteAndWait(t *testing.T, ns, name string) {
	t.Helper()
	ctx := context.Background()
	if err := c.client.Delete(ctx, &ftpv1alpha1.FTPServer{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the pod to stop", func() error {
		if c.h.PodPID(ns, name) != 0 {
			return context.DeadlineExceeded
		}
		var svc corev1.Service
		if err := c.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &svc); err == nil {
			return context.DeadlineExceeded
		}
		return nil
	})
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	poll.Eventually(t, timeout, what, func() (bool, error) {
		err := cond()
		return err == nil, err
	})
}

// hostPort strips ftp:// from a status endpoint.
func hostPort(t *testing.T, endpoint string) string {
	t.Helper()
	if !strings.HasPrefix(endpoint, "ftp://") {
		t.Fatalf("endpoint %q is not an ftp:// URL", endpoint)
	}
	return strings.TrimPrefix(endpoint, "ftp://")
}

// pasvForm is an IPv4 address as a 227 reply writes it.
func pasvForm(ip string) string { return strings.ReplaceAll(ip, ".", ",") }

func sha(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// linePrefixer marks each line of a harness's log with its mode.
type linePrefixer struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *linePrefixer) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.buf = p.buf[i+1:]
	}
}

// serverManifest is the lifecycle scenario's FTPServer (testenv.FilesServerManifest), with its
// control port.
func serverManifest(t *testing.T, control int32) string {
	t.Helper()
	m, err := testenv.FilesServerManifest(control, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return string(m)
}

// TestLoadBalancedServerLifecycle walks one FTPServer through its life: created and Ready at the
// load balancer's address, transfers by strict PASV and EPSV clients from outside, a password
// change and a load balancer address change picked up by the running daemon, FTPS with a
// certificate rotation, and deletion that drains the daemon and keeps the data.
func TestLoadBalancedServerLifecycle(t *testing.T) { eachMode(t, testLifecycle) }

func testLifecycle(t *testing.T, c *cluster) {
	ctx := context.Background()
	ns := c.newNamespace(t, "lifecycle")
	c.apply(t, ns, serverManifest(t, c.control))
	s := c.waitReady(t, ns, "files")
	addr := hostPort(t, s.Status.Endpoint)
	lbIP, _, _ := strings.Cut(addr, ":")
	if !strings.HasPrefix(lbIP, c.lbPrefix) || s.Status.PassiveAddress != lbIP || !strings.HasSuffix(addr, fmt.Sprintf(":%d", c.control)) {
		t.Fatalf("endpoint %s / PASV address %s: want the load balancer's address (%s*) and port %d", s.Status.Endpoint, s.Status.PassiveAddress, c.lbPrefix, c.control)
	}
	pid := c.h.PodPID(ns, "files")

	// Strict PASV and EPSV clients, from the outside client's address.
	payload := randomBytes(3 << 20)
	local := filepath.Join(t.TempDir(), "payload.bin")
	if err := os.WriteFile(local, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := c.strictTransfer(harness.Outside, addr, "partner", "first-secret", "pasv", "upload", local, "via-pasv.bin")
	if err != nil || !strings.Contains(out, "227") || !strings.Contains(out, pasvForm(lbIP)) {
		t.Fatalf("strict PASV upload: %v\n%s", err, out)
	}
	back := filepath.Join(t.TempDir(), "back.bin")
	out, err = c.strictTransfer(harness.Outside, addr, "partner", "first-secret", "epsv", "download", "via-pasv.bin", back)
	if err != nil || !strings.Contains(out, "229") {
		t.Fatalf("EPSV download: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(back); sha(got) != sha(payload) {
		t.Fatal("downloaded bytes differ from the uploaded ones")
	}
	onVolume := filepath.Join(c.h.ClaimPath(ns, "files-data"), "partner", "via-pasv.bin")
	if got, err := os.ReadFile(onVolume); err != nil || sha(got) != sha(payload) {
		t.Fatalf("the upload did not land whole on the claim's volume (%s): %v", onVolume, err)
	}
	// No SNAT on the way: the daemon saw the client's own address.
	if want := fmt.Sprintf(`"client_ip":%q`, c.h.ClientIP(harness.Outside)); !strings.Contains(c.h.PodLog(ns, "files"), want) {
		t.Fatalf("the daemon's log never shows %s: the client's address was not preserved", want)
	}

	t.Run("password change reaches the running daemon", func(t *testing.T) {
		var secret corev1.Secret
		if err := c.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "partner-ftp"}, &secret); err != nil {
			t.Fatal(err)
		}
		secret.Data["password"] = []byte("second-secret")
		if err := c.client.Update(ctx, &secret); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "the new password to work", func() error {
			conn, err := c.dialFTP(harness.Outside, addr, nil)
			if err != nil {
				return err
			}
			defer conn.Quit()
			return conn.Login("partner", "second-secret")
		})
		conn := c.dial(t, harness.Outside, addr)
		if err := conn.Login("partner", "first-secret"); err == nil {
			t.Fatal("the old password still works")
		}
		if now := c.h.PodPID(ns, "files"); now != pid {
			t.Fatalf("the daemon was restarted (pid %d -> %d); users must be reloaded in place", pid, now)
		}
	})

	t.Run("load balancer address change reaches the running daemon", func(t *testing.T) {
		c.h.SetLoadBalancerAddress(ns, "files", c.spareLB)
		newAddr := fmt.Sprintf("%s:%d", c.spareLB, c.control)
		// Ready again for the new address: from then on a strict client must be told it, at
		// once, without a retry (the readiness handshake; the kubelet's volume refresh is
		// what would lag).
		moved, err := testenv.WaitFTPServer(context.Background(), c.client, ns, "files", 60*time.Second, "Ready at the new address",
			func(cond *metav1.Condition) bool {
				return cond.Status == metav1.ConditionTrue && strings.Contains(cond.Message, "advertise "+c.spareLB+",")
			})
		if err != nil {
			t.Fatal(err)
		}
		if c == realNode {
			c.waitForwarded(t, moved)
		}
		out, err := c.strictTransfer(harness.Outside, newAddr, "partner", "second-secret", "pasv", "download", "via-pasv.bin", back)
		if err != nil || !strings.Contains(out, pasvForm(c.spareLB)) {
			t.Fatalf("right after Ready at the new address, the strict client got: %v\n%s", err, out)
		}
		got := c.get(t, ns, "files")
		if got.Status.Endpoint != "ftp://"+newAddr || got.Status.PassiveAddress != c.spareLB {
			t.Fatalf("status not updated: %+v", got.Status)
		}
		if now := c.h.PodPID(ns, "files"); now != pid {
			t.Fatalf("the daemon was restarted for an address change (pid %d -> %d)", pid, now)
		}
		addr = newAddr
	})

	t.Run("explicit FTPS with certificate rotation", func(t *testing.T) {
		certA := newCert(t, "first")
		c.apply(t, ns, tlsSecretManifest("files-tls", certA))
		srv := c.get(t, ns, "files")
		before := srv.DeepCopy()
		srv.Spec.TLS = ftpv1alpha1.TLSSpec{Mode: ftpv1alpha1.TLSExplicit, SecretName: "files-tls", MinVersion: "1.2"}
		if err := c.client.Patch(ctx, srv, client.MergeFrom(before)); err != nil {
			t.Fatal(err)
		}
		s := c.waitReady(t, ns, "files") // turning TLS on rolls the pod
		addr = hostPort(t, s.Status.Endpoint)
		tlsPID := c.h.PodPID(ns, "files")
		eventually(t, 30*time.Second, "FTPS with the first certificate", func() error { return c.ftpsLogin(addr, certA.serial) })

		certB := newCert(t, "second")
		c.apply(t, ns, tlsSecretManifest("files-tls", certB))
		eventually(t, 40*time.Second, "FTPS with the rotated certificate", func() error { return c.ftpsLogin(addr, certB.serial) })
		if now := c.h.PodPID(ns, "files"); now != tlsPID {
			t.Fatalf("the daemon was restarted for a certificate renewal (pid %d -> %d)", tlsPID, now)
		}
	})

	t.Run("deletion drains the daemon and keeps the data", func(t *testing.T) {
		if err := c.client.Delete(ctx, &ftpv1alpha1.FTPServer{ObjectMeta: metav1.ObjectMeta{Name: "files", Namespace: ns}}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 60*time.Second, "the daemon to stop", func() error {
			if pid := c.h.PodPID(ns, "files"); pid != 0 {
				return fmt.Errorf("pod still running (pid %d)", pid)
			}
			return nil
		})
		exit, ok := c.h.LastExit(ns, "files")
		if !ok || exit.Status != "exit status 0" {
			t.Fatalf("the daemon did not stop cleanly after SIGTERM: %+v", exit)
		}
		if log, _ := os.ReadFile(exit.LogPath); !bytes.Contains(log, []byte(`"msg":"draining"`)) || !bytes.Contains(log, []byte(`"msg":"ftpd stopped"`)) {
			t.Fatalf("the daemon's log shows no drain:\n%s", log)
		}
		if got, err := os.ReadFile(onVolume); err != nil || sha(got) != sha(payload) {
			t.Fatalf("data on the retained claim is gone or changed after deletion: %v", err)
		}
		var claim corev1.PersistentVolumeClaim
		if err := c.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "files-data"}, &claim); err != nil {
			t.Fatalf("the retained claim was deleted: %v", err)
		}
	})
}

// ftpsLogin logs in over explicit FTPS, checks the certificate's serial and transfers a file
// with PROT P.
func (c *cluster) ftpsLogin(addr, wantSerial string) error {
	var seen string
	cfg := &tls.Config{
		InsecureSkipVerify: true, // self-signed test certificate; the serial is checked instead
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 {
				seen = cs.PeerCertificates[0].SerialNumber.String()
			}
			return nil
		},
	}
	conn, err := c.dialFTP(harness.Outside, addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Quit()
	if err := conn.Login("partner", "second-secret"); err != nil {
		return err
	}
	// The handshake happens with the first command after AUTH TLS.
	if seen != wantSerial {
		return fmt.Errorf("served certificate serial %s, want %s", seen, wantSerial)
	}
	data := []byte("over TLS")
	if err := conn.Stor("tls.txt", bytes.NewReader(data)); err != nil {
		return fmt.Errorf("STOR over TLS: %w", err)
	}
	return nil
}
