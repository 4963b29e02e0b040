package realnode_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeftp/ftp-operator/internal/testenv"
	"github.com/kubeftp/ftp-operator/test/realnode"
)

// TestInClusterOperatorOnRealNode installs the operator the way the install guide says
// (`kubectl apply --server-side -k config/default`, with the image set to ours) and lets it run
// as a pod: its RBAC, the restricted Pod Security level of its namespace, its probes, its
// in-cluster API access through the kubernetes Service and its readiness handshake with the
// daemons' pod IPs, through their NetworkPolicy (enforced), are all the real ones. An FTPServer
// it reconciles is then used from outside.
func TestInClusterOperatorOnRealNode(t *testing.T) {
	requireRealNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const repo, tag = "localhost/ftp-operator/ftp-operator", "incluster"

	work := t.TempDir()
	archive, err := realnode.BuildOperatorImage(ctx, work, repo+":"+tag)
	if err != nil {
		t.Fatal(err)
	}
	// NetworkPolicies enforced: the daemons' policy must admit the operator's pod, which
	// config/manager labels ftp.kubeftp.dev/operator, to their ops port (the handshake).
	c := startCluster(ctx, t, realnode.Options{Images: []string{archive}, NetworkPolicies: true})

	// config/default with the image replaced, as a user's overlay does it (`kustomize edit set
	// image`): nothing else. The manager reads its own image from its pod and gives it to the
	// daemons, so they follow the overlay's rewrite too.
	overlay := filepath.Join(work, "overlay")
	if err := os.MkdirAll(overlay, 0o755); err != nil {
		t.Fatal(err)
	}
	base, err := filepath.Rel(overlay, filepath.Join(testenv.RepoRoot(), "config", "default"))
	if err != nil {
		t.Fatal(err)
	}
	kustomization := fmt.Sprintf(`resources:
  - %[1]s
images:
  - name: ghcr.io/kubeftp/ftp-operator
    newName: %[2]s
    newTag: %[3]s
`, base, repo, tag)
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if out, err := c.Kubectl(ctx, "apply", "--server-side", "--force-conflicts", "-k", overlay); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("kubectl apply --server-side -k (config/default, image %s:%s):\n%s", repo, tag, out)
	}
	const ns, manager = "ftp-operator-system", "ftp-operator-controller-manager"
	waitFor(t, 3*time.Minute, "the manager Deployment available", func() (bool, string) {
		var d appsv1.Deployment
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: manager}, &d); err != nil {
			return false, err.Error()
		}
		return d.Status.AvailableReplicas == 1, fmt.Sprintf("%+v; pods: %s", d.Status, podSummaryIn(ctx, c, ns))
	})
	t.Logf("manager available %s after the apply", time.Since(t0).Round(time.Millisecond))

	if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	if err := c.Apply(ctx, operatorNamespace, ftpServerManifest(t)); err != nil {
		t.Fatal(err)
	}
	server, err := c.WaitReady(ctx, operatorNamespace, "files", 3*time.Minute)
	if err != nil {
		t.Fatalf("%v\npods: %s\nmanager log:\n%s", err, podSummaryIn(ctx, c, operatorNamespace), c.PodLog(ns, manager))
	}
	t.Logf("FTPServer Ready %s after the apply: endpoint %s", time.Since(t1).Round(time.Millisecond), server.Status.Endpoint)
	var daemon appsv1.Deployment
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: "files"}, &daemon); err != nil {
		t.Fatal(err)
	}
	if got := daemon.Spec.Template.Spec.Containers[0].Image; got != repo+":"+tag {
		t.Errorf("the daemons run %s, want the overlay's image %s:%s (the manager's own)", got, repo, tag)
	}
	lbIP, port, _ := strings.Cut(strings.TrimPrefix(server.Status.Endpoint, "ftp://"), ":")
	if server.Status.PassiveAddress != lbIP || port != "21" {
		t.Fatalf("endpoint %s, PASV address %s: want the load balancer's address on port 21", server.Status.Endpoint, server.Status.PassiveAddress)
	}

	local := filepath.Join(work, "hello.txt")
	if err := os.WriteFile(local, []byte("hello from outside\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(testenv.RepoRoot(), "test", "e2e", "testdata", "strict_client.py")
	waitFor(t, 30*time.Second, "a strict PASV upload from outside", func() (bool, string) {
		sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
		defer scancel()
		out, err := c.ClientExec(sctx, realnode.Outside, "python3", script, lbIP, "21", "partner", "first-secret",
			c.ClientIP(realnode.Outside), "pasv", "upload", local, "hello.txt")
		return err == nil, fmt.Sprintf("%v: %s", err, out)
	})
	onVolume := filepath.Join(c.ClaimPath(operatorNamespace, "files-data"), "partner", "hello.txt")
	if data, err := os.ReadFile(onVolume); err != nil || string(data) != "hello from outside\n" {
		t.Errorf("the upload is not on the claim's volume (%s): %q, %v", onVolume, data, err)
	}

	// Removing the FTPServer before the operator, as an uninstall would.
	if err := c.Client.Delete(ctx, server); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "the daemon's pod gone", func() (bool, string) {
		var pods corev1.PodList
		if err := c.Client.List(ctx, &pods, client.InNamespace(operatorNamespace)); err != nil {
			return false, err.Error()
		}
		return len(pods.Items) == 0, podSummaryIn(ctx, c, operatorNamespace)
	})
	if err := c.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if left := c.Leftovers(); len(left) > 0 {
		t.Errorf("left behind after Stop: %s", strings.Join(left, "; "))
	}
}
