package controllers

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
)

// desiredSet is every object an FTPServer should have, built at once by desiredSetFor, a pure
// function of the spec and the looked-up facts; the reconciler then only applies it.
type desiredSet struct {
	claims      []*corev1.PersistentVolumeClaim
	service     *corev1.Service
	configMap   *corev1.ConfigMap
	usersSecret *corev1.Secret
	// deployment runs one replica (or none); statefulSet several, with the relay Services,
	// the relay Secret and the disruption budget. What is nil here is deleted when ours.
	deployment          *appsv1.Deployment
	statefulSet         *appsv1.StatefulSet
	replicaServices     []*corev1.Service
	relaySecret         *corev1.Secret
	podDisruptionBudget *policyv1.PodDisruptionBudget
	// networkPolicy is nil when spec.networkPolicy.enabled is false: ours is then deleted.
	networkPolicy *networkingv1.NetworkPolicy
	// relayPending: a relay Service has no cluster IP yet, so the config cannot name every
	// peer; the config and the workload stay as they are until the next look-up has it.
	relayPending bool
	// addressPending: the PASV address is not known yet (the load balancer has given none) and
	// pods are wanted. The config and the workload are not created until it is, so that the
	// pods start with the config that carries it: one write of the config instead of two, and
	// no pod to make refresh its volume. Once they exist they are kept current.
	addressPending bool

	// address is the PASV address the config carries (unknown until the Service has one).
	address advertisedAddress
	// configDigest is fileconfig.ContentDigest of the rendered ftpd.yaml: what every ready pod
	// must serve before the server is Ready (served_config.go).
	configDigest string
	// inputsVersion covers everything the pods mount from us (config, users, TLS Secret).
	inputsVersion string
	// served is what a daemon serving these inputs reports on its ops port.
	served fileconfig.ServedConfig
}

// desiredSetFor builds the desired objects of s. With a blocker from the look-up (a missing
// password Secret, say) the users are incomplete; the reconciler then never applies the users
// Secret or the Deployment built from them.
func desiredSetFor(s *ftpv1alpha1.FTPServer, facts clusterFacts) (desiredSet, error) {
	d := desiredSet{
		claims:  claimsFor(s),
		service: serviceFor(s),
		address: advertisedAddressFor(s, facts),
	}
	d.addressPending = !d.address.known() && replicasOf(s) > 0
	cfg := ftpdConfigFor(s, facts, d.address)
	var relayReady bool
	cfg.Passive.Replicas, relayReady = replicasConfigFor(s, facts)
	d.relayPending = !relayReady
	d.replicaServices = replicaServicesFor(s, facts)
	d.relaySecret = relaySecretFor(s, facts)
	d.podDisruptionBudget = podDisruptionBudgetFor(s, facts)
	var err error
	if d.configMap, err = configMapFor(s, cfg); err != nil {
		return d, err
	}
	d.configDigest = fileconfig.ContentDigest([]byte(d.configMap.Data[fileconfig.ConfigFileName]))
	if d.usersSecret, err = usersSecretFor(s, facts.users); err != nil {
		return d, err
	}
	users := d.usersSecret.Data[fileconfig.UsersFileName]
	d.inputsVersion = inputsVersion(d.configDigest, users, facts.tlsSecretVersion)
	d.served = fileconfig.ServedConfig{
		ConfigSHA256: d.configDigest, UsersSHA256: fileconfig.ContentDigest(users), CertificateSHA256: facts.tlsCertificateDigest,
	}
	checksum, err := restartChecksum(cfg)
	if err != nil {
		return d, fmt.Errorf("checksum config of %s/%s: %w", s.Namespace, s.Name, err)
	}
	d.deployment = deploymentFor(s, facts, checksum)
	d.statefulSet = statefulSetFor(s, facts, checksum)
	if networkPolicyEnabled(s) {
		d.networkPolicy = networkPolicyFor(s, facts)
	}
	return d, nil
}
