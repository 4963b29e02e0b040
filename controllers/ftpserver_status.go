package controllers

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// conclusion is what one reconcile found out about an FTPServer, ready to go into its status.
type conclusion struct {
	ready       bool
	reason      string
	message     string
	reconciling bool // still converging, e.g. a rollout in progress
	stalled     bool // cannot progress without a human

	endpoint       string
	passiveAddress string
	passivePorts   string
	readyReplicas  int32
	replicas       []ftpv1alpha1.ReplicaStatus // with several replicas
}

// conclude decides readiness. Ready is True only when clients can use the server: no blocker,
// the PASV address known, the rollout done with available pods (the kubelet marks them
// available only when the daemon's /readyz answers), and every ready pod serving the config
// that carries the current address (served_config.go).
func conclude(s *ftpv1alpha1.FTPServer, facts clusterFacts, applied applyResult, address advertisedAddress, pods podsSeen) conclusion {
	w, served, trouble := applied.workload, pods.served, pods.trouble
	c := conclusion{
		passiveAddress: address.String(),
		passivePorts:   fmt.Sprintf("%d-%d", s.Spec.Ports.Passive.Start, s.Spec.Ports.Passive.End),
		endpoint:       endpointFor(s, facts),
	}
	c.readyReplicas = w.ready
	if runsStatefulSet(s, facts) {
		for i := range replicasOf(s) {
			name := replicaPodName(s, i)
			c.replicas = append(c.replicas, ftpv1alpha1.ReplicaStatus{Name: name, PassivePorts: replicaSlice(s, i).String(), Ready: served.servingPods[name]})
		}
	}
	switch {
	case len(applied.blockers) > 0:
		top := rankBlockers(applied.blockers)
		c.reason, c.message, c.stalled = top[0].reason, blockersMessage(top), true
	case replicasOf(s) == 0 && (!w.exists() || !w.observed || w.replicas > 0):
		c.reason, c.message, c.reconciling = ftpv1alpha1.ReasonStopping, stoppingMessage(s, w), true
	case replicasOf(s) == 0:
		// Stopped is the state asked for, reached: Ready True (as a Deployment scaled to zero is
		// Available), so kstatus reads Current and "not Ready" alerts stay quiet; the reason
		// and message say that nothing serves.
		c.ready, c.reason, c.message = true, ftpv1alpha1.ReasonStopped, fmt.Sprintf(
			"stopped: spec.replicas is 0, no daemon pod runs; the Service %s/%s, the claims and their data are kept (set replicas: 1 to serve again)", s.Namespace, s.Name)
	case degraded(s, address, served):
		c.ready, c.reason, c.reconciling = true, ftpv1alpha1.ReasonDegraded, true
		c.message = degradedMessage(s, c, trouble)
	case trouble != nil:
		c.reason, c.message = trouble.reason, trouble.message
		c.stalled, c.reconciling = trouble.stalled, !trouble.stalled
	case !address.known():
		c.reason, c.message, c.reconciling = ftpv1alpha1.ReasonWaitingForAddress, waitingForAddressMessage(s, facts), true
	case !w.rolledOut(replicasOf(s)):
		c.reason, c.message, c.reconciling = ftpv1alpha1.ReasonWaitingForPods, waitingForPodsMessage(s, facts, w), true
	case !served.checked || !served.complete(replicasOf(s)):
		c.reason, c.message, c.reconciling = ftpv1alpha1.ReasonWaitingForConfig, served.message(s, c.passiveAddress), true
	case served.endpoints < int(replicasOf(s)):
		c.reason, c.reconciling = ftpv1alpha1.ReasonWaitingForEndpoints, true
		c.message = fmt.Sprintf("%d of %d ready pods are listed as ready endpoints of Service %s/%s; kube-proxy and the load balancer forward only to those (kubectl -n %s get endpointslices -l %s=%s)",
			served.endpoints, replicasOf(s), s.Namespace, s.Name, s.Namespace, discoveryv1.LabelServiceName, s.Name)
	default:
		c.ready, c.reason = true, ftpv1alpha1.ReasonReady
		c.message = fmt.Sprintf("serving at %s; PASV replies advertise %s, passive ports %s; pods serve inputs version %s",
			c.endpoint, c.passiveAddress, c.passivePorts, served.inputsVersion)
	}
	if applied.scaleUpHeld && c.reconciling {
		c.message += "; scaling up: the new replicas start once the running ones serve the configuration that names them as peers"
	}
	return c
}

// degraded: several replicas, and some but not all serve the current inputs through the
// Service. Clients are served (Ready), the server is not whole (Reconciling).
func degraded(s *ftpv1alpha1.FTPServer, address advertisedAddress, served servedConfig) bool {
	return replicated(s) && address.known() && served.checked && served.serving > 0 && served.endpoints > 0 &&
		(served.serving < int(replicasOf(s)) || served.endpoints < int(replicasOf(s)))
}

func degradedMessage(s *ftpv1alpha1.FTPServer, c conclusion, trouble *podTrouble) string {
	var missing []string
	for _, r := range c.replicas {
		if !r.Ready {
			missing = append(missing, r.Name)
		}
	}
	msg := fmt.Sprintf("degraded: %d of %d replicas serve at %s (not serving: %s); the others take their sessions",
		int(replicasOf(s))-len(missing), replicasOf(s), c.endpoint, strings.Join(missing, ", "))
	if trouble != nil {
		msg += "; " + trouble.reason + ": " + trouble.message
	}
	return msg
}

// blockerRank orders blockers by how much they explain: an object that is not ours or a port
// someone else holds stops the most; a refused claim change the least (the claim still serves).
var blockerRank = []string{
	ftpv1alpha1.ReasonNameConflict, ftpv1alpha1.ReasonPortConflict, ftpv1alpha1.ReasonClaimNotFound,
	ftpv1alpha1.ReasonSecretNotFound, ftpv1alpha1.ReasonSecretInvalid, ftpv1alpha1.ReasonClaimUpdateRejected,
}

// rankBlockers sorts blockers by blockerRank, keeping the order found among equals.
func rankBlockers(bs []blocker) []blocker {
	out := append([]blocker(nil), bs...)
	rank := func(reason string) int {
		if i := slices.Index(blockerRank, reason); i >= 0 {
			return i
		}
		return len(blockerRank)
	}
	slices.SortStableFunc(out, func(a, b blocker) int { return rank(a.reason) - rank(b.reason) })
	return out
}

// blockersMessage reports every blocker: the first in full, then the others with their reason.
func blockersMessage(ranked []blocker) string {
	msg := ranked[0].message
	for _, b := range ranked[1:] {
		msg += "; also " + b.reason + ": " + b.message
	}
	return msg
}

func stoppingMessage(s *ftpv1alpha1.FTPServer, w workload) string {
	if !w.exists() {
		return "stopping: spec.replicas is 0"
	}
	return fmt.Sprintf("stopping: spec.replicas is 0; %d daemon pods still draining (kubectl -n %s get pods -l %s=%s)",
		w.replicas, s.Namespace, labelInstance, s.Name)
}

func waitingForAddressMessage(s *ftpv1alpha1.FTPServer, facts clusterFacts) string {
	if len(facts.loadBalancerIngress) > 0 {
		return fmt.Sprintf("the load balancer of Service %s/%s has only IPv6 addresses, but PASV replies carry IPv4: set passiveAddress.address", s.Namespace, s.Name)
	}
	if s.Spec.Service.Type == corev1.ServiceTypeClusterIP {
		return fmt.Sprintf("waiting for Service %s/%s to get a cluster IP", s.Namespace, s.Name)
	}
	return fmt.Sprintf("waiting for the load balancer to give Service %s/%s an external address (kubectl -n %s describe service %s); "+
		"without a load balancer, use service.type NodePort with passiveAddress.address", s.Namespace, s.Name, s.Namespace, s.Name)
}

func waitingForPodsMessage(s *ftpv1alpha1.FTPServer, facts clusterFacts, w workload) string {
	if !w.exists() {
		if runsStatefulSet(s, facts) {
			return "creating the daemon StatefulSet"
		}
		return "creating the daemon Deployment"
	}
	return fmt.Sprintf("rolling out the daemon %s: %d/%d pods updated and available (kubectl -n %s get pods -l %s=%s)",
		w.kind, min(w.updated, w.available), replicasOf(s), s.Namespace, labelInstance, s.Name)
}

// endpointFor is where clients connect: the load balancer, the declared node address and node
// port, or the Service's DNS name inside the cluster. Empty until known.
func endpointFor(s *ftpv1alpha1.FTPServer, facts clusterFacts) string {
	port := s.Spec.Ports.Control
	switch s.Spec.Service.Type {
	case corev1.ServiceTypeClusterIP:
		return fmt.Sprintf("ftp://%s.%s.svc:%d", s.Name, s.Namespace, port)
	case corev1.ServiceTypeNodePort:
		if facts.controlNodePort == 0 {
			return ""
		}
		return "ftp://" + net.JoinHostPort(s.Spec.PassiveAddress.Address, strconv.Itoa(int(facts.controlNodePort)))
	}
	for _, in := range facts.loadBalancerIngress {
		host := in.IP
		if host == "" {
			host = in.Hostname
		}
		if host != "" {
			return "ftp://" + net.JoinHostPort(host, strconv.Itoa(int(port)))
		}
	}
	return ""
}

// writeConclusion records a conclusion in status following kstatus: Ready is always present,
// Reconciling and Stalled only while True (a False one is removed, not kept), and every condition
// carries the generation it describes. LastTransitionTime only moves when a status flips, so an
// unchanged conclusion leaves the status equal and nothing is written.
func writeConclusion(status *ftpv1alpha1.FTPServerStatus, generation int64, c conclusion) {
	status.ObservedGeneration = generation
	status.Endpoint = c.endpoint
	status.PassiveAddress = c.passiveAddress
	status.PassivePorts = c.passivePorts
	status.ReadyReplicas = c.readyReplicas
	status.Replicas = c.replicas

	readyStatus := metav1.ConditionFalse
	if c.ready {
		readyStatus = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{
		Type:               ftpv1alpha1.ConditionReady,
		Status:             readyStatus,
		Reason:             c.reason,
		Message:            c.message,
		ObservedGeneration: generation,
	})
	setWhileTrue(status, ftpv1alpha1.ConditionReconciling, c.reconciling, c.reason, c.message, generation)
	setWhileTrue(status, ftpv1alpha1.ConditionStalled, c.stalled, c.reason, c.message, generation)
}

func setWhileTrue(status *ftpv1alpha1.FTPServerStatus, condType string, on bool, reason, message string, generation int64) {
	if !on {
		meta.RemoveStatusCondition(&status.Conditions, condType)
		return
	}
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{
		Type:               condType,
		Status:             metav1.ConditionTrue,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: generation,
	})
}

// readinessChanged tells whether Ready's status or reason moved, which is worth an event.
func readinessChanged(before, after *ftpv1alpha1.FTPServerStatus) bool {
	b := meta.FindStatusCondition(before.Conditions, ftpv1alpha1.ConditionReady)
	a := meta.FindStatusCondition(after.Conditions, ftpv1alpha1.ConditionReady)
	return b == nil || a == nil || b.Status != a.Status || b.Reason != a.Reason
}
