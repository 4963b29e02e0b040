package controllers

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
)

// clusterFacts are what the reconciler looked up in the cluster for one FTPServer (lookUp), as
// the builders take them, so that they stay pure functions of (spec, facts). Naming: the facts
// are "facts"; our objects as they are in the cluster are "existing" (existingObjects); what we
// want them to be is "desired" (desiredSet).
type clusterFacts struct {
	// daemonImage is the operator's own image, used unless spec.image overrides it.
	daemonImage string
	// users are the spec's users with their password hashes resolved from Secrets.
	users []resolvedUser
	// service facts, from our Service once it exists.
	loadBalancerIngress []corev1.LoadBalancerIngress
	clusterIP           string
	controlNodePort     int32
	// claimAccessModes of every volume, by volume name: from the template, or from the
	// existing claim.
	claimAccessModes map[string][]corev1.PersistentVolumeAccessMode
	// pendingClaims are the server's claims that exist but are not bound yet.
	pendingClaims []pendingClaim
	// tlsSecretVersion is the resourceVersion of the TLS Secret the pods mount, when TLS is on.
	tlsSecretVersion string
	// tlsCertificateDigest is fileconfig.ContentDigest of that Secret's tls.crt: what a daemon
	// serving it reports (fileconfig.ServedConfig).
	tlsCertificateDigest string
	// With several replicas: the cluster IP of each replica's relay Service, by ordinal, and
	// the relay key (the existing Secret's, or a new random one).
	replicaServiceIPs map[int32]string
	relayKey          string
	// replicaPodsUpTo is one more than the highest ordinal of the StatefulSet's pods that
	// still exist, terminating ones included (0 when there are none): after a scale-down the
	// removed replicas drain, and stay peers until they are gone (peerCount).
	replicaPodsUpTo int32
}

// resolvedUser is a spec user with its bcrypt hash.
type resolvedUser struct {
	name         string
	passwordHash string
	home         string // relative to dataRoot: <volume>/<subPath>
	readOnly     bool
}

// loadBalancerAddress picks the address the load balancer gives clients: its first IPv4
// address, else its first hostname (the daemon resolves it). PASV replies carry IPv4 only, so
// an IPv6-only load balancer has no usable address.
func (o clusterFacts) loadBalancerAddress() (ip, hostname string) {
	for _, in := range o.loadBalancerIngress {
		if addr, err := netip.ParseAddr(in.IP); err == nil && addr.Is4() {
			return in.IP, ""
		}
	}
	for _, in := range o.loadBalancerIngress {
		if in.Hostname != "" {
			return "", in.Hostname
		}
	}
	return "", ""
}
