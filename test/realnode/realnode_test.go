package realnode_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeftp/ftp-operator/internal/poll"
	"github.com/kubeftp/ftp-operator/test/realnode"
)

const testNamespace = "realnode-test"

// workload is a Deployment of the echo image as the daemon runs (UID 65532, fsGroup 65532, no
// privileges, read-only root), writing to a claim of the default StorageClass, behind a
// LoadBalancer Service that keeps client addresses (externalTrafficPolicy Local).
var workload = echoWorkload("ReadWriteOnce", 1, "")

// echoWorkload is the echo Deployment of replicas pods on one claim of accessMode, behind a
// LoadBalancer Service with externalTrafficPolicy Local; podSpec is more of the pod's spec
// (YAML at the pod spec's indentation), e.g. affinity.
func echoWorkload(accessMode string, replicas int, podSpec string) string {
	return fmt.Sprintf(`
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [%s]
  resources: {requests: {storage: 64Mi}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: %d
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      terminationGracePeriodSeconds: 2
      securityContext: {runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, runAsNonRoot: true}
%s      containers:
        - name: echo
          image: %s
          imagePullPolicy: Never
          args: [--listen=:8080, --data=/data]
          ports: [{containerPort: 8080}]
          readinessProbe:
            httpGet: {path: /healthz, port: 8080}
            periodSeconds: 1
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
          volumeMounts: [{name: data, mountPath: /data}]
      volumes:
        - name: data
          persistentVolumeClaim: {claimName: data}
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: 8080}]
`, accessMode, replicas, podSpec, realnode.EchoImage)
}

func TestMain(m *testing.M) {
	// controller-runtime's clients log through its global logger; these tests read the
	// components' own logs instead.
	ctrl.SetLogger(logr.Discard())
	os.Exit(m.Run())
}

// TestRealNode starts the real node, runs a workload on it through the real controllers and
// reaches it from outside through a load balancer address, then tears everything down and
// checks that nothing is left.
func TestRealNode(t *testing.T) {
	requireRealNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	t0 := time.Now()
	c := startCluster(ctx, t, realnode.Options{})
	startTook := time.Since(t0)

	out, err := c.Kubectl(ctx, "get", "nodes", "-o", "wide")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl get nodes -o wide:\n%s", out)
	for _, want := range []string{c.NodeName(), "Ready", "v1.37.2", "containerd://2.4.2", c.NodeAddress()} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("kubectl get nodes does not show %q", want)
		}
	}

	// The workload, through the real Deployment and ReplicaSet controllers, scheduler, PV
	// binder and kubelet.
	if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNamespace}}); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	if err := c.Apply(ctx, testNamespace, []byte(workload)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "Deployment echo available", func() (bool, string) {
		var d appsv1.Deployment
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: testNamespace, Name: "echo"}, &d); err != nil {
			return false, err.Error()
		}
		return d.Status.AvailableReplicas == 1, fmt.Sprintf("%+v; pods: %s", d.Status, podSummaryIn(ctx, c, testNamespace))
	})
	podTook := time.Since(t1)

	pod := onlyPod(ctx, t, c)
	t.Logf("pod %s on %s, IP %s", pod.Name, pod.Spec.NodeName, pod.Status.PodIP)
	if !realnodeCIDRContains(c.PodNetworkCIDR(), pod.Status.PodIP) {
		t.Errorf("pod IP %s is not in the pod network %s", pod.Status.PodIP, c.PodNetworkCIDR())
	}

	// The claim was bound by the real PV controller to a volume of our provisioner.
	var pvc corev1.PersistentVolumeClaim
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: testNamespace, Name: "data"}, &pvc); err != nil {
		t.Fatal(err)
	}
	if pvc.Status.Phase != corev1.ClaimBound || pvc.Annotations["pv.kubernetes.io/bind-completed"] != "yes" {
		t.Errorf("claim is %s with annotations %v, want Bound by the PV controller", pvc.Status.Phase, pvc.Annotations)
	}
	if sc := ptrString(pvc.Spec.StorageClassName); sc != realnode.StorageClassName {
		t.Errorf("claim got StorageClass %q, want the default %q", sc, realnode.StorageClassName)
	}
	claimDir := c.ClaimPath(testNamespace, "data")
	if claimDir == "" {
		t.Fatal("ClaimPath is empty for a bound claim")
	}

	// From outside, through the load balancer address.
	lb := waitLoadBalancer(ctx, t, c, "")
	body := httpGet(t, c, realnode.Outside, lb+":80", "/whoami")
	t.Logf("outside client -> %s:80/whoami: %s", lb, body)
	if want := "remote=" + c.ClientIP(realnode.Outside) + " "; !strings.HasPrefix(body, want) {
		t.Errorf("the server saw %q, want the outside client's own address (%s)", body, want)
	}
	if !strings.Contains(body, "uid=65532 gid=65532") {
		t.Errorf("the server does not run as 65532:65532: %q", body)
	}

	// What the pod wrote is on the claim's directory, owned by the pod's user; the directory
	// belongs to the fsGroup, which the kubelet set on mount.
	visits := filepath.Join(claimDir, "visits.log")
	data, err := os.ReadFile(visits)
	if err != nil {
		t.Fatalf("the pod's write is not on the claim: %v", err)
	}
	if !strings.Contains(string(data), c.ClientIP(realnode.Outside)) {
		t.Errorf("visits.log = %q, want the outside client's address", data)
	}
	if st, err := os.Stat(visits); err == nil {
		sys := st.Sys().(*syscall.Stat_t)
		if sys.Uid != 65532 {
			t.Errorf("visits.log is owned by uid %d, want 65532", sys.Uid)
		}
	}
	if st, err := os.Stat(claimDir); err == nil {
		sys := st.Sys().(*syscall.Stat_t)
		t.Logf("claim directory %s: mode %s, owner %d:%d", claimDir, st.Mode(), sys.Uid, sys.Gid)
		if sys.Gid != 65532 {
			t.Errorf("the claim directory's group is %d, want the fsGroup 65532", sys.Gid)
		}
	}

	// The pod reaches the API server through the kubernetes Service with its service account.
	version := httpGet(t, c, realnode.Outside, lb+":80", "/apiserver")
	if !strings.Contains(version, `"gitVersion": "v1.37.2"`) && !strings.Contains(version, `"gitVersion":"v1.37.2"`) {
		t.Errorf("the pod's view of the API server's /version: %q", version)
	}

	// The outside client reaches node ports, but never a pod IP.
	var svc corev1.Service
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: testNamespace, Name: "echo"}, &svc); err != nil {
		t.Fatal(err)
	}
	nodePort := svc.Spec.Ports[0].NodePort
	body = httpGet(t, c, realnode.Outside, net.JoinHostPort(c.NodeAddress(), fmt.Sprint(nodePort)), "/whoami")
	if !strings.HasPrefix(body, "remote="+c.ClientIP(realnode.Outside)+" ") {
		t.Errorf("through the node port the server saw %q", body)
	}
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	if conn, err := c.DialContext(dctx, realnode.Outside, "tcp", net.JoinHostPort(pod.Status.PodIP, "8080")); err == nil {
		conn.Close()
		t.Errorf("the outside client reached the pod IP %s directly", pod.Status.PodIP)
	} else {
		t.Logf("outside client -> pod IP: %v (as it should)", err)
	}
	dcancel()

	// In-cluster: the pod IP directly, and the Service's ClusterIP through kube-proxy.
	body = httpGet(t, c, realnode.InCluster, net.JoinHostPort(pod.Status.PodIP, "8080"), "/whoami")
	if !strings.HasPrefix(body, "remote="+c.ClientIP(realnode.InCluster)+" ") {
		t.Errorf("in-cluster client -> pod IP: the server saw %q", body)
	}
	body = httpGet(t, c, realnode.InCluster, net.JoinHostPort(svc.Spec.ClusterIP, "80"), "/whoami")
	t.Logf("in-cluster client -> ClusterIP %s:80/whoami: %s", svc.Spec.ClusterIP, body)

	// The cloud moves the load balancer; kube-proxy follows the new status.
	moved := "203.0.113.250"
	c.SetLoadBalancerAddress(testNamespace, "echo", moved)
	waitLoadBalancer(ctx, t, c, moved)
	waitFor(t, 30*time.Second, "the moved load balancer address to answer", func() (bool, string) {
		b, err := tryHTTPGet(c, realnode.Outside, moved+":80", "/whoami")
		return err == nil && strings.HasPrefix(b, "remote="+c.ClientIP(realnode.Outside)), fmt.Sprint(b, err)
	})

	// Logs and exec go through the API server to the kubelet.
	logs, err := c.Kubectl(ctx, "-n", testNamespace, "logs", "deploy/echo")
	if err != nil {
		t.Error(err)
	} else if !bytes.Contains(logs, []byte("visit from "+c.ClientIP(realnode.Outside))) {
		t.Errorf("kubectl logs: %s", logs)
	}
	id, err := c.Kubectl(ctx, "-n", testNamespace, "exec", "deploy/echo", "--", "/echo", "id")
	if err != nil {
		t.Error(err)
	} else {
		t.Logf("kubectl exec deploy/echo -- /echo id: %s", bytes.TrimSpace(id))
		if !bytes.Contains(id, []byte("uid=65532")) {
			t.Errorf("kubectl exec: %s", id)
		}
	}

	// Deleting the workload: the kubelet stops the pod; the released volume (reclaim policy
	// Delete) goes with its directory.
	t2 := time.Now()
	for _, obj := range []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: testNamespace, Name: "echo"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: testNamespace, Name: "echo"}},
	} {
		if err := c.Client.Delete(ctx, obj, client.PropagationPolicy(metav1.DeletePropagationForeground)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Minute, "the pod gone", func() (bool, string) {
		var pods corev1.PodList
		if err := c.Client.List(ctx, &pods, client.InNamespace(testNamespace)); err != nil {
			return false, err.Error()
		}
		return len(pods.Items) == 0, podSummaryIn(ctx, c, testNamespace)
	})
	if err := c.Client.Delete(ctx, &pvc); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the released volume deleted", func() (bool, string) {
		var pv corev1.PersistentVolume
		err := c.Client.Get(ctx, client.ObjectKey{Name: pvc.Spec.VolumeName}, &pv)
		return apierrors.IsNotFound(err), fmt.Sprint(pv.Status.Phase, err)
	})
	if _, err := os.Stat(claimDir); !os.IsNotExist(err) {
		t.Errorf("the deleted volume's directory %s is still there (%v)", claimDir, err)
	}
	deleteTook := time.Since(t2)

	t3 := time.Now()
	if err := c.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	stopTook := time.Since(t3)
	if left := c.Leftovers(); len(left) > 0 {
		t.Errorf("left behind after Stop: %s", strings.Join(left, "; "))
	}

	var summary strings.Builder
	for _, p := range c.Phases() {
		fmt.Fprintf(&summary, "  %-70s %8s\n", p.Name, p.Duration.Round(time.Millisecond))
	}
	fmt.Fprintf(&summary, "  %-70s %8s\n", "start, total (to node Ready, storage class)", startTook.Round(time.Millisecond))
	fmt.Fprintf(&summary, "  %-70s %8s\n", "workload: apply to Deployment available (pod start)", podTook.Round(time.Millisecond))
	fmt.Fprintf(&summary, "  %-70s %8s\n", "workload deleted, volume reclaimed", deleteTook.Round(time.Millisecond))
	fmt.Fprintf(&summary, "  %-70s %8s\n", "stop, total", stopTook.Round(time.Millisecond))
	t.Logf("phases:\n%s", summary.String())
}

func onlyPod(ctx context.Context, t *testing.T, c *realnode.Cluster) corev1.Pod {
	t.Helper()
	var pods corev1.PodList
	if err := c.Client.List(ctx, &pods, client.InNamespace(testNamespace), client.MatchingLabels{"app": "echo"}); err != nil {
		t.Fatal(err)
	}
	var running []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			running = append(running, p)
		}
	}
	if len(running) != 1 {
		t.Fatalf("want one running echo pod, have %s", podSummaryIn(ctx, c, testNamespace))
	}
	return running[0]
}

func podSummaryIn(ctx context.Context, c *realnode.Cluster, namespace string) string {
	var pods corev1.PodList
	if err := c.Client.List(ctx, &pods, client.InNamespace(namespace)); err != nil {
		return err.Error()
	}
	var parts []string
	for _, p := range pods.Items {
		s := fmt.Sprintf("%s %s", p.Name, p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Waiting != nil {
				s += fmt.Sprintf(" (%s: %s)", cs.State.Waiting.Reason, cs.State.Waiting.Message)
			}
		}
		for _, cond := range p.Status.Conditions {
			if cond.Status != corev1.ConditionTrue && cond.Message != "" {
				s += fmt.Sprintf(" [%s: %s]", cond.Type, cond.Message)
			}
		}
		parts = append(parts, s)
	}
	var events corev1.EventList
	if err := c.Client.List(ctx, &events, client.InNamespace(namespace)); err == nil {
		for _, e := range events.Items {
			if e.Type == corev1.EventTypeWarning {
				parts = append(parts, fmt.Sprintf("event %s/%s: %s", e.InvolvedObject.Name, e.Reason, e.Message))
			}
		}
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// waitLoadBalancer waits until the echo Service's status has an address (want, if not empty).
func waitLoadBalancer(ctx context.Context, t *testing.T, c *realnode.Cluster, want string) string {
	t.Helper()
	var ip string
	waitFor(t, 30*time.Second, "a load balancer address "+want, func() (bool, string) {
		var svc corev1.Service
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: testNamespace, Name: "echo"}, &svc); err != nil {
			return false, err.Error()
		}
		if ing := svc.Status.LoadBalancer.Ingress; len(ing) == 1 && (want == "" || ing[0].IP == want) {
			ip = ing[0].IP
			return true, ""
		}
		return false, fmt.Sprint(svc.Status.LoadBalancer.Ingress)
	})
	return ip
}

// httpGet fetches path from addr as role, retrying briefly: kube-proxy programs a new
// endpoint or address within a second or so of the API server having it.
func httpGet(t *testing.T, c *realnode.Cluster, role realnode.ClientRole, addr, path string) string {
	t.Helper()
	var body string
	waitFor(t, 20*time.Second, fmt.Sprintf("GET http://%s%s as %s", addr, path, role), func() (bool, string) {
		b, err := tryHTTPGet(c, role, addr, path)
		if err != nil {
			return false, err.Error()
		}
		body = b
		return true, ""
	})
	return body
}

func tryHTTPGet(c *realnode.Cluster, role realnode.ClientRole, addr, path string) (string, error) {
	hc := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
				return c.DialContext(ctx, role, network, a)
			},
			DisableKeepAlives: true,
		},
	}
	resp, err := hc.Get("http://" + addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	return strings.TrimSpace(string(b)), nil
}

// requireRealNode skips the test where the real node cannot run, or fails it when CI is set.
func requireRealNode(t *testing.T) {
	t.Helper()
	if err := realnode.Available(realnode.Options{}); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the real node cannot run and CI is set: %v", err)
		}
		t.Skipf("the real node cannot run here: %v (set CI=1 to make this a failure)", err)
	}
}

// startCluster starts a real cluster as opts say (images, nodes), logging to the test, and
// stops it when the test ends. Stop is idempotent: a test may stop it earlier to check what is
// left behind. REALNODE_LOGS=DIR keeps the components' logs (etcd, kube-apiserver, kubelet,
// containerd, ...) after the run directory is gone.
func startCluster(ctx context.Context, t *testing.T, opts realnode.Options) *realnode.Cluster {
	t.Helper()
	opts.Log, opts.SaveLogsTo = &testLog{t: t}, os.Getenv("REALNODE_LOGS")
	c, err := realnode.Start(ctx, opts)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return c
}

func waitFor(t *testing.T, timeout time.Duration, what string, done func() (bool, string)) {
	t.Helper()
	poll.Eventually(t, timeout, what, func() (bool, error) {
		ok, last := done()
		return ok, errors.New(last)
	})
}

func realnodeCIDRContains(cidr, ip string) bool {
	_, n, err := net.ParseCIDR(cidr)
	return err == nil && n.Contains(net.ParseIP(ip))
}

func ptrString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// testLog sends the cluster's progress lines to the test log.
type testLog struct {
	t   *testing.T
	mu  sync.Mutex
	buf []byte
}

func (w *testLog) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.t.Log(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	return len(b), nil
}
