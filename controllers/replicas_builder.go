package controllers

import (
	"fmt"
	"path"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
)

// Several replicas (docs/design/multi-replica.md). A StatefulSet runs the daemons instead of the
// Deployment: a pod's stable ordinal names its slice of the passive range and its relay
// Service. Each replica has a ClusterIP Service in front of that one pod's relay port, stable
// while the pod comes and goes, so the peers' addresses in the config do not change when a pod
// restarts. A Secret holds the key that signs relayed connections; a PodDisruptionBudget keeps
// voluntary evictions to one replica at a time.

const (
	relayContainerPort = 2122 // excluded from spec.ports.passive with several replicas (CEL)
	relayMountPath     = "/etc/ftpd/relay"
	relayKeyKey        = "key"
	// relayKeyBytes of randomness, hex-encoded in the Secret.
	relayKeyBytes = 32
	// statefulSetPodNameLabel is set by the StatefulSet controller on each of its pods.
	statefulSetPodNameLabel = "statefulset.kubernetes.io/pod-name"
	// replicaComponent is the component label of the per-replica relay Services, by which the
	// look-up finds them all (including those a scale-down leaves behind).
	replicaComponent = "replica-relay"
	// labelReplica is a relay Service's replica ordinal.
	labelReplica = "ftp.kubeftp.dev/replica"
)

// replicated tells whether the server runs several replicas now.
func replicated(s *ftpv1alpha1.FTPServer) bool { return replicasOf(s) > 1 }

// runsStatefulSet tells whether the server runs as a StatefulSet of replicas, with passive
// slices and the relay between them: with several replicas, and with one (or none) when every
// volume is shared (sharedStorage). The workload kind then never changes with the replica count:
// scaling between one and several is a plain scale, whose removed replicas drain as peers
// (peerCount), instead of a swap between a Deployment and a StatefulSet, whose pods of both
// kinds would take sessions at once without relaying to each other
// (docs/design/multi-replica.md). Only a server on storage of one node runs a Deployment
// (Recreate); it can have one replica only. Nothing here depends on the count, so that the pod
// template does not change when it does.
func runsStatefulSet(s *ftpv1alpha1.FTPServer, facts clusterFacts) bool {
	return replicated(s) || sharedStorage(s, facts)
}

// sharedStorage: every volume's claim, as it is (facts.claimAccessModes), can be mounted by
// every replica (ReadWriteMany).
func sharedStorage(s *ftpv1alpha1.FTPServer, facts clusterFacts) bool {
	for _, v := range s.Spec.Volumes {
		if !slices.Contains(facts.claimAccessModes[v.Name], corev1.ReadWriteMany) {
			return false
		}
	}
	return len(s.Spec.Volumes) > 0
}

// portsPerReplica is the size of each replica's slice: spec.ports.passive.perReplica, or the
// range divided evenly.
func portsPerReplica(s *ftpv1alpha1.FTPServer) int32 {
	if p := s.Spec.Ports.Passive.PerReplica; p != nil {
		return *p
	}
	return (s.Spec.Ports.Passive.End - s.Spec.Ports.Passive.Start + 1) / max(replicasOf(s), 1)
}

// replicaSlice is the passive ports replica i answers PASV/EPSV with.
func replicaSlice(s *ftpv1alpha1.FTPServer, i int32) fileconfig.PortRange {
	k := portsPerReplica(s)
	start := s.Spec.Ports.Passive.Start + i*k
	return fileconfig.PortRange{Start: int(start), End: int(start + k - 1)}
}

// replicaPodName is the StatefulSet's pod of ordinal i.
func replicaPodName(s *ftpv1alpha1.FTPServer, i int32) string {
	return s.Name + "-" + strconv.Itoa(int(i))
}

func replicaServiceName(s *ftpv1alpha1.FTPServer, i int32) string {
	return s.Name + "-r" + strconv.Itoa(int(i))
}

func relaySecretName(s *ftpv1alpha1.FTPServer) string { return s.Name + "-relay" }

// peerCount is how many replicas the config's peers and the relay Services cover:
// spec.replicas, or more while the pods of ordinals a scale-down removed still exist. Those
// drain (and during the daemon's shutdown delay still take new sessions): the data connections
// of their sessions' transfers land on any replica and must still be relayed to them, and a
// removed replica must still find itself among the peers when it reloads. Only ordinals whose
// slice fits in the passive range count (a derived slice size grows when replicas shrink).
func peerCount(s *ftpv1alpha1.FTPServer, facts clusterFacts) int32 {
	n := replicasOf(s)
	if facts.replicaPodsUpTo > n {
		fit := (s.Spec.Ports.Passive.End - s.Spec.Ports.Passive.Start + 1) / max(portsPerReplica(s), 1)
		n = max(n, min(facts.replicaPodsUpTo, fit))
	}
	return n
}

// replicaServicesFor builds one ClusterIP Service per peer for its relay port. Not-ready
// addresses are published: a draining replica still receives the data connections of its own
// sessions' transfers.
func replicaServicesFor(s *ftpv1alpha1.FTPServer, facts clusterFacts) []*corev1.Service {
	if !runsStatefulSet(s, facts) {
		return nil
	}
	var out []*corev1.Service
	for i := range peerCount(s, facts) {
		labels := commonLabels(s)
		labels[labelComponent] = replicaComponent
		labels[labelReplica] = strconv.Itoa(int(i))
		selector := selectorLabels(s)
		selector[statefulSetPodNameLabel] = replicaPodName(s, i)
		out = append(out, &corev1.Service{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: metav1.ObjectMeta{Name: replicaServiceName(s, i), Namespace: s.Namespace, Labels: labels,
				OwnerReferences: []metav1.OwnerReference{ownerReference(s)}},
			Spec: corev1.ServiceSpec{
				Type:                     corev1.ServiceTypeClusterIP,
				Selector:                 selector,
				PublishNotReadyAddresses: true,
				Ports: []corev1.ServicePort{{Name: "relay", Protocol: corev1.ProtocolTCP, Port: relayContainerPort,
					TargetPort: intstr.FromString("relay")}},
			},
		})
	}
	return out
}

// relaySecretFor holds the key every replica signs and checks relayed connections with. The key
// itself comes from the look-up (the existing Secret's, or a new random one).
func relaySecretFor(s *ftpv1alpha1.FTPServer, facts clusterFacts) *corev1.Secret {
	if !runsStatefulSet(s, facts) {
		return nil
	}
	key := facts.relayKey
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: objectMeta(s, relaySecretName(s)),
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{relayKeyKey: []byte(key)},
	}
}

// replicasConfigFor is the config's passive.replicas: every peer (peerCount) and where its
// relay is reached. ok is false while a relay Service has no cluster IP yet (the look-up after it is
// created has it); until then the workload is not changed.
func replicasConfigFor(s *ftpv1alpha1.FTPServer, facts clusterFacts) (cfg *fileconfig.Replicas, ok bool) {
	if !runsStatefulSet(s, facts) {
		return nil, true
	}
	cfg = &fileconfig.Replicas{
		PortsPerReplica: int(portsPerReplica(s)),
		RelayListen:     fmt.Sprintf(":%d", relayContainerPort),
		KeyFile:         path.Join(relayMountPath, relayKeyKey),
	}
	ok = true
	for i := range peerCount(s, facts) {
		ip := facts.replicaServiceIPs[i]
		if ip == "" || ip == corev1.ClusterIPNone {
			ok, ip = false, "0.0.0.0"
		}
		cfg.Peers = append(cfg.Peers, fileconfig.Peer{Name: replicaPodName(s, i), RelayAddress: fmt.Sprintf("%s:%d", ip, relayContainerPort)})
	}
	return cfg, ok
}

// statefulSetFor runs several replicas. The pods are started and stopped in parallel (each
// replica stands alone; ordered start-up would only slow scaling), rolled one at a time
// (RollingUpdate: the replica being replaced drains its own transfers while the others serve).
func statefulSetFor(s *ftpv1alpha1.FTPServer, facts clusterFacts, checksum string) *appsv1.StatefulSet {
	if !runsStatefulSet(s, facts) {
		return nil
	}
	return &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: objectMeta(s, s.Name),
		Spec: appsv1.StatefulSetSpec{
			Replicas:            ptr.To(replicasOf(s)),
			Selector:            &metav1.LabelSelector{MatchLabels: selectorLabels(s)},
			ServiceName:         s.Name,
			PodManagementPolicy: appsv1.ParallelPodManagement,
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{
				Type:          appsv1.RollingUpdateStatefulSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{MaxUnavailable: ptr.To(intstr.FromInt32(1))},
			},
			Template: podTemplateFor(s, facts, checksum),
		},
	}
}

// podDisruptionBudgetFor lets voluntary disruptions (a node drain) take one replica at a time.
func podDisruptionBudgetFor(s *ftpv1alpha1.FTPServer, facts clusterFacts) *policyv1.PodDisruptionBudget {
	if !runsStatefulSet(s, facts) {
		return nil
	}
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
		ObjectMeta: objectMeta(s, s.Name),
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: ptr.To(intstr.FromInt32(1)),
			Selector:       &metav1.LabelSelector{MatchLabels: selectorLabels(s)},
		},
	}
}

// replicaSpread spreads the replicas over nodes (and zones) when the spec does not place them
// itself; ScheduleAnyway, so that a one-node cluster still runs them all.
func replicaSpread(s *ftpv1alpha1.FTPServer, facts clusterFacts) []corev1.TopologySpreadConstraint {
	if !runsStatefulSet(s, facts) || s.Spec.Pod.Affinity != nil {
		return nil
	}
	var out []corev1.TopologySpreadConstraint
	for _, key := range []string{corev1.LabelHostname, corev1.LabelTopologyZone} {
		out = append(out, corev1.TopologySpreadConstraint{
			MaxSkew: 1, TopologyKey: key, WhenUnsatisfiable: corev1.ScheduleAnyway,
			LabelSelector: &metav1.LabelSelector{MatchLabels: selectorLabels(s)},
		})
	}
	return out
}
