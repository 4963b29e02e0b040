package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeftp/ftp-operator/test/harness"
)

// proofManifest is an FTPServer on port 21 with passive ports 30300-30304, plus overrides.
func proofManifest(name, overrides string) string {
	return fmt.Sprintf(`
apiVersion: ftp.kubeftp.dev/v1alpha1
kind: FTPServer
metadata: {name: %s}
spec:
  volumes:
    - name: data
      claimTemplate: {size: 1Gi}
  users:
    - name: auditor
      passwordSecretRef: {name: auditor-ftp}
  ports:
    control: 21
    passive: {start: 30300, end: 30304}
  passiveAddress: {%s}
`, name, overrides)
}

// TestPassiveAddressMustBeRight proves that strict PASV transfers through the load balancer
// work only because the daemon advertises the load balancer's address. Two FTPServers with the
// very same ports run at once (each pod has its own network namespace): "right" advertises the
// load balancer's address; "wrong" tells outside clients its pod IP (a per-CIDR override with
// source PodIP for the outside network), which the outside client cannot reach, as in a real
// cluster. The strict client works against the first and fails against the second, while EPSV
// (which carries no address) works against both; the pod IP refuses the outside client on the
// control port and on the passive ports alike but serves the in-cluster client. Removing the
// override makes the running daemon advertise the right address and the strict client work.
//
// Only the namespace mode can show this: in loopback mode every 127.x address reaches the pod.
func TestPassiveAddressMustBeRight(t *testing.T) {
	eachMode(t, func(t *testing.T, c *cluster) {
		if !c.podIPsHidden {
			t.Skip("loopback mode cannot catch a wrong PASV address: every 127.0.0.0/8 address reaches the pod (docs/testing.md)")
		}
		testPassiveAddressMustBeRight(t, c)
	})
}

func testPassiveAddressMustBeRight(t *testing.T, c *cluster) {
	ctx := context.Background()
	ns := c.newNamespace(t, "proof")
	c.apply(t, ns, "apiVersion: v1\nkind: Secret\nmetadata: {name: auditor-ftp}\nstringData: {password: audit}\n")
	outsideCIDR := c.h.ClientIP(harness.Outside) + "/32"
	c.apply(t, ns, proofManifest("right", ""))
	c.apply(t, ns, proofManifest("wrong", "overrides: [{cidrs: ["+outsideCIDR+"], source: PodIP}]"))
	right := c.waitReady(t, ns, "right")
	wrong := c.waitReady(t, ns, "wrong")
	rightAddr, wrongAddr := hostPort(t, right.Status.Endpoint), hostPort(t, wrong.Status.Endpoint)
	if rightAddr == wrongAddr || c.h.PodPID(ns, "right") == 0 || c.h.PodPID(ns, "wrong") == 0 {
		t.Fatalf("want two servers running at once on their own addresses, got %s and %s", rightAddr, wrongAddr)
	}
	rightLB, _, _ := strings.Cut(rightAddr, ":")
	wrongLB, _, _ := strings.Cut(wrongAddr, ":")
	wrongPod := c.h.PodIP(ns, "wrong")
	wrongPID := c.h.PodPID(ns, "wrong")

	local := filepath.Join(t.TempDir(), "evidence.bin")
	if err := os.WriteFile(local, randomBytes(512<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	upload := func(addr, mode, name string) (string, error) {
		return c.strictTransfer(harness.Outside, addr, "auditor", "audit", mode, "upload", local, name)
	}

	// The right address: the strict client follows the 227 reply to the load balancer.
	out, err := upload(rightAddr, "pasv", "right.bin")
	if err != nil || !strings.Contains(out, pasvForm(rightLB)) {
		t.Fatalf("strict PASV to the server advertising its load balancer address: %v\n%s", err, out)
	}

	// The wrong address: the 227 reply carries the pod IP and the data connection fails.
	out, err = upload(wrongAddr, "pasv", "wrong.bin")
	if err == nil {
		t.Fatalf("strict PASV worked although the server advertised its pod IP %s: the pod network is reachable from outside\n%s", wrongPod, out)
	}
	if !strings.Contains(out, "227") || !strings.Contains(out, pasvForm(wrongPod)) {
		t.Fatalf("want a 227 reply carrying the pod IP %s before the failure:\n%s", wrongPod, out)
	}
	t.Logf("strict PASV client sent to the pod IP failed, as it must: %s", strings.TrimSpace(out))
	// EPSV carries no address: the same server works through the load balancer.
	if out, err := upload(wrongAddr, "epsv", "wrong-epsv.bin"); err != nil || !strings.Contains(out, "229") {
		t.Fatalf("EPSV to the same server: %v\n%s", err, out)
	}

	// The pod IP is closed to the outside client on every port, and open to the in-cluster one.
	for _, port := range []int{2121, 30300} {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := c.h.DialContext(dctx, harness.Outside, "tcp", fmt.Sprintf("%s:%d", wrongPod, port))
		cancel()
		if err == nil {
			conn.Close()
			t.Fatalf("the outside client reached the pod IP %s:%d directly", wrongPod, port)
		}
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := c.h.DialContext(dctx, harness.InCluster, "tcp", wrongPod+":2121")
	cancel()
	if err != nil {
		t.Fatalf("the in-cluster client cannot reach the pod IP: %v", err)
	}
	conn.Close()

	// Remove the override: the running daemon now advertises the load balancer's address.
	srv := c.get(t, ns, "wrong")
	before := srv.DeepCopy()
	srv.Spec.PassiveAddress.Overrides = nil
	if err := c.client.Patch(ctx, srv, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the fixed server to serve the strict client", func() error {
		out, err := upload(wrongAddr, "pasv", "fixed.bin")
		if err != nil || !strings.Contains(out, pasvForm(wrongLB)) {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	if now := c.h.PodPID(ns, "wrong"); now != wrongPID {
		t.Fatalf("the daemon was restarted for an address override change (pid %d -> %d)", wrongPID, now)
	}
	for _, name := range []string{"right", "wrong"} {
		c.deleteAndWait(t, ns, name)
	}
}
