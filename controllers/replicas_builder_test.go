package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/internal/poll"
	"github.com/kubeftp/ftp-operator/internal/testenv"
)

func TestReplicaSlices(t *testing.T) {
	tests := []struct {
		name       string
		replicas   int32
		start, end int32
		perReplica *int32
		want       []string
	}{
		{name: "divided evenly", replicas: 3, start: 30000, end: 30019, want: []string{"30000-30005", "30006-30011", "30012-30017"}},
		{name: "exact", replicas: 4, start: 30000, end: 30019, want: []string{"30000-30004", "30005-30009", "30010-30014", "30015-30019"}},
		{name: "declared size", replicas: 2, start: 31000, end: 31099, perReplica: ptr.To(int32(10)), want: []string{"31000-31009", "31010-31019"}},
		{name: "one port each", replicas: 3, start: 30000, end: 30002, want: []string{"30000-30000", "30001-30001", "30002-30002"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := replicatedServer()
			s.Spec.Replicas = ptr.To(tt.replicas)
			s.Spec.Ports.Passive = ftpv1alpha1.PassivePortRange{Start: tt.start, End: tt.end, PerReplica: tt.perReplica}
			var got []string
			for i := range tt.replicas {
				got = append(got, replicaSlice(s, i).String())
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("slices %v, want %v", got, tt.want)
			}
			// The daemon computes the same slices from the config it is given.
			facts := factsFor(s)
			cfg, ok := replicasConfigFor(s, facts)
			if !ok || cfg.PortsPerReplica*int(tt.replicas) > int(tt.end-tt.start+1) || len(cfg.Peers) != int(tt.replicas) {
				t.Fatalf("config %+v (complete %v)", cfg, ok)
			}
		})
	}
}

// TestRemovedReplicasStayPeersWhileTheyDrain: after a scale-down the pods of the removed
// ordinals drain; until they are gone they stay in every daemon's peers and keep their relay
// Service, so that the data connections of their sessions that land on another replica are
// still relayed to them. Only slices that fit in the range count.
func TestRemovedReplicasStayPeersWhileTheyDrain(t *testing.T) {
	tests := []struct {
		name       string
		perReplica *int32
		podsUpTo   int32
		want       int
	}{
		{"removed replica still running", ptr.To(int32(4)), 3, 3},
		{"removed replica gone", ptr.To(int32(4)), 2, 2},
		{"no pods yet", ptr.To(int32(4)), 0, 2},
		{"derived slices grew: the old ordinal's slice is outside the range", nil, 3, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := replicatedServer()
			s.Spec.Replicas = ptr.To(int32(2))
			s.Spec.Ports.Passive = ftpv1alpha1.PassivePortRange{Start: 30000, End: 30011, PerReplica: tt.perReplica}
			facts := factsFor(s)
			facts.replicaServiceIPs[2] = "10.96.1.12"
			facts.replicaPodsUpTo = tt.podsUpTo
			d, err := desiredSetFor(s, facts)
			if err != nil {
				t.Fatal(err)
			}
			cfg, ok := replicasConfigFor(s, facts)
			if !ok || len(cfg.Peers) != tt.want || len(d.replicaServices) != tt.want {
				t.Fatalf("%d peers, %d relay Services (complete %v), want %d each", len(cfg.Peers), len(d.replicaServices), ok, tt.want)
			}
			if got := *d.statefulSet.Spec.Replicas; got != 2 {
				t.Fatalf("the StatefulSet asks for %d replicas, want spec.replicas (2)", got)
			}
		})
	}
}

// TestReplicasConfigWaitsForRelayAddresses: a relay Service without a cluster IP holds the
// config and the workload (the daemon would be told a wrong peer).
func TestReplicasConfigWaitsForRelayAddresses(t *testing.T) {
	s := replicatedServer()
	facts := factsFor(s)
	delete(facts.replicaServiceIPs, 2)
	d, err := desiredSetFor(s, facts)
	if err != nil {
		t.Fatal(err)
	}
	if !d.relayPending {
		t.Fatal("a missing relay address did not hold the config")
	}
	if d, err := desiredSetFor(s, factsFor(s)); err != nil || d.relayPending {
		t.Fatalf("complete facts: pending %v, %v", d.relayPending, err)
	}
	if d, err := desiredSetFor(minimalServer(), factsFor(minimalServer())); err != nil || d.relayPending || d.statefulSet != nil || d.relaySecret != nil || len(d.replicaServices) != 0 {
		t.Fatalf("one replica got objects of several: %+v, %v", d, err)
	}
}

// TestSeveralReplicas: three replicas on a shared claim get a StatefulSet, a relay Service each
// (whose cluster IPs the config names), a relay key and a disruption budget, and no Deployment.
// Ready is True while some replicas serve (Degraded, naming the others), Ready once all do;
// scaling down prunes the relay Service of the removed replica; returning to one replica swaps
// the StatefulSet for a Deployment only once the Deployment serves, and prunes every object of
// several replicas.
func TestSeveralReplicas(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	ns := newNamespace(t)
	createSecret(t, ns, "alice-ftp", map[string]string{"password": "wonderland"})
	shared := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "shared", Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
	}
	if err := env.Client.Create(ctx, shared); err != nil {
		t.Fatal(err)
	}
	server := newFTPServer(ns, "files")
	server.Spec.Replicas = ptr.To(int32(3))
	server.Spec.Volumes = []ftpv1alpha1.FTPVolume{{Name: "data", ClaimName: "shared"}}
	if err := env.Client.Create(ctx, server); err != nil {
		t.Fatal(err)
	}

	// The config and the StatefulSet wait for the load balancer's address.
	poll.Eventually(t, 20*time.Second, "Service", func() (bool, error) { return exists(ns, "files", &corev1.Service{}) })
	setLoadBalancerIP(t, ns, "files", "203.0.113.9")
	poll.Eventually(t, 20*time.Second, "the StatefulSet", func() (bool, error) {
		ok, err := exists(ns, "files", &appsv1.StatefulSet{})
		if !ok && err == nil {
			var svcs corev1.ServiceList
			_ = env.Client.List(ctx, &svcs, client.InNamespace(ns))
			var names []string
			for _, x := range svcs.Items {
				names = append(names, x.Name+"="+x.Spec.ClusterIP+fmt.Sprint(x.Labels))
			}
			err = fmt.Errorf("absent; Ready: %+v; services %v", readyCondition(t, ns, "files"), names)
		}
		return ok, err
	})
	sts := get(t, ns, "files", &appsv1.StatefulSet{})
	if ptr.Deref(sts.Spec.Replicas, 0) != 3 || sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Fatalf("StatefulSet spec: replicas %v, policy %s", sts.Spec.Replicas, sts.Spec.PodManagementPolicy)
	}
	if ok, err := exists(ns, "files", &appsv1.Deployment{}); ok || err != nil {
		t.Fatalf("a Deployment exists next to the StatefulSet (%v)", err)
	}
	pdb := get(t, ns, "files", &policyv1.PodDisruptionBudget{})
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Fatalf("PodDisruptionBudget maxUnavailable %v", pdb.Spec.MaxUnavailable)
	}
	key := get(t, ns, "files-relay", &corev1.Secret{}).Data[relayKeyKey]
	if len(key) != 2*relayKeyBytes {
		t.Fatalf("relay key of %d characters", len(key))
	}

	setLoadBalancerIP(t, ns, "files", "203.0.113.9")
	relayIPs := func(n int) []string {
		var ips []string
		for i := range n {
			svc := get(t, ns, fmt.Sprintf("files-r%d", i), &corev1.Service{})
			if svc.Spec.Selector[statefulSetPodNameLabel] != fmt.Sprintf("files-%d", i) || !svc.Spec.PublishNotReadyAddresses {
				t.Fatalf("relay Service %s: selector %v, publishNotReadyAddresses %v", svc.Name, svc.Spec.Selector, svc.Spec.PublishNotReadyAddresses)
			}
			ips = append(ips, fmt.Sprintf("%s:%d", svc.Spec.ClusterIP, relayContainerPort))
		}
		return ips
	}
	peersAre := func(want []string) func() (bool, error) {
		return func() (bool, error) {
			r := configData(t, ns, "files").Passive.Replicas
			if r == nil {
				return false, fmt.Errorf("no passive.replicas in the config")
			}
			var got []string
			for i, p := range r.Peers {
				if p.Name != fmt.Sprintf("files-%d", i) {
					return false, fmt.Errorf("peer %d is %q", i, p.Name)
				}
				got = append(got, p.RelayAddress)
			}
			return strings.Join(got, " ") == strings.Join(want, " "), fmt.Errorf("peers %v, want %v", got, want)
		}
	}
	poll.Eventually(t, 20*time.Second, "the peers in the config", peersAre(relayIPs(3)))
	if k := configData(t, ns, "files").Passive.Replicas.PortsPerReplica; k != 6 {
		t.Fatalf("portsPerReplica %d, want 6 (20 ports / 3)", k)
	}

	// Two of three serve: Ready, degraded, naming the third.
	if err := testenv.MarkStatefulSetServing(ctx, env.Client, ns, "files", 0, 1); err != nil {
		t.Fatal(err)
	}
	// (While the stand-in pods come up, one reconcile may see files-1 not Ready yet.)
	poll.Eventually(t, 20*time.Second, "Degraded with 2 of 3 serving", func() (bool, error) {
		c := readyCondition(t, ns, "files")
		ok := c != nil && c.Reason == ftpv1alpha1.ReasonDegraded && c.Status == metav1.ConditionTrue &&
			strings.Contains(c.Message, "2 of 3 replicas serve") && strings.Contains(c.Message, "not serving: files-2")
		return ok, fmt.Errorf("Ready with one replica missing: %+v", c)
	})
	s := get(t, ns, "files", &ftpv1alpha1.FTPServer{})
	wantReplicas := []ftpv1alpha1.ReplicaStatus{{Name: "files-0", PassivePorts: "30000-30005", Ready: true}, {Name: "files-1", PassivePorts: "30006-30011", Ready: true}, {Name: "files-2", PassivePorts: "30012-30017"}}
	if fmt.Sprint(s.Status.Replicas) != fmt.Sprint(wantReplicas) || s.Status.ReadyReplicas != 2 {
		t.Fatalf("status replicas %+v (ready %d), want %+v", s.Status.Replicas, s.Status.ReadyReplicas, wantReplicas)
	}
	if meta.FindStatusCondition(s.Status.Conditions, ftpv1alpha1.ConditionReconciling) == nil {
		t.Fatal("a degraded server is not Reconciling")
	}

	if err := testenv.MarkStatefulSetServing(ctx, env.Client, ns, "files", 0, 1, 2); err != nil {
		t.Fatal(err)
	}
	waitForReason(t, ns, "files", ftpv1alpha1.ReasonReady)

	// Scale down: the removed replica's relay Service goes, the config names two peers.
	patchServer(t, ns, "files", func(s *ftpv1alpha1.FTPServer) { s.Spec.Replicas = ptr.To(int32(2)) })
	poll.Eventually(t, 20*time.Second, "files-r2 pruned", func() (bool, error) {
		ok, err := exists(ns, "files-r2", &corev1.Service{})
		return !ok, err
	})
	poll.Eventually(t, 20*time.Second, "two peers in the config", peersAre(relayIPs(2)))
	// The stand-in reports the generation it sees: mark it only once the scale is applied.
	poll.Eventually(t, 20*time.Second, "the StatefulSet scaled to 2", func() (bool, error) {
		sts := get(t, ns, "files", &appsv1.StatefulSet{})
		return ptr.Deref(sts.Spec.Replicas, 0) == 2, fmt.Errorf("StatefulSet replicas %v", sts.Spec.Replicas)
	})
	if err := testenv.MarkStatefulSetServing(ctx, env.Client, ns, "files", 0, 1); err != nil {
		t.Fatal(err)
	}
	waitForReason(t, ns, "files", ftpv1alpha1.ReasonReady)

	// Down to one replica: on shared storage the StatefulSet stays and scales (no Deployment,
	// no swap between workloads of two kinds); the last replica keeps its slice and the relay.
	patchServer(t, ns, "files", func(s *ftpv1alpha1.FTPServer) { s.Spec.Replicas = ptr.To(int32(1)) })
	poll.Eventually(t, 20*time.Second, "the StatefulSet scaled to 1", func() (bool, error) {
		sts := get(t, ns, "files", &appsv1.StatefulSet{})
		return ptr.Deref(sts.Spec.Replicas, 0) == 1, fmt.Errorf("StatefulSet replicas %v", sts.Spec.Replicas)
	})
	if err := testenv.MarkStatefulSetServing(ctx, env.Client, ns, "files", 0); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 20*time.Second, "files-r1 pruned once its pod is gone", func() (bool, error) {
		ok, err := exists(ns, "files-r1", &corev1.Service{})
		return !ok, err
	})
	poll.Eventually(t, 20*time.Second, "one peer in the config", peersAre(relayIPs(1)))
	waitForReason(t, ns, "files", ftpv1alpha1.ReasonReady)
	if ok, err := exists(ns, "files", &appsv1.Deployment{}); ok || err != nil {
		t.Fatalf("one replica on shared storage got a Deployment (%v)", err)
	}
	if s := get(t, ns, "files", &ftpv1alpha1.FTPServer{}); fmt.Sprint(s.Status.Replicas) != fmt.Sprint([]ftpv1alpha1.ReplicaStatus{{Name: "files-0", PassivePorts: "30000-30019", Ready: true}}) {
		t.Fatalf("status.replicas on one replica: %+v", s.Status.Replicas)
	}

	// And back to three: a plain scale of the same StatefulSet, once the running replica serves
	// the config that names the new peers (until then it would refuse the data connections the
	// load balancer brings it for their slices). Its kubelet holds it on the old config first.
	sts = get(t, ns, "files", &appsv1.StatefulSet{})
	replica0 := get(t, ns, "files-0", &corev1.Pod{})
	if err := daemons.Hold(ctx, replica0); err != nil {
		t.Fatal(err)
	}
	patchServer(t, ns, "files", func(s *ftpv1alpha1.FTPServer) { s.Spec.Replicas = ptr.To(int32(3)) })
	poll.Eventually(t, 20*time.Second, "three peers in the config", func() (bool, error) {
		if ok, err := exists(ns, "files-r2", &corev1.Service{}); !ok {
			return false, fmt.Errorf("files-r2 absent (%v)", err)
		}
		return peersAre(relayIPs(3))()
	})
	poll.Eventually(t, 20*time.Second, "Ready saying the scale-up waits", func() (bool, error) {
		c := readyCondition(t, ns, "files")
		return c != nil && strings.Contains(c.Message, "scaling up: the new replicas start once"), fmt.Errorf("Ready %+v", c)
	})
	poll.Consistently(t, 3*servedConfigRecheck, "the StatefulSet held at 1 replica", func() error {
		if n := ptr.Deref(get(t, ns, "files", &appsv1.StatefulSet{}).Spec.Replicas, 0); n != 1 {
			return fmt.Errorf("the StatefulSet scaled to %d while files-0 serves a config without the new peers", n)
		}
		return nil
	})
	daemons.Release(replica0)
	poll.Eventually(t, 20*time.Second, "the StatefulSet scaled to 3", func() (bool, error) {
		got := get(t, ns, "files", &appsv1.StatefulSet{})
		return ptr.Deref(got.Spec.Replicas, 0) == 3, fmt.Errorf("StatefulSet replicas %v", got.Spec.Replicas)
	})
	if got := get(t, ns, "files", &appsv1.StatefulSet{}); got.UID != sts.UID {
		t.Fatalf("StatefulSet after 1 -> 3: uid %s (was %s): replaced, not scaled", got.UID, sts.UID)
	}
	if err := testenv.MarkStatefulSetServing(ctx, env.Client, ns, "files", 0, 1, 2); err != nil {
		t.Fatal(err)
	}
	waitForReason(t, ns, "files", ftpv1alpha1.ReasonReady)
}

// TestMovingToSharedStorageSwapsTheWorkload: a server whose storage becomes shared (here its
// volume moves from a ReadWriteOnce claim to a ReadWriteMany one; an upgrade from an operator
// that ran one replica on shared storage in a Deployment gets there too) swaps its Deployment
// for a StatefulSet once, and the Deployment serves until the StatefulSet does.
func TestMovingToSharedStorageSwapsTheWorkload(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	ns := newNamespace(t)
	createSecret(t, ns, "alice-ftp", map[string]string{"password": "wonderland"})
	for name, mode := range map[string]corev1.PersistentVolumeAccessMode{"local": corev1.ReadWriteOnce, "shared": corev1.ReadWriteMany} {
		claim := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{mode},
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
		}
		if err := env.Client.Create(ctx, claim); err != nil {
			t.Fatal(err)
		}
	}
	server := newFTPServer(ns, "files")
	server.Spec.Volumes = []ftpv1alpha1.FTPVolume{{Name: "data", ClaimName: "local"}}
	if err := env.Client.Create(ctx, server); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 20*time.Second, "Service", func() (bool, error) { return exists(ns, "files", &corev1.Service{}) })
	setLoadBalancerIP(t, ns, "files", "203.0.113.9")
	poll.Eventually(t, 20*time.Second, "the Deployment", func() (bool, error) { return exists(ns, "files", &appsv1.Deployment{}) })
	if st := get(t, ns, "files", &appsv1.Deployment{}).Spec.Strategy.Type; st != appsv1.RecreateDeploymentStrategyType {
		t.Fatalf("strategy %s on a ReadWriteOnce claim, want Recreate", st)
	}
	markDeploymentAvailable(t, ns, "files")
	waitForReason(t, ns, "files", ftpv1alpha1.ReasonReady)

	patchServer(t, ns, "files", func(s *ftpv1alpha1.FTPServer) { s.Spec.Volumes[0].ClaimName = "shared" })
	poll.Eventually(t, 20*time.Second, "the StatefulSet", func() (bool, error) { return exists(ns, "files", &appsv1.StatefulSet{}) })
	time.Sleep(time.Second) // a reconcile or two
	if ok, err := exists(ns, "files", &appsv1.Deployment{}); !ok {
		t.Fatalf("the Deployment was removed before the StatefulSet served (%v)", err)
	}
	if err := testenv.MarkStatefulSetServing(ctx, env.Client, ns, "files", 0); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 20*time.Second, "the Deployment retired", func() (bool, error) {
		ok, err := exists(ns, "files", &appsv1.Deployment{})
		return !ok, err
	})
	waitForReason(t, ns, "files", ftpv1alpha1.ReasonReady)
	if cfg := configData(t, ns, "files"); cfg.Passive.Replicas == nil || len(cfg.Passive.Replicas.Peers) != 1 {
		t.Fatalf("one replica on shared storage: passive.replicas %+v, want itself as the one peer", cfg.Passive.Replicas)
	}
}

// TestSeveralReplicasNeedASharedClaim: an existing claim that only one node can mount stops
// several replicas with a reason that says so (CEL cannot see existing claims).
func TestSeveralReplicasNeedASharedClaim(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	ns := newNamespace(t)
	createSecret(t, ns, "alice-ftp", map[string]string{"password": "wonderland"})
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "single", Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
	}
	if err := env.Client.Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	server := newFTPServer(ns, "files")
	server.Spec.Replicas = ptr.To(int32(2))
	server.Spec.Volumes = []ftpv1alpha1.FTPVolume{{Name: "data", ClaimName: "single"}}
	if err := env.Client.Create(ctx, server); err != nil {
		t.Fatal(err)
	}
	c := waitForReason(t, ns, "files", ftpv1alpha1.ReasonVolumeNotShared)
	if !strings.Contains(c.Message, `volume "data" uses PersistentVolumeClaim "single" with access modes [ReadWriteOnce]`) {
		t.Fatalf("message: %s", c.Message)
	}
	if ok, _ := exists(ns, "files", &appsv1.StatefulSet{}); ok {
		t.Fatal("a StatefulSet was created on a claim its replicas cannot share")
	}
}
