package controllers

import (
	"math"
	"path"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
)

// drainGrace is added to drainTimeout for terminationGracePeriodSeconds, so the kubelet's
// SIGKILL never lands before the daemon's own drain deadline has passed and it has closed up.
const drainGrace = 10

// replicasOf is spec.replicas with its default (1).
func replicasOf(s *ftpv1alpha1.FTPServer) int32 {
	if s.Spec.Replicas == nil {
		return 1
	}
	return *s.Spec.Replicas
}

// deploymentFor builds the daemon Deployment of a server on storage of one node, with one
// replica (or none: stopped); other servers run in a StatefulSet (runsStatefulSet).
func deploymentFor(s *ftpv1alpha1.FTPServer, facts clusterFacts, checksum string) *appsv1.Deployment {
	if runsStatefulSet(s, facts) {
		return nil
	}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, Labels: commonLabels(s), OwnerReferences: []metav1.OwnerReference{ownerReference(s)}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicasOf(s)),
			Selector: &metav1.LabelSelector{MatchLabels: selectorLabels(s)},
			Strategy: strategyFor(s, facts),
			Template: podTemplateFor(s, facts, checksum),
		},
	}
}

// podTemplateFor is the daemon pod of the Deployment or the StatefulSet. It depends only on the
// spec and the restart checksum: never on the PASV address, the users or the replicas' peers,
// which the daemon reloads, so those changes do not roll the pods.
func podTemplateFor(s *ftpv1alpha1.FTPServer, facts clusterFacts, checksum string) corev1.PodTemplateSpec {
	podLabels := commonLabels(s)
	for k, v := range s.Spec.Pod.Labels {
		if _, reserved := podLabels[k]; !reserved {
			podLabels[k] = v
		}
	}
	podAnnotations := map[string]string{}
	for k, v := range s.Spec.Pod.Annotations {
		podAnnotations[k] = v
	}
	podAnnotations[restartChecksumAnnotation] = checksum

	image := s.Spec.Image
	if image == "" {
		image = facts.daemonImage
	}

	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: podAnnotations},
		Spec: corev1.PodSpec{
			// The daemon never talks to the API server.
			AutomountServiceAccountToken:  ptr.To(false),
			EnableServiceLinks:            ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To(terminationGraceFor(s)),
			SecurityContext:               podSecurityContext(s),
			ImagePullSecrets:              s.Spec.Pod.ImagePullSecrets,
			ServiceAccountName:            s.Spec.Pod.ServiceAccountName,
			Containers:                    []corev1.Container{daemonContainer(s, image, runsStatefulSet(s, facts))},
			Volumes:                       podVolumes(s, runsStatefulSet(s, facts)),
			NodeSelector:                  s.Spec.Pod.NodeSelector,
			Tolerations:                   s.Spec.Pod.Tolerations,
			Affinity:                      s.Spec.Pod.Affinity,
			TopologySpreadConstraints:     replicaSpread(s, facts),
			PriorityClassName:             s.Spec.Pod.PriorityClassName,
		},
	}
}

// terminationGraceFor is the daemon's shutdown delay (it keeps accepting sessions while the
// endpoints drop the pod; the config leaves the daemon's default) plus drainTimeout, each rounded
// up to whole seconds, plus drainGrace, so the daemon always reaches its own drain deadline and
// closes up before the kubelet's SIGKILL. drainTimeout 0s means no drain: the daemon closes
// transfers at once and the pod still gets drainGrace.
func terminationGraceFor(s *ftpv1alpha1.FTPServer) int64 {
	drain := int64(0)
	if d := s.Spec.DrainTimeout; d != nil {
		drain = int64(math.Ceil(d.Seconds()))
	}
	return int64(math.Ceil(fileconfig.DefaultShutdownDelay.Seconds())) + drain + drainGrace
}

// podSecurityContext is restricted-PSS compliant by default; spec.pod.securityContext replaces it
// for platforms that assign user IDs themselves. spec.pod.sysctls are added to either (the API
// refuses sysctls in both places).
func podSecurityContext(s *ftpv1alpha1.FTPServer) *corev1.PodSecurityContext {
	sc := &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		RunAsUser:      ptr.To(int64(daemonUID)),
		RunAsGroup:     ptr.To(int64(daemonUID)),
		FSGroup:        ptr.To(int64(daemonUID)),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if s.Spec.Pod.SecurityContext != nil {
		sc = s.Spec.Pod.SecurityContext.DeepCopy()
	}
	for _, sysctl := range s.Spec.Pod.Sysctls {
		sc.Sysctls = append(sc.Sysctls, corev1.Sysctl{Name: sysctl.Name, Value: sysctl.Value})
	}
	return sc
}

// strategyFor picks Recreate when a volume can be mounted by one node only: a surge pod on
// another node would hang waiting for the volume while the old one still holds it.
func strategyFor(s *ftpv1alpha1.FTPServer, facts clusterFacts) appsv1.DeploymentStrategy {
	for _, v := range s.Spec.Volumes {
		modes := facts.claimAccessModes[v.Name]
		if len(modes) == 0 || slices.Contains(modes, corev1.ReadWriteOnce) || slices.Contains(modes, corev1.ReadWriteOncePod) {
			return appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
		}
	}
	// Surge one new pod and keep the old one until the new one is ready; the old one drains.
	return appsv1.DeploymentStrategy{
		Type: appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{
			MaxUnavailable: ptr.To(intstr.FromInt32(0)),
			MaxSurge:       ptr.To(intstr.FromInt32(1)),
		},
	}
}

// daemonContainer is the daemon's container; relay: it runs as a replica among peers
// (runsStatefulSet).
func daemonContainer(s *ftpv1alpha1.FTPServer, image string, relay bool) corev1.Container {
	mounts := []corev1.VolumeMount{
		{Name: "config", MountPath: configMountPath, ReadOnly: true},
		{Name: "users", MountPath: usersMountPath, ReadOnly: true},
	}
	if s.Spec.TLS.Mode != "" && s.Spec.TLS.Mode != ftpv1alpha1.TLSDisabled {
		mounts = append(mounts, corev1.VolumeMount{Name: "tls", MountPath: tlsMountPath, ReadOnly: true})
	}
	if relay {
		mounts = append(mounts, corev1.VolumeMount{Name: "relay", MountPath: relayMountPath, ReadOnly: true})
	}
	for _, v := range s.Spec.Volumes {
		mounts = append(mounts, corev1.VolumeMount{Name: "data-" + v.Name, MountPath: path.Join(dataRoot, v.Name)})
	}
	mounts = append(mounts, corev1.VolumeMount{Name: "tmp", MountPath: "/tmp"})
	env := []corev1.EnvVar{{
		Name:      "POD_IP", // for passive-address overrides with source PodIP
		ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "status.podIP"}},
	}}
	ports := []corev1.ContainerPort{
		{Name: "ftp", ContainerPort: controlContainerPort, Protocol: corev1.ProtocolTCP},
		{Name: "ops", ContainerPort: opsContainerPort, Protocol: corev1.ProtocolTCP},
	}
	if relay {
		// A replica finds itself among the config's peers by its pod name.
		env = append(env, corev1.EnvVar{
			Name:      "POD_NAME",
			ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}},
		})
		ports = append(ports, corev1.ContainerPort{Name: "relay", ContainerPort: relayContainerPort, Protocol: corev1.ProtocolTCP})
	}

	return corev1.Container{
		Name:            daemonContainerName,
		Image:           image,
		ImagePullPolicy: s.Spec.ImagePullPolicy,
		Args:            []string{"ftpd", "--config", path.Join(configMountPath, fileconfig.ConfigFileName)},
		Env:             env,
		Ports:           ports,
		Resources:       s.Spec.Pod.Resources,
		// A daemon that exits on an error says why in its last log lines; the kubelet puts
		// them in the pod's termination message, which the FTPServer's status quotes.
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		VolumeMounts:             mounts,
		LivenessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("ops")}},
			PeriodSeconds:    10,
			FailureThreshold: 3,
		},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromString("ops")}},
			PeriodSeconds:    5,
			FailureThreshold: 1, // leave the Service as soon as draining starts
		},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
}

func podVolumes(s *ftpv1alpha1.FTPServer, relay bool) []corev1.Volume {
	vols := []corev1.Volume{
		{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: configMapName(s)},
		}}},
		{Name: "users", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: usersSecretName(s),
		}}},
	}
	if s.Spec.TLS.Mode != "" && s.Spec.TLS.Mode != ftpv1alpha1.TLSDisabled {
		vols = append(vols, corev1.Volume{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: s.Spec.TLS.SecretName,
			Items: []corev1.KeyToPath{
				{Key: corev1.TLSCertKey, Path: corev1.TLSCertKey},
				{Key: corev1.TLSPrivateKeyKey, Path: corev1.TLSPrivateKeyKey},
			},
		}}})
	}
	if relay {
		vols = append(vols, corev1.Volume{Name: "relay", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: relaySecretName(s),
		}}})
	}
	for _, v := range s.Spec.Volumes {
		vols = append(vols, corev1.Volume{Name: "data-" + v.Name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claimName(s, v)},
		}})
	}
	vols = append(vols, corev1.Volume{Name: "tmp", VolumeSource: corev1.VolumeSource{
		EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse("64Mi"))},
	}})
	return vols
}
