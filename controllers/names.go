package controllers

import (
	"strconv"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// Fixed facts of the daemon pod that the builders must agree on.
const (
	// fieldOwner is our server-side-apply field manager.
	fieldOwner = "ftp-operator"

	daemonContainerName = "ftpd"
	// controlContainerPort is where the daemon listens; the Service maps spec.ports.control to it,
	// so the pod never needs a privileged port.
	controlContainerPort = 2121
	// opsContainerPort serves /healthz, /readyz and /metrics. Both pod ports are excluded from
	// spec.ports.passive by a CEL rule in api/v1alpha1; keep the numbers in step.
	opsContainerPort = 8080

	configMountPath = "/etc/ftpd/config"
	usersMountPath  = "/etc/ftpd/users"
	tlsMountPath    = "/etc/ftpd/tls"
	dataRoot        = "/data"

	// daemonUID is the non-root user of the distroless image; fsGroup makes volumes writable to it.
	daemonUID = 65532

	// restartChecksumAnnotation on the pod template changes only with config that the daemon
	// cannot reload, so that users and PASV address changes never roll the pods.
	restartChecksumAnnotation = "ftp.kubeftp.dev/restart-checksum"
	// inputsVersionAnnotation on each daemon pod (not the template, so it rolls nothing) is the
	// version of what the pod mounts from us: writing it makes the kubelet refresh the volumes.
	inputsVersionAnnotation = "ftp.kubeftp.dev/inputs-version"
	// operatorPodLabel marks the operator's own pods; the daemons' NetworkPolicy admits them to
	// the ops port for the readiness handshake (served_config.go).
	operatorPodLabel = "ftp.kubeftp.dev/operator"
)

// Label keys.
const (
	labelName      = "app.kubernetes.io/name"
	labelInstance  = "app.kubernetes.io/instance"
	labelComponent = "app.kubernetes.io/component"
	labelManagedBy = "app.kubernetes.io/managed-by"
	// labelServer marks claims created for an FTPServer, including retained ones without an
	// owner reference.
	labelServer = "ftp.kubeftp.dev/server"
)

func configMapName(s *ftpv1alpha1.FTPServer) string   { return s.Name + "-config" }
func usersSecretName(s *ftpv1alpha1.FTPServer) string { return s.Name + "-users" }
func claimName(s *ftpv1alpha1.FTPServer, v ftpv1alpha1.FTPVolume) string {
	if v.ClaimName != "" {
		return v.ClaimName
	}
	return s.Name + "-" + v.Name
}

// selectorLabels pick the daemon pods of one FTPServer; they never change after creation
// because a Deployment's selector is immutable.
func selectorLabels(s *ftpv1alpha1.FTPServer) map[string]string {
	return map[string]string{labelName: "ftpd", labelInstance: s.Name}
}

// commonLabels go on every object we create.
func commonLabels(s *ftpv1alpha1.FTPServer) map[string]string {
	l := selectorLabels(s)
	l[labelComponent] = "ftp-server"
	l[labelManagedBy] = "ftp-operator"
	return l
}

// passivePortName names the Service port of one passive port. Port names are at most 15
// characters; "pasv-65535" is 10.
func passivePortName(port int32) string { return "pasv-" + strconv.Itoa(int(port)) }

func replicasOf(s *ftpv1alpha1.FTPServer) int32 {
	if s.Spec.Replicas == nil {
		return 1
	}
	return *s.Spec.Replicas
}
