package e2e

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/internal/testenv"
	"github.com/kubeftp/ftp-operator/test/harness"
)

const (
	replicasPassiveStart = 30800
	replicasPerReplica   = 4
)

// replicasManifest: one server of n replicas on a shared claim, 4 passive ports each. The
// in-cluster client is its metrics source (replicaMetrics scrapes each replica).
func replicasManifest(c *cluster, name string, n int) string {
	return fmt.Sprintf(`
apiVersion: v1
kind: Secret
metadata: {name: %[1]s-ftp}
stringData: {password: many-pass}
---
apiVersion: ftp.kubeftp.dev/v1alpha1
kind: FTPServer
metadata: {name: %[1]s}
spec:
  replicas: %[2]d
  volumes:
    - name: data
      claimTemplate: {size: 1Gi, accessModes: [ReadWriteMany]}
  users:
    - name: many
      passwordSecretRef: {name: %[1]s-ftp}
  ports: {control: %[3]d, passive: {start: %[4]d, end: %[5]d, perReplica: %[6]d}}
  limits: {maxSessionsPerIP: 50}
  drainTimeout: 30s
  networkPolicy:
    metricsSources: [{ipBlock: {cidr: %[7]s/32}}]
`, name, n, c.control, replicasPassiveStart, replicasPassiveStart+3*replicasPerReplica-1, replicasPerReplica, c.h.ClientIP(harness.InCluster))
}

// TestSeveralReplicasOnTwoNodes (real nodes only: a real StatefulSet controller, kube-proxy and
// EndpointSlices) runs the several-replicas scenario (severalReplicas) on a cluster of its own
// with two nodes, each a kubelet, containerd and kube-proxy in network and mount namespaces of
// its own: the replicas spread over both, the load balancer spreads connections over both
// nodes (to those with a ready replica: externalTrafficPolicy Local), and a data connection
// that lands on the other node is relayed across the node-to-node network to the replica that
// answered PASV/EPSV. Two of the three replicas share a node, so relays within a node are
// tested too; the scenario no longer runs a second time on the one-node cluster (it cost 2.5
// minutes of every CI run and tested nothing the two nodes do not).
func TestSeveralReplicasOnTwoNodes(t *testing.T) {
	realNode.require(t) // the same preconditions; skipped with the real-node mode
	c := &cluster{mode: realNodeMode + "-2nodes", lbPrefix: realNode.lbPrefix, spareLB: realNode.spareLB, control: realNode.control, podIPsHidden: true}
	if err := startRealNode(c, t.TempDir(), 2); err != nil {
		t.Fatalf("start a cluster of two nodes: %v", err)
	}
	t.Cleanup(func() {
		if err := c.h.Stop(); err != nil {
			t.Errorf("stop the cluster of two nodes: %v", err)
		}
	})
	severalReplicas(t, c)
}

// severalReplicas: three replicas behind one load-balancer address. 200 downloads from 20
// client addresses, half by a strict client that connects where PASV says and half by curl with
// its defaults (EPSV), all succeed and are whole, and every data connection that reached a
// replica other than the one that answered its PASV/EPSV was relayed to that one (the owners'
// relay counters match the relays', none refused; on several nodes, some relays crossed from
// one node to the other). A replica killed mid-run fails only the transfers it owned or
// carried; new sessions succeed once kube-proxy has dropped it. A restart-relevant change rolls
// one replica at a time under running downloads; 3 -> 1 -> 3 are plain scales of the same
// StatefulSet under running downloads and new sessions, all of which succeed (the removed
// replicas drain, exit 0).
func severalReplicas(t *testing.T, c *cluster) {
	sources, err := c.realNode.AddOutsideAddresses(20)
	if err != nil {
		t.Fatal(err)
	}
	ns := c.newNamespace(t, "replicas")
	c.apply(t, ns, replicasManifest(c, "multi", 3))
	s := c.waitAllReplicas(t, ns, "multi", 3)
	addr := hostPort(t, s.Status.Endpoint)
	if nodes := c.realNode.NodeNames(); len(nodes) > 1 {
		// Spread by default (topology spread over hostnames).
		on := map[string]bool{}
		for _, p := range c.daemonPods(t, ns, "multi") {
			on[p.Spec.NodeName] = true
		}
		if len(on) != len(nodes) {
			t.Fatalf("the 3 replicas run on %v, want them spread over all of %v", on, nodes)
		}
	}
	if got := fmt.Sprint(s.Status.Replicas); !strings.Contains(got, "30800-30803") || !strings.Contains(got, "30808-30811") {
		t.Fatalf("status.replicas %s", got)
	}

	home := filepath.Join(c.h.ClaimPath(ns, "multi-data"), "many")
	small := randomBytes(256 << 10)
	if err := os.WriteFile(filepath.Join(home, "small.bin"), small, 0o644); err != nil {
		t.Fatal(err)
	}
	big := randomBytes(48 << 20)
	if err := os.WriteFile(filepath.Join(home, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("200 transfers from 20 addresses", func(t *testing.T) {
		fails := c.transfersFrom(t, addr, sources, 10, sha(small))
		if len(fails) > 0 {
			t.Fatalf("%d of 200 transfers failed:\n%s", len(fails), strings.Join(fails, "\n"))
		}
		var sent, received, refused, failed float64
		for _, m := range c.replicaMetrics(t, ns, "multi") {
			sent += m[`ftpd_relayed_data_connections_total{direction="sent",result="relayed"}`]
			failed += m[`ftpd_relayed_data_connections_total{direction="sent",result="failed"}`]
			received += m[`ftpd_relayed_data_connections_total{direction="received",result="accepted"}`]
			refused += m[`ftpd_relayed_data_connections_total{direction="received",result="refused"}`]
		}
		t.Logf("of 200 data connections, %v reached another replica than their session's and were relayed", sent)
		if sent != received || refused != 0 || failed != 0 {
			t.Fatalf("relays: %v sent, %v accepted, %v refused, %v failed", sent, received, refused, failed)
		}
		if sent == 0 {
			t.Fatal("no data connection reached another replica: the load balancer did not spread them, and the test shows nothing")
		}
		if len(c.realNode.NodeNames()) > 1 {
			across := c.relaysAcrossNodes(t, ns, "multi")
			t.Logf("of those, %d crossed from one node to the other", across)
			if across == 0 {
				t.Fatal("no relay crossed between the nodes: the two-node path was not exercised")
			}
		}
	})

	t.Run("a replica killed mid-run", func(t *testing.T) {
		// On several nodes the victim is a replica alone on its node: the load balancer must
		// then stop sending that node new connections (its kube-proxy has no endpoint left).
		pods := c.daemonPods(t, ns, "multi")
		victimOrdinal := 1
		if len(c.realNode.NodeNames()) > 1 {
			victimOrdinal = loneReplica(t, pods)
		}
		victim := replicaPodName("multi", victimOrdinal)
		victimIP := ""
		for _, p := range pods {
			if p.Name == victim {
				victimIP = p.Status.PodIP
			}
		}
		t.Logf("the victim: %s (%s)", victim, podList(pods))
		// Kill once every download has bytes on disk; those not yet whole then are in flight.
		downloads := c.slowDownloads(t, addr, sources[:12], big)
		// A crash, not a stop: SIGKILL to the daemon, no drain. The kubelet restarts it.
		pid := c.realNode.ContainerPID(ns, victim)
		if pid == 0 {
			t.Fatalf("no running daemon in %s", victim)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		inFlight := map[string]bool{}
		for _, d := range downloads.started {
			if fi, err := os.Stat(d.file); err == nil && fi.Size() < int64(len(big)) {
				inFlight[d.src] = true
			}
		}
		what := c.waitReplicaDownOrBack(t, ns, "multi", victim, victimIP, pid)
		t.Logf("%s %.1f s after the kill", what, time.Since(killed).Seconds())
		// New sessions succeed at once.
		if fails := c.transfersFrom(t, addr, sources[12:], 2, sha(small)); len(fails) > 0 {
			t.Fatalf("new sessions after the kill failed:\n%s", strings.Join(fails, "\n"))
		}
		var failedOwn, failedCarried []string
		involved := 0 // in flight at the kill, owned or carried by the victim
		for _, r := range downloads.wait() {
			port := epsvPort(r.out)
			owner := (port - replicasPassiveStart) / replicasPerReplica
			if inFlight[r.src] && (owner == victimOrdinal || c.relayedThrough(t, ns, replicaPodName("multi", owner), r.src, port, victimIP)) {
				involved++
			}
			if r.err == nil {
				t.Logf("in flight from %s, port %d (multi-%d's): whole after %.1f s", r.src, port, (port-replicasPassiveStart)/replicasPerReplica, r.took.Seconds())
				continue
			}
			switch {
			case owner == victimOrdinal:
				failedOwn = append(failedOwn, r.src)
			case c.relayedThrough(t, ns, replicaPodName("multi", owner), r.src, port, victimIP):
				failedCarried = append(failedCarried, r.src)
			default:
				t.Errorf("a transfer neither owned nor carried by the killed replica failed (from %s, port %d, owner multi-%d): %v\n%s", r.src, port, owner, r.err, r.out)
			}
		}
		t.Logf("in flight at the kill: %d of 12; failed: %d owned by %s, %d relayed through it", len(inFlight), len(failedOwn), victim, len(failedCarried))
		if involved == 0 {
			t.Fatal("no transfer in flight at the kill was owned or carried by the killed replica: the scenario tested nothing")
		}
		c.waitAllReplicas(t, ns, "multi", 3) // the StatefulSet brings it back
	})

	t.Run("a restart-relevant change rolls one replica at a time", func(t *testing.T) {
		downloads := c.slowDownloads(t, addr, sources[:12], big)
		before := map[string]types.UID{}
		for _, p := range c.daemonPods(t, ns, "multi") {
			before[p.Name] = p.UID
		}
		patchSpec(t, c, ns, "multi", func(s *ftpv1alpha1.FTPServer) {
			s.Spec.Limits.IdleTimeout = &metav1.Duration{Duration: 7 * time.Minute}
		})
		// Watch the roll: at most one replica out of service at any time.
		deadline := time.Now().Add(180 * time.Second)
		for {
			if time.Now().After(deadline) {
				t.Fatalf("the roll did not finish in 180 s: %s", podList(c.daemonPods(t, ns, "multi")))
			}
			pods := c.daemonPods(t, ns, "multi")
			serving, replaced := 0, 0
			for i := range pods {
				p := &pods[i]
				if p.DeletionTimestamp == nil && podIsReady(p) {
					serving++
				}
				if p.DeletionTimestamp == nil && before[p.Name] != "" && before[p.Name] != p.UID {
					replaced++
				}
			}
			if serving < 2 {
				t.Fatalf("two replicas out of service at once during the roll: %s", podList(pods))
			}
			if replaced == 3 && serving == 3 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, err := range downloads.failures() {
			t.Error(err)
		}
		c.waitAllReplicas(t, ns, "multi", 3)
	})

	// Between one and several replicas the StatefulSet stays (shared storage): 3 -> 1 -> 3 are
	// plain scales, with the removed replicas draining as peers.
	sts := &appsv1.StatefulSet{}
	if err := c.client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "multi"}, sts); err != nil {
		t.Fatal(err)
	}
	t.Run("scaling 3 -> 1 drains the removed replicas", func(t *testing.T) {
		c.scaleUnderLoad(t, ns, "multi", addr, sources, big, small, 1)
		eventually(t, 30*time.Second, "the removed replicas' exit", func() error {
			if exit, ok := c.h.LastExit(ns, "multi"); !ok || (exit.Pod != "multi-1" && exit.Pod != "multi-2") || exit.Status != "exit status 0" {
				return fmt.Errorf("last exit of the StatefulSet's pods: %+v (want multi-1 or multi-2, drained: exit status 0)", exit)
			}
			return nil
		})
	})
	t.Run("scaling 1 -> 3 serves throughout", func(t *testing.T) {
		c.scaleUnderLoad(t, ns, "multi", addr, sources, big, small, 3)
		after := &appsv1.StatefulSet{}
		if err := c.client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "multi"}, after); err != nil || after.UID != sts.UID {
			t.Fatalf("the StatefulSet after 3 -> 1 -> 3: %v, uid %s (was %s): the workload was replaced", err, after.UID, sts.UID)
		}
		var deployments appsv1.DeploymentList
		if err := c.client.List(context.Background(), &deployments, client.InNamespace(ns)); err != nil || len(deployments.Items) > 0 {
			t.Fatalf("Deployments next to the StatefulSet: %d (%v)", len(deployments.Items), err)
		}
	})
	c.deleteAndWait(t, ns, "multi")
}

// scaleUnderLoad sets the replicas of FTPServer name to n while rate-limited downloads run from
// sources[:12] and new sessions start from sources[12:] (three strict-client transfers each):
// every one must succeed and be whole. The replicas that stay serve throughout; those removed
// drain their own transfers and those relayed to them, and during the daemon's shutdown delay
// still serve the sessions kube-proxy sends them until its next sync. It returns once all n
// replicas serve.
func (c *cluster) scaleUnderLoad(t *testing.T, ns, name, addr string, sources []string, big, small []byte, n int) {
	t.Helper()
	downloads := c.slowDownloads(t, addr, sources[:12], big)
	patchSpec(t, c, ns, name, func(s *ftpv1alpha1.FTPServer) { s.Spec.Replicas = ptr.To(int32(n)) })
	if fails := c.transfersFrom(t, addr, sources[12:], 3, sha(small)); len(fails) > 0 {
		t.Errorf("new sessions while scaling to %d failed:\n%s", n, strings.Join(fails, "\n"))
	}
	for _, err := range downloads.failures() {
		t.Error(err)
	}
	c.waitAllReplicas(t, ns, name, n)
	if fails := c.transfersFrom(t, addr, sources[:5], 2, sha(small)); len(fails) > 0 {
		t.Errorf("after scaling to %d: %d transfers failed:\n%s", n, len(fails), strings.Join(fails, "\n"))
	}
}

// loneReplica is the ordinal of a replica that has its node to itself.
func loneReplica(t *testing.T, pods []corev1.Pod) int {
	t.Helper()
	perNode := map[string]int{}
	for _, p := range pods {
		perNode[p.Spec.NodeName]++
	}
	for _, p := range pods {
		if perNode[p.Spec.NodeName] == 1 {
			ord, err := strconv.Atoi(p.Name[strings.LastIndexByte(p.Name, '-')+1:])
			if err == nil {
				return ord
			}
		}
	}
	t.Fatalf("no replica has a node to itself: %s", podList(pods))
	return -1
}

// replicaPodName is the StatefulSet's pod of ordinal i.
func replicaPodName(server string, i int) string { return server + "-" + strconv.Itoa(i) }

// download is one rate-limited curl download of big.bin (slowDownloads).
type download struct {
	src, file string        // its source address, where it writes
	out       string        // curl -v's output
	err       error         // its failure; a download that is not whole counts
	took      time.Duration // from the start of all of them to its end
}

// downloadsRunning are the downloads slowDownloads started.
type downloadsRunning struct {
	started []download
	done    chan download
}

// wait waits for every download and returns them, in the order they ended.
func (d downloadsRunning) wait() []download {
	var out []download
	for range d.started {
		out = append(out, <-d.done)
	}
	return out
}

// failures waits for every download and returns the errors of those that failed.
func (d downloadsRunning) failures() []error {
	var errs []error
	for _, r := range d.wait() {
		if r.err != nil {
			// curl -v's last lines: the replies before the end.
			lines := strings.Split(strings.TrimSpace(r.out), "\n")
			errs = append(errs, fmt.Errorf("download from %s: %w: %s", r.src, r.err, strings.Join(lines[max(0, len(lines)-15):], "\n")))
		}
	}
	return errs
}

// slowDownloads starts a rate-limited (2 MiB/s) curl download of big.bin from each source and
// returns once every one has bytes on disk.
func (c *cluster) slowDownloads(t *testing.T, addr string, sources []string, big []byte) downloadsRunning {
	t.Helper()
	back := t.TempDir()
	d := downloadsRunning{done: make(chan download, len(sources))}
	began := time.Now()
	for i, src := range sources {
		d.started = append(d.started, download{src: src, file: filepath.Join(back, fmt.Sprintf("big-%d.bin", i))})
	}
	for _, dl := range d.started {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			out, err := c.h.ClientExec(ctx, harness.Outside, "curl", "-sS", "-v", "--interface", dl.src, "--limit-rate", "2M",
				"-o", dl.file, fmt.Sprintf("ftp://many:many-pass@%s/big.bin", addr))
			if err == nil {
				if data, rerr := os.ReadFile(dl.file); rerr != nil || sha(data) != sha(big) {
					err = fmt.Errorf("curl succeeded but the file is not whole (%d of %d bytes)", len(data), len(big))
				}
			}
			dl.out, dl.err, dl.took = string(out), err, time.Since(began)
			d.done <- dl
		}()
	}
	eventually(t, 30*time.Second, "every download under way", func() error {
		for i, dl := range d.started {
			if fi, err := os.Stat(dl.file); err != nil || fi.Size() == 0 {
				return fmt.Errorf("download %d has not started", i)
			}
		}
		return nil
	})
	return d
}

// waitAllReplicas waits for Ready with reason Ready (every replica serving, not Degraded) and
// for kube-proxy to forward the endpoint.
func (c *cluster) waitAllReplicas(t *testing.T, ns, name string, n int) *ftpv1alpha1.FTPServer {
	t.Helper()
	s, err := testenv.WaitFTPServer(context.Background(), c.client, ns, name, 180*time.Second, fmt.Sprintf("all %d replicas serving", n), func(cond *metav1.Condition) bool {
		return cond.Reason == ftpv1alpha1.ReasonReady
	})
	if err != nil {
		t.Fatalf("%v\npods: %s", err, podList(c.daemonPods(t, ns, name)))
	}
	if int(s.Status.ReadyReplicas) != n {
		t.Fatalf("Ready with %d ready replicas, want %d", s.Status.ReadyReplicas, n)
	}
	c.waitForwarded(t, s)
	if c.realNode != nil && len(c.realNode.NodeNames()) > 1 {
		// The load balancer sends new connections to every node with a ready replica.
		lb, _, _ := strings.Cut(hostPort(t, s.Status.Endpoint), ":")
		eventually(t, 30*time.Second, "the load balancer sending "+lb+" to every node with a replica", func() error {
			want := map[string]bool{}
			for _, p := range c.daemonPods(t, ns, name) {
				if p.DeletionTimestamp == nil && podIsReady(&p) {
					want[p.Spec.NodeName] = true
				}
			}
			got := c.realNode.LoadBalancerNodes(lb)
			if len(got) != len(want) {
				return fmt.Errorf("routed to %v, replicas on %v", got, want)
			}
			for _, nd := range got {
				if !want[nd] {
					return fmt.Errorf("routed to %v, replicas on %v", got, want)
				}
			}
			return nil
		})
		if n > 1 {
			t.Logf("replicas on the nodes: %s", podList(c.daemonPods(t, ns, name)))
		}
	}
	return s
}

// relaysAcrossNodes counts, in the daemons' logs, the relayed data connections whose relaying
// replica ran on another node than their owner.
func (c *cluster) relaysAcrossNodes(t *testing.T, ns, name string) int {
	t.Helper()
	nodeOf := map[string]string{} // pod IP -> node
	pods := c.daemonPods(t, ns, name)
	for _, p := range pods {
		nodeOf[p.Status.PodIP] = p.Spec.NodeName
	}
	peer := regexp.MustCompile(`"peer_addr":"([0-9.]+):`)
	across := 0
	for _, p := range pods {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := c.realNode.Kubectl(ctx, "-n", ns, "logs", p.Name)
		cancel()
		if err != nil {
			t.Fatalf("logs of %s: %v", p.Name, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if !strings.Contains(line, `"msg":"relayed data connection accepted"`) {
				continue
			}
			if m := peer.FindStringSubmatch(line); m != nil && nodeOf[m[1]] != "" && nodeOf[m[1]] != p.Spec.NodeName {
				across++
			}
		}
	}
	return across
}

// transfersFrom downloads small.bin perSource times from each source address, in turn by a
// strict PASV client, curl's defaults and lftp's, all sources at once. It returns the failures.
func (c *cluster) transfersFrom(t *testing.T, addr string, sources []string, perSource int, want string) []string {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	script := filepath.Join(testenv.RepoRoot(), "test", "e2e", "testdata", "strict_client.py")
	dir := t.TempDir()
	var mu sync.Mutex
	var fails []string
	type timing struct {
		took time.Duration
		what string
	}
	var timings []timing
	var wg sync.WaitGroup
	for si, src := range sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perSource {
				out := filepath.Join(dir, fmt.Sprintf("%d-%d.bin", si, j))
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				var argv []string
				switch j % 3 {
				case 0:
					argv = []string{"python3", script, host, port, "many", "many-pass", src, "pasv", "download", "small.bin", out}
				case 1:
					argv = []string{"curl", "-sS", "--interface", src, "-o", out, fmt.Sprintf("ftp://many:many-pass@%s/small.bin", addr)}
				default:
					argv = []string{"lftp", "-u", "many,many-pass", "-p", port, "-e",
						fmt.Sprintf("set net:socket-bind-ipv4 %s; set net:max-retries 1; get small.bin -o %s; bye", src, out), host}
				}
				began := time.Now()
				got, err := c.h.ClientExec(ctx, harness.Outside, argv...)
				cancel()
				mu.Lock()
				timings = append(timings, timing{time.Since(began), src + " " + argv[0]})
				mu.Unlock()
				if err == nil {
					data, rerr := os.ReadFile(out)
					if rerr != nil || sha(data) != want {
						err = fmt.Errorf("the download is not whole (%d bytes): %v", len(data), rerr)
					}
				}
				if err != nil {
					mu.Lock()
					fails = append(fails, fmt.Sprintf("%s %s: %v: %s", src, argv[0], err, strings.TrimSpace(string(got))))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	// The slowest say where time went when a run is slow (a lost SYN costs a second, a
	// time-out much more).
	slices.SortFunc(timings, func(a, b timing) int { return cmp.Compare(b.took, a.took) })
	var slowest []string
	for _, tm := range timings[:min(3, len(timings))] {
		slowest = append(slowest, fmt.Sprintf("%s %.1f s", tm.what, tm.took.Seconds()))
	}
	t.Logf("%d transfers; the slowest: %s", len(timings), strings.Join(slowest, ", "))
	return fails
}

var epsvReply = regexp.MustCompile(`\(\|\|\|(\d+)\|\)`)

// epsvPort finds the port of the EPSV reply in curl -v output (-1 when there is none).
func epsvPort(curlVerbose string) int {
	m := epsvReply.FindStringSubmatch(curlVerbose)
	if m == nil {
		return -1
	}
	p, _ := strconv.Atoi(m[1])
	return p
}

// relayedThrough tells whether owner's log shows the data connection of src to port arriving
// from the replica at viaIP.
func (c *cluster) relayedThrough(t *testing.T, ns, owner, src string, port int, viaIP string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := c.realNode.Kubectl(ctx, "-n", ns, "logs", owner)
	if err != nil {
		t.Fatalf("logs of %s: %v", owner, err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, `"msg":"relayed data connection accepted"`) && strings.Contains(line, `"client_addr":"`+src+`:`) &&
			strings.Contains(line, fmt.Sprintf(`"port":%d`, port)) && strings.Contains(line, `"peer_addr":"`+viaIP+`:`) {
			return true
		}
	}
	return false
}

// replicaMetrics scrapes every ready daemon pod's /metrics from inside the cluster.
func (c *cluster) replicaMetrics(t *testing.T, ns, name string) map[string]map[string]float64 {
	t.Helper()
	httpc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return c.h.DialContext(ctx, harness.InCluster, network, addr)
		},
	}}
	out := map[string]map[string]float64{}
	for _, p := range c.daemonPods(t, ns, name) {
		if p.DeletionTimestamp != nil || p.Status.PodIP == "" {
			continue
		}
		resp, err := httpc.Get("http://" + net.JoinHostPort(p.Status.PodIP, "8080") + "/metrics")
		if err != nil {
			t.Fatalf("metrics of %s: %v", p.Name, err)
		}
		samples := map[string]float64{}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			i := strings.LastIndexByte(line, ' ')
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				samples[line[:i]] = v
			}
		}
		resp.Body.Close()
		out[p.Name] = samples
	}
	return out
}

// waitReplicaDownOrBack waits until the Service's EndpointSlices list the crashed replica's IP
// as not ready, or its daemon runs again (a fast restart can come before the endpoint update
// is seen), then for kube-proxy's next sync. It says which happened.
func (c *cluster) waitReplicaDownOrBack(t *testing.T, ns, service, pod, ip string, oldPID int) string {
	t.Helper()
	var what string
	eventually(t, 30*time.Second, "the crashed replica to leave the endpoints or run again", func() error {
		if pid := c.realNode.ContainerPID(ns, pod); pid != 0 && pid != oldPID {
			what = "the daemon of " + pod + " ran again"
			return nil
		}
		var slices discoveryv1.EndpointSliceList
		if err := c.client.List(context.Background(), &slices, client.InNamespace(ns), client.MatchingLabels{discoveryv1.LabelServiceName: service}); err != nil {
			return err
		}
		for _, sl := range slices.Items {
			for _, ep := range sl.Endpoints {
				if len(ep.Addresses) > 0 && ep.Addresses[0] == ip && !ptr.Deref(ep.Conditions.Ready, true) {
					what = "the endpoints listed " + pod + " as not ready"
					return nil
				}
			}
		}
		return fmt.Errorf("%s still a ready endpoint", ip)
	})
	time.Sleep(2 * time.Second) // kube-proxy syncs at most once a second
	return what
}
