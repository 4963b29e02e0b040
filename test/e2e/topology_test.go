package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kubeftp/ftp-operator/internal/testenv"
	"github.com/kubeftp/ftp-operator/test/harness"
)

// TestInClusterAndOutsideClientsAtOnce: an in-cluster client (in the pod network) gets the
// pod's address in PASV replies through the per-CIDR override while an outside client gets the
// load balancer's, and both transfer at the same time. In namespace mode each address is the
// only one that works for its client: the pod IP is unreachable from outside.
func TestInClusterAndOutsideClientsAtOnce(t *testing.T) { eachMode(t, testInClusterAndOutside) }

func testInClusterAndOutside(t *testing.T, c *cluster) {
	ns := c.newNamespace(t, "split")
	c.apply(t, ns, `
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
      - cidrs: [`+c.h.PodNetworkCIDR()+`]
        source: PodIP
`)
	s := c.waitReady(t, ns, "split")
	lbAddr := hostPort(t, s.Status.Endpoint)
	lbIP, _, _ := strings.Cut(lbAddr, ":")
	podIP := c.h.PodIP(ns, "split")

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
	for i, cl := range []struct {
		role       harness.ClientRole
		addr, name string
	}{
		{harness.InCluster, podIP + ":2121", "inside.bin"}, // in-cluster: straight to the pod
		{harness.Outside, lbAddr, "outside.bin"},           // outside: through the load balancer
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := c.strictTransfer(cl.role, cl.addr, "etl", "etl-pass", "pasv", "upload", local, cl.name)
			results[i] = result{out, err}
		}()
	}
	wg.Wait()
	if r := results[0]; r.err != nil || !strings.Contains(r.out, pasvForm(podIP)) {
		t.Fatalf("in-cluster client: want the pod address %s in PASV: %v\n%s", podIP, r.err, r.out)
	}
	if r := results[1]; r.err != nil || !strings.Contains(r.out, pasvForm(lbIP)) {
		t.Fatalf("outside client: want the load balancer address %s in PASV: %v\n%s", lbIP, r.err, r.out)
	}
	// Neither path rewrote the client's address.
	log := c.h.PodLog(ns, "split")
	for _, role := range []harness.ClientRole{harness.InCluster, harness.Outside} {
		if want := fmt.Sprintf(`"client_ip":%q`, c.h.ClientIP(role)); !strings.Contains(log, want) {
			t.Errorf("the daemon's log never shows the %s client as %s", role, want)
		}
	}
	for _, name := range []string{"inside.bin", "outside.bin"} {
		got, err := os.ReadFile(filepath.Join(c.h.ClaimPath(ns, "split-data"), "etl", name))
		if err != nil || sha(got) != sha(payload) {
			t.Fatalf("%s did not land whole: %v", name, err)
		}
	}
	c.deleteAndWait(t, ns, "split")
}

// TestNodePortServer: without a load balancer, clients reach a node address and node ports,
// and PASV replies carry the declared node address.
func TestNodePortServer(t *testing.T) { eachMode(t, testNodePort) }

func testNodePort(t *testing.T, c *cluster) {
	ns := c.newNamespace(t, "nodeport")
	node := c.h.NodeAddress()
	c.apply(t, ns, `
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
	s := c.waitReady(t, ns, "scanners")
	if s.Status.Endpoint != "ftp://"+node+":30021" {
		t.Fatalf("endpoint %s, want the node address and node port", s.Status.Endpoint)
	}
	local := filepath.Join(t.TempDir(), "scan.pdf")
	scan := randomBytes(200 << 10)
	if err := os.WriteFile(local, scan, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := c.strictTransfer(harness.Outside, node+":30021", "scanner", "scan", "pasv", "upload", local, "scan.pdf")
	if err != nil || !strings.Contains(out, pasvForm(node)) {
		t.Fatalf("NodePort transfer: %v\n%s", err, out)
	}
	if got, err := os.ReadFile(filepath.Join(c.h.ClaimPath(ns, "scanners-scans"), "scanner", "scan.pdf")); err != nil || sha(got) != sha(scan) {
		t.Fatalf("the scan did not land whole on the claim: %v", err)
	}
	c.deleteAndWait(t, ns, "scanners")
}

// TestSampleIsServedAtTheLoadBalancer applies the minimal sample from config/samples as a user
// would (with its password Secret) and checks it becomes Ready at the load balancer's address
// on port 21, and takes a login there.
func TestSampleIsServedAtTheLoadBalancer(t *testing.T) { eachMode(t, testSample) }

func testSample(t *testing.T, c *cluster) {
	ns := c.newNamespace(t, "sample")
	sample, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "samples", "ftp_v1alpha1_ftpserver.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c.apply(t, ns, "apiVersion: v1\nkind: Secret\nmetadata: {name: partner-ftp}\nstringData: {password: sample}\n")
	c.apply(t, ns, string(sample))
	s := c.waitReady(t, ns, "files")
	c.reportPods(context.Background(), ns, "the daemon of config/samples' FTPServer, from the imported image")
	if !strings.HasPrefix(s.Status.Endpoint, "ftp://"+c.lbPrefix) || !strings.HasSuffix(s.Status.Endpoint, ":21") {
		t.Fatalf("endpoint %s: want the load balancer address on port 21", s.Status.Endpoint)
	}
	// In loopback mode only root may listen on port 21; in namespace mode the router's DNAT
	// serves it.
	if c.podIPsHidden || os.Geteuid() == 0 {
		conn := c.dial(t, harness.Outside, hostPort(t, s.Status.Endpoint))
		if err := conn.Login("partner", "sample"); err != nil {
			t.Fatalf("login through port 21: %v", err)
		}
	}
	c.deleteAndWait(t, ns, "files")
}
