package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/test/harness"
)

// guardedManifest is an FTPServer with the default NetworkPolicy: FTP from anyone, the ops port
// from the operator's pods only.
func guardedManifest(c *cluster) string {
	return fmt.Sprintf(`
apiVersion: v1
kind: Secret
metadata: {name: guard-ftp}
stringData: {password: guard-pass}
---
apiVersion: ftp.kubeftp.dev/v1alpha1
kind: FTPServer
metadata: {name: guarded}
spec:
  volumes:
    - name: data
      claimTemplate: {size: 1Gi}
  users:
    - name: guard
      passwordSecretRef: {name: guard-ftp}
  ports:
    control: %d
    passive: {start: 30400, end: 30404}
`, c.control)
}

// TestNetworkPolicyIsEnforced (real node: kube-router's network policy controller enforces
// the operator's NetworkPolicy there) proves that the policy admits what the product needs and
// nothing else.
// The server goes Ready, so the operator's pod reached the ops port through it (the readiness
// handshake); the outside client transfers in passive mode, PASV and EPSV, through the load
// balancer (the control port and the passive range with endPort, the client's own address kept
// by externalTrafficPolicy Local); the in-cluster client, neither the operator nor a metrics
// source, is dropped at the ops port. Narrowing allowedSources to another address drops the
// outside client; naming the outside client's address admits it again, data connections
// included; naming the in-cluster client in metricsSources lets it scrape. Turning the policy
// off opens the ops port to the in-cluster client: what refused it was the policy. The
// several-replicas scenario runs under the same enforcement, so the relay rule between
// replicas is proved there, across nodes and within one.
func TestNetworkPolicyIsEnforced(t *testing.T) {
	eachMode(t, func(t *testing.T, c *cluster) {
		if c.realNode == nil {
			t.Skip("only the real node enforces NetworkPolicies (kube-router's controller); the stand-in's pods are network namespaces with no policy engine (docs/testing.md)")
		}
		testNetworkPolicyIsEnforced(t, c)
	})
}

func testNetworkPolicyIsEnforced(t *testing.T, c *cluster) {
	ctx := context.Background()
	ns := c.newNamespace(t, "guard")
	c.apply(t, ns, guardedManifest(c))
	srv := c.waitReady(t, ns, "guarded") // the operator's handshake passed the policy
	addr := hostPort(t, srv.Status.Endpoint)
	lb, _, _ := strings.Cut(addr, ":")
	pods := c.daemonPods(t, ns, "guarded")
	if len(pods) != 1 || pods[0].Status.PodIP == "" {
		t.Fatalf("want one daemon pod with an IP, got %d", len(pods))
	}
	podIP := pods[0].Status.PodIP
	// The pod's own ports: NetworkPolicies see traffic after the Service's translation.
	ops, control := net.JoinHostPort(podIP, "8080"), net.JoinHostPort(podIP, "2121")

	local := filepath.Join(t.TempDir(), "guarded.bin")
	if err := os.WriteFile(local, randomBytes(256<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	transfer := func(mode, name string) (string, error) {
		return c.strictTransfer(harness.Outside, addr, "guard", "guard-pass", mode, "upload", local, name)
	}
	// reach dials target as role and reports whether the connection was made within 3 s (the
	// enforcer rejects what no rule admits; a drop would be a time-out).
	reach := func(role harness.ClientRole, target string) bool {
		dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		conn, err := c.h.DialContext(dctx, role, "tcp", target)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}
	patchPolicy := func(mutate func(*ftpv1alpha1.NetworkPolicySpec)) {
		t.Helper()
		s := c.get(t, ns, "guarded")
		before := s.DeepCopy()
		mutate(&s.Spec.NetworkPolicy)
		if err := c.client.Patch(ctx, s, client.MergeFrom(before)); err != nil {
			t.Fatal(err)
		}
	}
	ipBlock := func(ip string) networkingv1.NetworkPolicyPeer {
		return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: ip + "/32"}}
	}

	// FTP from anyone: both passive forms through the load balancer, under the policy.
	for _, mode := range []string{"pasv", "epsv"} {
		if out, err := transfer(mode, mode+".bin"); err != nil || (mode == "pasv" && !strings.Contains(out, pasvForm(lb))) {
			t.Fatalf("strict %s upload through the policy: %v\n%s", mode, err, out)
		}
	}
	// The ops port is the operator's: the in-cluster client is dropped there, while it still
	// reaches the control port.
	if reach(harness.InCluster, ops) {
		t.Fatalf("the in-cluster client reached the ops port %s, which the policy admits from the operator only", ops)
	}
	if !reach(harness.InCluster, control) {
		t.Fatal("the in-cluster client cannot reach the control port, which the policy admits from anyone")
	}

	// allowedSources names another address: the outside client is dropped at the control port.
	spare := c.spareLB // an address of the documentation range that no client has
	patchPolicy(func(np *ftpv1alpha1.NetworkPolicySpec) {
		np.AllowedSources = []networkingv1.NetworkPolicyPeer{ipBlock(spare)}
	})
	eventually(t, 30*time.Second, "the outside client to be dropped once allowedSources leaves it out", func() error {
		if reach(harness.Outside, addr) {
			return fmt.Errorf("the outside client still reaches %s", addr)
		}
		return nil
	})
	// Its address admits it again, data connections included.
	patchPolicy(func(np *ftpv1alpha1.NetworkPolicySpec) {
		np.AllowedSources = []networkingv1.NetworkPolicyPeer{ipBlock(spare), ipBlock(c.h.ClientIP(harness.Outside))}
	})
	eventually(t, 30*time.Second, "the outside client to transfer once allowedSources names it", func() error {
		if out, err := transfer("pasv", "admitted.bin"); err != nil {
			return fmt.Errorf("%v\n%s", err, out)
		}
		return nil
	})
	if out, err := transfer("epsv", "admitted-epsv.bin"); err != nil {
		t.Fatalf("strict EPSV upload once admitted: %v\n%s", err, out)
	}
	if reach(harness.InCluster, control) {
		t.Fatal("the in-cluster client reaches the control port although allowedSources leaves it out")
	}

	// metricsSources names the in-cluster client: it scrapes the ops port.
	patchPolicy(func(np *ftpv1alpha1.NetworkPolicySpec) {
		np.MetricsSources = []networkingv1.NetworkPolicyPeer{ipBlock(c.h.ClientIP(harness.InCluster))}
	})
	httpc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			return c.h.DialContext(ctx, harness.InCluster, network, a)
		}}}
	eventually(t, 30*time.Second, "the metrics source to scrape the ops port", func() error {
		resp, err := httpc.Get("http://" + ops + "/metrics")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/metrics: %s", resp.Status)
		}
		return nil
	})

	// Without the policy the ops port is open to anyone in the pod network: the refusals above
	// were the policy's, not the network's.
	patchPolicy(func(np *ftpv1alpha1.NetworkPolicySpec) {
		np.MetricsSources = nil
		np.Enabled = ptr.To(false)
	})
	eventually(t, 30*time.Second, "the NetworkPolicy to be deleted", func() error {
		var nps networkingv1.NetworkPolicyList
		if err := c.client.List(ctx, &nps, client.InNamespace(ns)); err != nil {
			return err
		}
		if len(nps.Items) != 0 {
			return fmt.Errorf("%d NetworkPolicies left", len(nps.Items))
		}
		return nil
	})
	eventually(t, 30*time.Second, "the in-cluster client to reach the ops port without a policy", func() error {
		if !reach(harness.InCluster, ops) {
			return fmt.Errorf("%s refused", ops)
		}
		return nil
	})
}
