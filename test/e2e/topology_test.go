package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/internal/testenv"
)

// In loopback mode the "pod network" is 127.0.10.0/24, so an in-cluster client has an address
// there; outside clients come from elsewhere in 127.0.0.0/8.
const (
	podNetworkCIDR  = "127.0.10.0/24"
	inClusterClient = "127.0.10.250"
	outsideClient   = "127.0.40.9"
)

// TestInClusterAndOutsideClientsAtOnce: an in-cluster client gets the pod's address in PASV
// replies through the per-CIDR override while an outside client gets the load balancer's, and
// both transfer at the same time.
func TestInClusterAndOutsideClientsAtOnce(t *testing.T) {
	requireHarness(t)
	ns := newNamespace(t, "split")
	apply(t, ns, `
apiVersion: v1
kind: Secret
metadata: {name: etl-ftp}
stringData: {password: etl-pass}
---
apiVersion: ftp.kubeftp.dev/v1alpha1
kind: FTPServer
metadata: {name: split}
spec:
  volumes:
    - name: data
      claimTemplate: {size: 1Gi}
  users:
    - name: etl
      passwordSecretRef: {name: etl-ftp}
  ports:
    control: 2121
    passive: {start: 30200, end: 30209}
  passiveAddress:
    overrides:
      - cidrs: [`+podNetworkCIDR+`]
        source: PodIP
`)
	s := waitReady(t, ns, "split")
	lbAddr := hostPort(t, s.Status.Endpoint)
	lbIP, _, _ := strings.Cut(lbAddr, ":")
	podIP := h.PodIP(ns, "split")

	payload := randomBytes(1 << 20)
	local := filepath.Join(t.TempDir(), "p.bin")
	if err := os.WriteFile(local, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	type result struct {
		out string
		err error
	}
	results := make([]result, 2)
	var wg sync.WaitGroup
	for i, c := range []struct{ addr, source, name string }{
		{podIP + ":2121", inClusterClient, "inside.bin"}, // in-cluster: straight to the pod
		{lbAddr, outsideClient, "outside.bin"},          // outside: through the load balancer
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := strictTransfer(c.addr, "etl", "etl-pass", c.source, "pasv", "upload", local, c.name)
			results[i] = result{out, err}
		}()
	}
	wg.Wait()
	if r := results[0]; r.err != nil || !strings.Contains(r.out, strings.ReplaceAll(podIP, ".", ",")) {
		t.Fatalf("in-cluster client: want the pod address %s in PASV: %v\n%s", podIP, r.err, r.out)
	}
	if r := results[1]; r.err != nil || !strings.Contains(r.out, strings.ReplaceAll(lbIP, ".", ",")) {
		t.Fatalf("outside client: want the load balancer address %s in PASV: %v\n%s", lbIP, r.err, r.out)
	}
	for _, name := range []string{"inside.bin", "outside.bin"} {
		got, err := os.ReadFile(filepath.Join(h.ClaimPath(ns, "split-data"), "etl", name))
		if err != nil || sha(got) != sha(payload) {
			t.Fatalf("%s did not land whole: %v", name, err)
		}
	}
	deleteAndWait(t, ns, "split")
}

// TestNodePortServer: without a load balancer, clients reach a node address and node ports,
// and PASV replies carry the declared node address.
func TestNodePortServer(t *testing.T) {
	requireHarness(t)
	ns := newNamespace(t, "nodeport")
	node := h.NodeAddress()
	apply(t, ns, `
apiVersion: v1
kind: Secret
metadata: {name: scanner-ftp}
stringData: {password: scan}
---
apiVersion: ftp.kubeftp.dev/v1alpha1
kind: FTPServer
metadata: {name: scanners}
spec:
  volumes:
    - name: scans
      claimTemplate: {size: 1Gi}
  users:
    - name: scanner
      passwordSecretRef: {name: scanner-ftp}
  ports:
    passive: {start: 31100, end: 31104}
  passiveAddress:
    address: `+node+`
  service:
    type: NodePort
    controlNodePort: 30021
`)
	s := waitReady(t, ns, "scanners")
	if s.Status.Endpoint != "ftp://"+node+":30021" {
		t.Fatalf("endpoint %s, want the node address and node port", s.Status.Endpoint)
	}
	local := filepath.Join(t.TempDir(), "scan.pdf")
	if err := os.WriteFile(local, randomBytes(200<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := strictTransfer(node+":30021", "scanner", "scan", outsideClient, "pasv", "upload", local, "scan.pdf")
	if err != nil || !strings.Contains(out, strings.ReplaceAll(node, ".", ",")) {
		t.Fatalf("NodePort transfer: %v\n%s", err, out)
	}
	deleteAndWait(t, ns, "scanners")
}

// TestSampleIsServedAtTheLoadBalancer applies the minimal sample from config/samples as a user
// would (with its password Secret) and checks it becomes Ready at the load balancer's address.
func TestSampleIsServedAtTheLoadBalancer(t *testing.T) {
	requireHarness(t)
	ns := newNamespace(t, "sample")
	sample, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "samples", "ftp_v1alpha1_ftpserver.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	apply(t, ns, "apiVersion: v1\nkind: Secret\nmetadata: {name: partner-ftp}\nstringData: {password: sample}\n")
	apply(t, ns, string(sample))
	s := waitReady(t, ns, "files")
	if !strings.HasPrefix(s.Status.Endpoint, "ftp://127.0.20.") || !strings.HasSuffix(s.Status.Endpoint, ":21") {
		t.Fatalf("endpoint %s: want the load balancer address on port 21", s.Status.Endpoint)
	}
	if os.Geteuid() == 0 {
		// Only root may listen on port 21 in loopback mode; then log in for real.
		c := dial(t, hostPort(t, s.Status.Endpoint))
		if err := c.Login("partner", "sample"); err != nil {
			t.Fatalf("login through port 21: %v", err)
		}
	}
	deleteAndWait(t, ns, "files")
}

// deleteAndWait deletes an FTPServer and waits for its pod to stop, so the next test's pod can
// use the same ports (loopback mode shares one network).
func deleteAndWait(t *testing.T, ns, name string) {
	t.Helper()
	ctx := context.Background()
	if err := h.Client.Delete(ctx, &ftpv1alpha1.FTPServer{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the pod to stop", func() error {
		if h.PodPID(ns, name) != 0 {
			return context.DeadlineExceeded
		}
		var svc corev1.Service
		if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &svc); err == nil {
			return context.DeadlineExceeded // node ports are freed with the Service
		}
		return nil
	})
}
