package controllers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
)

// blocker is a problem only a person can fix (a missing Secret or claim). It stops the parts of
// the reconcile that depend on it and is reported as Stalled.
type blocker struct {
	reason  string
	message string
}

// existingObjects are our objects as they are in the cluster (nil when absent).
type existingObjects struct {
	service       *corev1.Service
	deployment    *appsv1.Deployment
	configMap     *corev1.ConfigMap
	usersSecret   *corev1.Secret
	networkPolicy *networkingv1.NetworkPolicy
	claims        map[string]*corev1.PersistentVolumeClaim // by claim name
	// With several replicas (and after them, until pruned):
	statefulSet         *appsv1.StatefulSet
	podDisruptionBudget *policyv1.PodDisruptionBudget
	relaySecret         *corev1.Secret
	replicaServices     map[int32]*corev1.Service // by ordinal, all that exist
}

// clusterState is what the look-up found: the facts the builders take, our objects as they
// are, and the blockers among the inputs.
type clusterState struct {
	facts    clusterFacts
	existing existingObjects
	blockers []blocker
	// pods are the daemon pods, when the look-up listed them (podsListed: for a StatefulSet's
	// removed replicas), so that lookAtPods does not list them again.
	pods       []corev1.Pod
	podsListed bool
}

// lookUp reads everything the builders and the apply need. A missing input becomes a blocker,
// not an error (errors are for failures worth retrying); every kind of input is looked at, so
// all blockers are reported at once.
func (r *FTPServerReconciler) lookUp(ctx context.Context, s *ftpv1alpha1.FTPServer) (clusterState, error) {
	st := clusterState{
		facts:    clusterFacts{daemonImage: r.DaemonImage, claimAccessModes: map[string][]corev1.PersistentVolumeAccessMode{}},
		existing: existingObjects{claims: map[string]*corev1.PersistentVolumeClaim{}, replicaServices: map[int32]*corev1.Service{}},
	}
	var err error
	ex := &st.existing
	if ex.service, err = getOptional(ctx, r.Client, s.Namespace, s.Name, &corev1.Service{}); err != nil {
		return st, err
	}
	if svc := ex.service; svc != nil {
		st.facts.loadBalancerIngress = svc.Status.LoadBalancer.Ingress
		st.facts.clusterIP = svc.Spec.ClusterIP
		for _, p := range svc.Spec.Ports {
			if p.Name == "ftp" {
				st.facts.controlNodePort = p.NodePort
			}
		}
	}
	if ex.deployment, err = getOptional(ctx, r.Client, s.Namespace, s.Name, &appsv1.Deployment{}); err != nil {
		return st, err
	}
	if ex.configMap, err = getOptional(ctx, r.Client, s.Namespace, configMapName(s), &corev1.ConfigMap{}); err != nil {
		return st, err
	}
	if ex.usersSecret, err = getOptional(ctx, r.apiReader, s.Namespace, usersSecretName(s), &corev1.Secret{}); err != nil {
		return st, err
	}
	if ex.networkPolicy, err = getOptional(ctx, r.Client, s.Namespace, s.Name, &networkingv1.NetworkPolicy{}); err != nil {
		return st, err
	}
	if err := r.lookUpReplicas(ctx, s, &st); err != nil {
		return st, err
	}
	for _, look := range []func() (*blocker, error){
		func() (*blocker, error) { return r.lookUpClaims(ctx, s, &st) },
		func() (*blocker, error) { return r.lookUpTLS(ctx, s, &st.facts) },
		func() (*blocker, error) { return r.resolveUsers(ctx, s, ex.usersSecret, &st.facts) },
	} {
		b, err := look()
		if err != nil {
			return st, err
		}
		if b != nil {
			st.blockers = append(st.blockers, *b)
		}
	}
	// A new relay key only for a server that runs replicas (known once the claims are).
	if st.facts.relayKey == "" && runsStatefulSet(s, st.facts) {
		if st.facts.relayKey, err = newRelayKey(); err != nil {
			return st, err
		}
	}
	return st, nil
}

// lookUpReplicas reads the objects of several replicas: the StatefulSet, the budget, the relay
// Secret, every relay Service (also those a scale-down or a return to one replica leaves,
// which the apply prunes) and which replica pods still exist (removed ones drain as peers). The
// relay key is kept from the Secret; lookUp makes a new one if the server needs it.
func (r *FTPServerReconciler) lookUpReplicas(ctx context.Context, s *ftpv1alpha1.FTPServer, st *clusterState) error {
	ex := &st.existing
	var err error
	if ex.statefulSet, err = getOptional(ctx, r.Client, s.Namespace, s.Name, &appsv1.StatefulSet{}); err != nil {
		return err
	}
	if ex.podDisruptionBudget, err = getOptional(ctx, r.Client, s.Namespace, s.Name, &policyv1.PodDisruptionBudget{}); err != nil {
		return err
	}
	if ex.relaySecret, err = getOptional(ctx, r.apiReader, s.Namespace, relaySecretName(s), &corev1.Secret{}); err != nil {
		return err
	}
	var svcs corev1.ServiceList
	if err := r.List(ctx, &svcs, client.InNamespace(s.Namespace), client.MatchingLabels{labelInstance: s.Name, labelComponent: replicaComponent}); err != nil {
		return fmt.Errorf("list relay Services of FTPServer %s/%s: %w", s.Namespace, s.Name, err)
	}
	st.facts.replicaServiceIPs = map[int32]string{}
	for i := range svcs.Items {
		svc := &svcs.Items[i]
		ordinal, err := strconv.ParseInt(svc.Labels[labelReplica], 10, 32)
		if err != nil || svc.Name != replicaServiceName(s, int32(ordinal)) {
			continue // not one of ours by name: never touched
		}
		ex.replicaServices[int32(ordinal)] = svc
		st.facts.replicaServiceIPs[int32(ordinal)] = svc.Spec.ClusterIP
	}
	// The pods of a StatefulSet, also one the server no longer wants (its replicas drain).
	if ex.statefulSet != nil {
		if st.pods, err = r.podsOf(ctx, s); err != nil {
			return err
		}
		st.podsListed = true
		for _, p := range st.pods {
			ordinal, err := strconv.ParseInt(strings.TrimPrefix(p.Name, s.Name+"-"), 10, 32)
			if err == nil && p.Name == replicaPodName(s, int32(ordinal)) && int32(ordinal) >= st.facts.replicaPodsUpTo {
				st.facts.replicaPodsUpTo = int32(ordinal) + 1
			}
		}
	}
	if key := ex.relaySecret; key != nil && len(key.Data[relayKeyKey]) >= 2*relayKeyBytes {
		st.facts.relayKey = string(key.Data[relayKeyKey])
	}
	return nil
}

// newRelayKey is a random key for a new relay Secret, hex-encoded.
func newRelayKey() (string, error) {
	b := make([]byte, relayKeyBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate the relay key: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func (r *FTPServerReconciler) lookUpClaims(ctx context.Context, s *ftpv1alpha1.FTPServer, st *clusterState) (*blocker, error) {
	facts := &st.facts
	for _, v := range s.Spec.Volumes {
		pvc, err := getOptional(ctx, r.Client, s.Namespace, claimName(s, v), &corev1.PersistentVolumeClaim{})
		if err != nil {
			return nil, err
		}
		if pvc != nil {
			st.existing.claims[pvc.Name] = pvc
		}
		if pvc != nil && pvc.Status.Phase == corev1.ClaimPending {
			facts.pendingClaims = append(facts.pendingClaims, pendingClaim{name: pvc.Name, storageClass: ptr.Deref(pvc.Spec.StorageClassName, "")})
		}
		if v.ClaimTemplate != nil {
			// The rollout strategy follows the claim as it is: a template change the claim
			// refuses (ClaimUpdateRejected) must not make a ReadWriteOnce claim look shareable.
			facts.claimAccessModes[v.Name] = v.ClaimTemplate.AccessModes
			if pvc != nil {
				facts.claimAccessModes[v.Name] = pvc.Spec.AccessModes
			}
			continue
		}
		if pvc == nil {
			return &blocker{reason: ftpv1alpha1.ReasonClaimNotFound, message: fmt.Sprintf(
				"volume %q uses PersistentVolumeClaim %q, which does not exist in namespace %s; create it or use a claimTemplate",
				v.Name, v.ClaimName, s.Namespace)}, nil
		}
		facts.claimAccessModes[v.Name] = pvc.Spec.AccessModes
		if replicated(s) && !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteMany) {
			// CEL sees the templates; an existing claim's modes show only here.
			return &blocker{reason: ftpv1alpha1.ReasonVolumeNotShared, message: fmt.Sprintf(
				"spec.replicas is %d, but volume %q uses PersistentVolumeClaim %q with access modes %v, which not every replica can mount; use a ReadWriteMany claim or 1 replica",
				replicasOf(s), v.Name, v.ClaimName, pvc.Spec.AccessModes)}, nil
		}
	}
	return nil, nil
}

func (r *FTPServerReconciler) lookUpTLS(ctx context.Context, s *ftpv1alpha1.FTPServer, facts *clusterFacts) (*blocker, error) {
	if s.Spec.TLS.Mode == "" || s.Spec.TLS.Mode == ftpv1alpha1.TLSDisabled {
		return nil, nil
	}
	name := s.Spec.TLS.SecretName
	secret, err := getOptional(ctx, r.apiReader, s.Namespace, name, &corev1.Secret{})
	if err != nil {
		return nil, err
	}
	if secret == nil {
		return &blocker{reason: ftpv1alpha1.ReasonSecretNotFound, message: fmt.Sprintf(
			"TLS Secret %q not found in namespace %s; create it (e.g. a cert-manager Certificate with secretName %q) or set tls.mode Disabled",
			name, s.Namespace, name)}, nil
	}
	if len(secret.Data[corev1.TLSCertKey]) == 0 || len(secret.Data[corev1.TLSPrivateKeyKey]) == 0 {
		return &blocker{reason: ftpv1alpha1.ReasonSecretInvalid, message: fmt.Sprintf(
			"TLS Secret %q has no %s and %s; it must be of type kubernetes.io/tls", name, corev1.TLSCertKey, corev1.TLSPrivateKeyKey)}, nil
	}
	facts.tlsSecretVersion = secret.ResourceVersion
	facts.tlsCertificateDigest = fileconfig.ContentDigest(secret.Data[corev1.TLSCertKey])
	return nil, nil
}

// resolveUsers reads each user's password and turns it into a bcrypt hash, reusing the hash
// already in our users Secret when it still matches.
func (r *FTPServerReconciler) resolveUsers(ctx context.Context, s *ftpv1alpha1.FTPServer, existingUsers *corev1.Secret, facts *clusterFacts) (*blocker, error) {
	previous := previousHashes(existingUsers)
	for _, u := range s.Spec.Users {
		ref := u.PasswordSecretRef
		key := ref.Key
		if key == "" {
			key = "password"
		}
		secret, err := getOptional(ctx, r.apiReader, s.Namespace, ref.Name, &corev1.Secret{})
		if err != nil {
			return nil, err
		}
		if secret == nil {
			return &blocker{reason: ftpv1alpha1.ReasonSecretNotFound, message: fmt.Sprintf(
				"Secret %q with the password of user %q not found in namespace %s; create it: kubectl -n %s create secret generic %s --from-literal=%s=<password>",
				ref.Name, u.Name, s.Namespace, s.Namespace, ref.Name, key)}, nil
		}
		value, ok := secret.Data[key]
		if !ok {
			return &blocker{reason: ftpv1alpha1.ReasonSecretNotFound, message: fmt.Sprintf(
				"Secret %q has no key %q for the password of user %q", ref.Name, key, u.Name)}, nil
		}
		hash, err := r.hasher.hash(value, previous[u.Name])
		if err != nil {
			return &blocker{reason: ftpv1alpha1.ReasonSecretInvalid, message: fmt.Sprintf(
				"password of user %q (Secret %q, key %q): %v", u.Name, ref.Name, key, err)}, nil
		}
		facts.users = append(facts.users, resolvedUser{name: u.Name, passwordHash: hash, home: userHome(s, u), readOnly: u.ReadOnly})
	}
	return nil, nil
}

// previousHashes reads the hashes we rendered last time, by user name.
func previousHashes(secret *corev1.Secret) map[string]string {
	out := map[string]string{}
	if secret == nil {
		return out
	}
	f, err := fileconfig.ParseUsers(secret.Data[fileconfig.UsersFileName])
	if err != nil {
		return out // rewritten from scratch below
	}
	for _, u := range f.Users {
		out[u.Name] = u.PasswordHash
	}
	return out
}

// getOptional reads an object, returning nil when it does not exist.
func getOptional[T client.Object](ctx context.Context, c client.Reader, namespace, name string, obj T) (T, error) {
	var zero T
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return zero, nil
		}
		return zero, fmt.Errorf("get %T %s/%s: %w", obj, namespace, name, err)
	}
	return obj, nil
}
