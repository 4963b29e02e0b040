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
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeftp/ftp-operator/test/realnode"
)

// twoNodeWorkload is the echo Deployment of two replicas on different nodes (required
// anti-affinity), sharing one ReadWriteMany claim, behind a LoadBalancer Service that keeps
// client addresses (externalTrafficPolicy Local) and a ClusterIP Service.
var twoNodeWorkload = echoWorkload("ReadWriteMany", 2, `      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            - topologyKey: kubernetes.io/hostname
              labelSelector: {matchLabels: {app: echo}}
`) + `---
apiVersion: v1
kind: Service
metadata: {name: echo-internal}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: 8080}]
`

// TestTwoNodes starts a cluster of two nodes, each a kubelet, containerd and kube-proxy in
// network and mount namespaces of its own, and checks what a workload spread over them needs:
// both nodes register and run a replica; a ReadWriteMany claim is mounted by both; the load
// balancer spreads outside connections over both nodes, which keep the client's address
// (Local); a ClusterIP reaches the replica on the other node; pods on both nodes reach the API
// server; when one node has no replica left, the load balancer stops sending it connections
// (none fails); Stop leaves nothing behind.
func TestTwoNodes(t *testing.T) {
	requireRealNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := startCluster(ctx, t, realnode.Options{Nodes: 2})

	out, err := c.Kubectl(ctx, "get", "nodes", "-o", "wide")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl get nodes -o wide:\n%s", out)
	names := c.NodeNames()
	if len(names) != 2 {
		t.Fatalf("NodeNames() = %v, want two", names)
	}
	for _, name := range names {
		var node corev1.Node
		if err := c.Client.Get(ctx, client.ObjectKey{Name: name}, &node); err != nil {
			t.Fatalf("node %s: %v", name, err)
		}
		ready := false
		for _, cond := range node.Status.Conditions {
			ready = ready || (cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue)
		}
		if !ready {
			t.Fatalf("node %s is not Ready: %+v", name, node.Status.Conditions)
		}
	}

	if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNamespace}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, testNamespace, []byte(twoNodeWorkload)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "both echo replicas available", func() (bool, string) {
		var d appsv1.Deployment
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: testNamespace, Name: "echo"}, &d); err != nil {
			return false, err.Error()
		}
		return d.Status.AvailableReplicas == 2, fmt.Sprintf("%+v; pods: %s", d.Status, podSummaryIn(ctx, c, testNamespace))
	})
	podNode := map[string]string{} // pod name -> node
	var pods corev1.PodList
	if err := c.Client.List(ctx, &pods, client.InNamespace(testNamespace)); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			podNode[p.Name] = p.Spec.NodeName
			t.Logf("pod %s on %s, IP %s", p.Name, p.Spec.NodeName, p.Status.PodIP)
			if !realnodeCIDRContains(c.PodNetworkCIDR(), p.Status.PodIP) {
				t.Errorf("pod IP %s is not in the pod network %s", p.Status.PodIP, c.PodNetworkCIDR())
			}
		}
	}
	if nodes := distinct(podNode); len(nodes) != 2 {
		t.Fatalf("the two replicas run on %v, want one on each node", nodes)
	}

	// From outside: each connection has its own source port, and the load balancer hashes it
	// to one of the two nodes; kube-proxy there sends it to the local replica.
	lb := waitLoadBalancer(ctx, t, c, "")
	waitFor(t, 30*time.Second, "the load balancer routing "+lb+" over both nodes", func() (bool, string) {
		nodes := c.LoadBalancerNodes(lb)
		return len(nodes) == 2, fmt.Sprint(nodes)
	})
	answered := whoamiFrom(t, c, realnode.Outside, lb+":80", 40, c.ClientIP(realnode.Outside))
	if len(answered) != 2 {
		t.Fatalf("40 connections to %s were answered by %v, want both replicas", lb, answered)
	}
	// In the cluster: the in-cluster client sits on the first node's bridge; the ClusterIP's
	// endpoints are on both nodes, one across the node-to-node route.
	var internal corev1.Service
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: testNamespace, Name: "echo-internal"}, &internal); err != nil {
		t.Fatal(err)
	}
	answered = whoamiFrom(t, c, realnode.InCluster, internal.Spec.ClusterIP+":80", 40, c.ClientIP(realnode.InCluster))
	if len(answered) != 2 {
		t.Fatalf("40 connections to ClusterIP %s were answered by %v, want both replicas", internal.Spec.ClusterIP, answered)
	}
	// Both replicas append to one file on the shared claim.
	visits, err := os.ReadFile(filepath.Join(c.ClaimPath(testNamespace, "data"), "visits.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(visits), "\n"); n != 80 {
		t.Errorf("visits.log on the shared claim has %d lines, want the 80 visits of both replicas", n)
	}
	// Each replica reaches the API server through the kubernetes Service (pod egress from
	// either node); the load balancer brings us to each of them in turn.
	seen := map[string]bool{}
	waitFor(t, 30*time.Second, "/apiserver answered by both replicas", func() (bool, string) {
		for range 10 {
			body, err := tryHTTPGet(c, realnode.Outside, lb+":80", "/apiserver")
			if err != nil {
				return false, err.Error()
			}
			if !strings.Contains(body, "v1.37") {
				return false, "unexpected /apiserver answer: " + body
			}
			who, err := tryHTTPGet(c, realnode.Outside, lb+":80", "/whoami")
			if err == nil {
				seen[podOf(who)] = true
			}
		}
		return len(seen) == 2, fmt.Sprint(seen)
	})

	// One replica left: its node keeps serving; the other node has no endpoint, and the load
	// balancer takes it out of the route instead of sending it connections it would drop.
	var d appsv1.Deployment
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: testNamespace, Name: "echo"}, &d); err != nil {
		t.Fatal(err)
	}
	d.Spec.Replicas = ptr.To[int32](1)
	if err := c.Client.Update(ctx, &d); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "one echo pod left", func() (bool, string) {
		var list corev1.PodList
		if err := c.Client.List(ctx, &list, client.InNamespace(testNamespace)); err != nil {
			return false, err.Error()
		}
		return len(list.Items) == 1 && list.Items[0].DeletionTimestamp == nil, podSummaryIn(ctx, c, testNamespace)
	})
	waitFor(t, 30*time.Second, "the load balancer routing "+lb+" over one node", func() (bool, string) {
		nodes := c.LoadBalancerNodes(lb)
		return len(nodes) == 1, fmt.Sprint(nodes)
	})
	answered = whoamiFrom(t, c, realnode.Outside, lb+":80", 20, c.ClientIP(realnode.Outside))
	if len(answered) != 1 {
		t.Fatalf("after scaling to one replica, 20 connections were answered by %v", answered)
	}

	if err := c.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if left := c.Leftovers(); len(left) > 0 {
		t.Fatalf("left behind after Stop: %v", left)
	}
}

// whoamiFrom makes n connections to addr's /whoami as role, each of which must succeed and see
// the client's own address wantRemote, and returns the pods that answered with their counts.
func whoamiFrom(t *testing.T, c *realnode.Cluster, role realnode.ClientRole, addr string, n int, wantRemote string) map[string]int {
	t.Helper()
	answered := map[string]int{}
	for i := range n {
		body, err := tryHTTPGet(c, role, addr, "/whoami")
		if err != nil {
			t.Fatalf("connection %d of %d to %s as %s: %v", i+1, n, addr, role, err)
		}
		if !strings.HasPrefix(body, "remote="+wantRemote+" ") {
			t.Fatalf("connection %d to %s: the server saw %q, want the client's own address %s", i+1, addr, body, wantRemote)
		}
		answered[podOf(body)]++
	}
	t.Logf("%d connections to %s as %s, answered by %v", n, addr, role, answered)
	return answered
}

// podOf is the pod named in a /whoami answer ("remote=... pod=NAME uid=...").
func podOf(whoami string) string {
	for _, f := range strings.Fields(whoami) {
		if name, ok := strings.CutPrefix(f, "pod="); ok {
			return name
		}
	}
	return ""
}

func distinct(m map[string]string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range m {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
