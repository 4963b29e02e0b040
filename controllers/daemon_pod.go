package controllers

// The daemon pod's layout: its container, the ports it listens on inside the pod, where its
// inputs are mounted and the user it runs as. The Deployment, the rendered ftpd config, the
// Service's target ports and the NetworkPolicy are built from these, so they cannot disagree.
const (
	daemonContainerName = "ftpd"
	// controlContainerPort is where the daemon listens; the Service maps spec.ports.control to it,
	// so the pod never needs a privileged port.
	controlContainerPort = 2121
	// opsContainerPort serves /healthz, /readyz, /metrics and the served config. Both pod ports
	// are excluded from spec.ports.passive by a CEL rule in api/v1alpha1;
	// TestPassiveRangeRuleSparesThePodPorts keeps the numbers in step.
	opsContainerPort = 8080

	configMountPath = "/etc/ftpd/config"
	usersMountPath  = "/etc/ftpd/users"
	tlsMountPath    = "/etc/ftpd/tls"
	// dataRoot holds the volumes, one directory each; users' homes are relative to it.
	dataRoot = "/data"

	// daemonUID is the non-root user of the distroless image; fsGroup makes volumes writable to it.
	daemonUID = 65532
)
