package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/internal/testenv"
	"github.com/kubeftp/ftp-operator/test/harness"
)

// rolloutManifest is the FTPServer of the rollout and operator-restart scenarios: one claim
// from a template (ReadWriteOnce, so the operator picks the Recreate strategy), one user.
func rolloutManifest(c *cluster, name string, passiveStart int, drain string) string {
	return fmt.Sprintf(`
apiVersion: v1
kind: Secret
metadata: {name: %[1]s-ftp}
stringData: {password: roll-pass}
---
apiVersion: ftp.kubeftp.dev/v1alpha1
kind: FTPServer
metadata: {name: %[1]s}
spec:
  volumes:
    - name: data
      claimTemplate: {size: 1Gi}
  users:
    - name: roller
      passwordSecretRef: {name: %[1]s-ftp}
  ports: {control: %[2]d, passive: {start: %[3]d, end: %[4]d}}
  drainTimeout: %[5]s
`, name, c.control, passiveStart, passiveStart+4, drain)
}

// daemonPods lists the pods of the FTPServer's Deployment (by its selector labels), terminating
// ones included.
func (c *cluster) daemonPods(t *testing.T, ns, name string) []corev1.Pod {
	t.Helper()
	var pods corev1.PodList
	if err := c.client.List(context.Background(), &pods, client.InNamespace(ns),
		client.MatchingLabels{"app.kubernetes.io/instance": name, "app.kubernetes.io/name": "ftpd"}); err != nil {
		t.Fatalf("list the daemon pods: %v", err)
	}
	return pods.Items
}

// lastDaemonLog is the log of the FTPServer's most recently ended daemon, for a failure message.
func (c *cluster) lastDaemonLog(ns, name string) string {
	exit, ok := c.h.LastExit(ns, name)
	if !ok {
		return "(no daemon has ended yet)"
	}
	log, err := os.ReadFile(exit.LogPath)
	if err != nil {
		return fmt.Sprintf("(%s ended with %s; its log: %v)", exit.Pod, exit.Status, err)
	}
	return fmt.Sprintf("%s ended with %s:\n%s", exit.Pod, exit.Status, log)
}

// TestRestartRelevantChangeRollsThePod: a setting the daemon reads only at start (the idle
// timeout) rolls the pod with the strategy the operator chose for a ReadWriteOnce claim,
// Recreate: the old pod's daemon has exited before the new pod exists, so two daemons never
// hold the volume;
// the old daemon drains, so a download in flight when the change lands completes whole; the data
// stays; the server is Ready again at the same address. A hot setting (maxSessions) does not
// roll it.
func TestRestartRelevantChangeRollsThePod(t *testing.T) { eachMode(t, testRestartRelevantChange) }

func testRestartRelevantChange(t *testing.T, c *cluster) {
	ctx := context.Background()
	ns := c.newNamespace(t, "rollout")
	c.apply(t, ns, rolloutManifest(c, "roll", 30500, "45s"))
	s := c.waitReady(t, ns, "roll")
	addr := hostPort(t, s.Status.Endpoint)
	first := c.daemonPods(t, ns, "roll")
	if len(first) != 1 {
		t.Fatalf("want one daemon pod, got %d", len(first))
	}

	// A hot change first: Ready for it, and the same pod.
	patchSpec(t, c, ns, "roll", func(s *ftpv1alpha1.FTPServer) { s.Spec.Limits.MaxSessions = 77 })
	if _, err := testenv.WaitFTPServer(ctx, c.client, ns, "roll", 30*time.Second, "Ready for maxSessions 77", testenv.IsReady); err != nil {
		t.Fatal(err)
	}
	if got := c.daemonPods(t, ns, "roll"); len(got) != 1 || got[0].UID != first[0].UID {
		t.Fatalf("a maxSessions change replaced the pod: %s", podList(got))
	}

	// A file big enough that a rate-limited download outlasts the change: 12 MiB at 1 MiB/s.
	payload := randomBytes(12 << 20)
	if err := os.WriteFile(filepath.Join(c.h.ClaimPath(ns, "roll-data"), "roller", "big.bin"), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	back := filepath.Join(t.TempDir(), "big.bin")
	dlCtx, dlCancel := context.WithTimeout(ctx, 60*time.Second)
	defer dlCancel()
	download, err := c.h.ClientCommand(dlCtx, harness.Outside, "curl", "-sS", "--limit-rate", "1M", "-o", back,
		fmt.Sprintf("ftp://roller:roll-pass@%s/big.bin", addr))
	if err != nil {
		t.Fatal(err)
	}
	var dlOut strings.Builder
	download.Stdout, download.Stderr = &dlOut, &dlOut
	if err := download.Start(); err != nil {
		t.Fatal(err)
	}
	dlDone := make(chan error, 1)
	var dlFinished atomic.Bool
	go func() { err := download.Wait(); dlFinished.Store(true); dlDone <- err }()
	// The change must land while the data flows: wait for the first MiB on disk, not a fixed
	// time. (A fixed 1.5 s wait on a loaded machine let the roll start before curl had opened
	// its data connection; its connect to the terminating pod's passive port then hung until
	// dlCtx killed it.)
	eventually(t, 20*time.Second, "the download to be under way", func() error {
		if dlFinished.Load() {
			return nil // reported below, with curl's output
		}
		if fi, err := os.Stat(back); err != nil || fi.Size() < 1<<20 {
			return fmt.Errorf("not 1 MiB on disk yet (%v)", err)
		}
		return nil
	})
	// The restart-relevant change, while the download runs.
	patchSpec(t, c, ns, "roll", func(s *ftpv1alpha1.FTPServer) {
		s.Spec.Limits.IdleTimeout = &metav1.Duration{Duration: 7 * time.Minute}
	})

	// Watch the roll: pods of two templates (pod-template-hash) must never exist at once.
	deadline := time.Now().Add(120 * time.Second)
	var rolled *corev1.Pod
	drainedInFlight := false // the old pod was terminating while the download still ran
	for rolled == nil {
		if time.Now().After(deadline) {
			t.Fatalf("no new pod became ready within 120 s: %s", podList(c.daemonPods(t, ns, "roll")))
		}
		pods := c.daemonPods(t, ns, "roll")
		hashes := map[string]bool{} // of pods whose containers may still run
		for _, p := range pods {
			if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				hashes[p.Labels["pod-template-hash"]] = true
			}
		}
		if len(hashes) > 1 {
			t.Fatalf("pods of two templates at once under Recreate (both would hold the ReadWriteOnce claim): %s", podList(pods))
		}
		for i, p := range pods {
			if p.UID == first[0].UID && p.DeletionTimestamp != nil && !dlFinished.Load() {
				drainedInFlight = true
			}
			if p.UID != first[0].UID && p.DeletionTimestamp == nil && podIsReady(&p) {
				rolled = &pods[i]
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The download's own outcome: curl is killed if it is still running when dlCtx ends. (A
	// select on dlCtx as well picked the expired context at random on a slow roll, although
	// the download had finished long before.)
	if err := <-dlDone; err != nil {
		t.Fatalf("the download in flight during the roll failed: %v\ncurl: %s\nthe old daemon's log:\n%s", err, dlOut.String(), c.lastDaemonLog(ns, "roll"))
	}
	if !drainedInFlight {
		t.Fatal("the download finished before the old pod was told to stop: the scenario did not test a drain (make the file bigger)")
	}
	if got, err := os.ReadFile(back); err != nil || sha(got) != sha(payload) {
		t.Fatalf("the download in flight during the roll is not whole (%d of %d bytes): %v", len(got), len(payload), err)
	}
	if exit, ok := c.h.LastExit(ns, "roll"); !ok || exit.Status != "exit status 0" {
		t.Fatalf("the old daemon did not stop cleanly: %+v", exit)
	}

	s = c.waitReady(t, ns, "roll")
	if s.Status.ObservedGeneration != s.Generation || hostPort(t, s.Status.Endpoint) != addr {
		t.Fatalf("after the roll: observed generation %d of %d, endpoint %s (was %s)", s.Status.ObservedGeneration, s.Generation, s.Status.Endpoint, addr)
	}
	conn := c.dial(t, harness.Outside, addr)
	if err := conn.Login("roller", "roll-pass"); err != nil {
		t.Fatalf("login on the new pod: %v", err)
	}
	if _, err := conn.FileSize("big.bin"); err != nil {
		t.Fatalf("the data is not there after the roll: %v", err)
	}
	c.deleteAndWait(t, ns, "roll")
}

// TestOperatorPodKilledMidReconcile (real node only: there the operator is a pod, installed from
// its chart): the operator's pod is killed with no grace while it is creating an FTPServer's
// objects. The Deployment brings a new operator pod, which takes the leader Lease over and
// finishes the job. Afterwards each object exists once, owned by the FTPServer, the Deployment
// has one ReplicaSet (the new operator built the same pod template), and one pod serves.
func TestOperatorPodKilledMidReconcile(t *testing.T) {
	c := realNode
	c.require(t)
	ctx := context.Background()
	ns := c.newNamespace(t, "opkill")
	before := c.realNode.OperatorPod(ctx)
	if before == nil {
		t.Fatal("no running operator pod")
	}
	c.apply(t, ns, rolloutManifest(c, "survivor", 30600, "5s"))
	// Mid-reconcile: some objects exist, the server is not Ready yet.
	eventually(t, 30*time.Second, "the operator to start creating objects", func() error {
		var cms corev1.ConfigMapList
		if err := c.client.List(ctx, &cms, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/instance": "survivor"}); err != nil {
			return err
		}
		if len(cms.Items) == 0 {
			return fmt.Errorf("no object yet")
		}
		return nil
	})
	if s := c.get(t, ns, "survivor"); meta.IsStatusConditionTrue(s.Status.Conditions, "Ready") {
		t.Log("the server was Ready before the kill; the kill still exercises a takeover")
	}
	killed := time.Now()
	if out, err := c.realNode.Kubectl(ctx, "delete", "pod", "-n", before.Namespace, before.Name, "--grace-period=0", "--force"); err != nil {
		t.Fatalf("kill the operator pod: %v\n%s", err, out)
	}
	s := c.waitReady(t, ns, "survivor")
	after := c.realNode.OperatorPod(ctx)
	if after == nil || after.UID == before.UID {
		t.Fatalf("no new operator pod after the kill")
	}
	t.Logf("Ready %s after the operator pod was killed (new pod %s)", time.Since(killed).Round(time.Millisecond), after.Name)

	// Exactly the objects one reconcile makes, once each, all owned by the FTPServer.
	want := map[string][]string{
		"ConfigMap": {"survivor-config"}, "Secret": {"survivor-users"}, "Deployment": {"survivor"},
		"Service": {"survivor"}, "NetworkPolicy": {"survivor"},
	}
	for kind, names := range want {
		got := ownedBy(t, c, ns, kind, s.UID)
		if strings.Join(got, ",") != strings.Join(names, ",") {
			t.Errorf("%s owned by the FTPServer: %v, want %v", kind, got, names)
		}
	}
	// A retained claim has no owner (it outlives the server); it carries the server's label.
	var claims corev1.PersistentVolumeClaimList
	if err := c.client.List(ctx, &claims, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(claims.Items) != 1 || claims.Items[0].Name != "survivor-data" {
		t.Errorf("claims in the namespace: %d, want survivor-data alone", len(claims.Items))
	}
	if rs := ownedByName(t, c, ns, "ReplicaSet", "Deployment", "survivor"); len(rs) != 1 {
		t.Errorf("ReplicaSets of the Deployment: %v, want one (the new operator built another pod template)", rs)
	}
	eventually(t, 30*time.Second, "one daemon pod", func() error {
		if pods := c.daemonPods(t, ns, "survivor"); len(pods) != 1 {
			return fmt.Errorf("%s", podList(pods))
		}
		return nil
	})
	conn := c.dial(t, harness.Outside, hostPort(t, s.Status.Endpoint))
	if err := conn.Login("roller", "roll-pass"); err != nil {
		t.Fatalf("login after the takeover: %v", err)
	}
	c.deleteAndWait(t, ns, "survivor")
}

// TestReadyAfterASecretChangeMeansServed: after a password change, the moment the FTPServer is
// Ready for the new inputs (its Ready message names a new inputs version, which it does only
// once the daemon reports the new users file back), the new password works at the first try and
// the old one is refused: Ready waits for the kubelet to rewrite the Secret's volume, at
// whatever pace the kubelet keeps, and for the daemon to reload it. The pod is not restarted.
func TestReadyAfterASecretChangeMeansServed(t *testing.T) { eachMode(t, testReadyAfterSecretChange) }

func testReadyAfterSecretChange(t *testing.T, c *cluster) {
	ns := c.newNamespace(t, "rotate")
	c.apply(t, ns, rolloutManifest(c, "rotate", 30700, "5s"))
	s := c.waitReady(t, ns, "rotate")
	addr := hostPort(t, s.Status.Endpoint)
	pod := c.daemonPods(t, ns, "rotate")[0]
	oldVersion := readyInputsVersion(s)
	if oldVersion == "" {
		t.Fatalf("the Ready FTPServer names no inputs version: %+v", s.Status.Conditions)
	}

	changed := time.Now()
	c.apply(t, ns, "apiVersion: v1\nkind: Secret\nmetadata: {name: rotate-ftp}\nstringData: {password: rotated-pass}\n")
	// Ready for the new inputs: Ready names a new version (the operator has heard it back from
	// the daemon).
	var version string
	eventually(t, 60*time.Second, "Ready for the new password", func() error {
		now := c.get(t, ns, "rotate")
		cond := meta.FindStatusCondition(now.Status.Conditions, ftpv1alpha1.ConditionReady)
		if version = readyInputsVersion(now); version == "" || version == oldVersion {
			return fmt.Errorf("not Ready for new inputs (version %q, was %q): %+v", version, oldVersion, cond)
		}
		return nil
	})
	t.Logf("Ready for inputs %s %s after the password change", version, time.Since(changed).Round(time.Millisecond))
	conn := c.dial(t, harness.Outside, addr)
	if err := conn.Login("roller", "rotated-pass"); err != nil {
		t.Fatalf("Ready for the new password, yet the first login with it failed: %v", err)
	}
	old := c.dial(t, harness.Outside, addr)
	if err := old.Login("roller", "roll-pass"); err == nil {
		t.Fatal("the old password still works")
	}
	if now := c.daemonPods(t, ns, "rotate"); len(now) != 1 || now[0].UID != pod.UID || restarts(&now[0]) != restarts(&pod) {
		t.Fatalf("the pod was replaced or restarted for a password change: %s", podList(now))
	}
	c.deleteAndWait(t, ns, "rotate")
}

// readyInputsVersion is the inputs version a Ready FTPServer's message names ("pods serve inputs
// version V"), empty when it is not Ready.
func readyInputsVersion(s *ftpv1alpha1.FTPServer) string {
	cond := meta.FindStatusCondition(s.Status.Conditions, ftpv1alpha1.ConditionReady)
	if cond == nil || cond.Status != metav1.ConditionTrue {
		return ""
	}
	_, v, _ := strings.Cut(cond.Message, "inputs version ")
	return v
}

func patchSpec(t *testing.T, c *cluster, ns, name string, change func(*ftpv1alpha1.FTPServer)) {
	t.Helper()
	s := c.get(t, ns, name)
	before := s.DeepCopy()
	change(s)
	if err := c.client.Patch(context.Background(), s, client.MergeFrom(before)); err != nil {
		t.Fatalf("patch %s: %v", name, err)
	}
}

func podIsReady(p *corev1.Pod) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

func restarts(p *corev1.Pod) int32 {
	var n int32
	for _, cs := range p.Status.ContainerStatuses {
		n += cs.RestartCount
	}
	return n
}

func podList(pods []corev1.Pod) string {
	var parts []string
	for _, p := range pods {
		template := p.Labels["pod-template-hash"] // a Deployment's; a StatefulSet's revision otherwise
		if template == "" {
			template = p.Labels["controller-revision-hash"]
		}
		s := fmt.Sprintf("%s (%s, template %s", p.Name, p.Status.Phase, template)
		if p.Spec.NodeName != "" {
			s += ", on " + p.Spec.NodeName
		}
		if p.DeletionTimestamp != nil {
			s += ", terminating"
		}
		parts = append(parts, s+")")
	}
	if len(parts) == 0 {
		return "no pods"
	}
	return strings.Join(parts, "; ")
}

// kindVersions are the API versions of the kinds the ownership checks list.
var kindVersions = map[string]schema.GroupVersion{
	"ConfigMap": {Version: "v1"}, "Secret": {Version: "v1"}, "Service": {Version: "v1"},
	"PersistentVolumeClaim": {Version: "v1"}, "Deployment": {Group: "apps", Version: "v1"},
	"ReplicaSet": {Group: "apps", Version: "v1"}, "NetworkPolicy": {Group: "networking.k8s.io", Version: "v1"},
}

func listKind(t *testing.T, c *cluster, ns, kind string) []unstructured.Unstructured {
	t.Helper()
	var list unstructured.UnstructuredList
	list.SetGroupVersionKind(kindVersions[kind].WithKind(kind + "List"))
	if err := c.client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatalf("list %s: %v", kind, err)
	}
	return list.Items
}

// ownedBy lists, sorted, the names of the objects of kind in ns whose controller is uid.
func ownedBy(t *testing.T, c *cluster, ns, kind string, uid types.UID) []string {
	t.Helper()
	var names []string
	for _, o := range listKind(t, c, ns, kind) {
		if ref := metav1.GetControllerOf(&o); ref != nil && ref.UID == uid {
			names = append(names, o.GetName())
		}
	}
	slices.Sort(names)
	return names
}

// ownedByName lists the objects of kind in ns whose controller is the ownerKind named owner.
func ownedByName(t *testing.T, c *cluster, ns, kind, ownerKind, owner string) []string {
	t.Helper()
	var names []string
	for _, o := range listKind(t, c, ns, kind) {
		if ref := metav1.GetControllerOf(&o); ref != nil && ref.Kind == ownerKind && ref.Name == owner {
			names = append(names, o.GetName())
		}
	}
	slices.Sort(names)
	return names
}
