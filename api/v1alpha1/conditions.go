package v1alpha1

// Condition types of an FTPServer, following the kstatus conventions that Flux and Argo CD read:
// Ready is always present; Reconciling and Stalled are present only while True.
const (
	// ConditionReady is True when clients can use the server: pods available, the passive
	// address known and in the daemon's config, the ports exposed.
	ConditionReady = "Ready"
	// ConditionReconciling is True while the operator is still converging (e.g. a rollout).
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when progress needs a human (e.g. a missing Secret).
	ConditionStalled = "Stalled"
)

// Reasons used on the conditions above.
const (
	ReasonReady             = "Ready"
	ReasonWaitingForAddress = "WaitingForAddress"
	ReasonWaitingForPods    = "WaitingForPods"
	// ReasonWaitingForConfig: the pods are available but not all of them serve the current
	// configuration (and so the current PASV address) yet.
	ReasonWaitingForConfig = "WaitingForConfig"
	// ReasonWaitingForEndpoints: the pods serve, but the Service's EndpointSlices do not list
	// them as ready yet, so nothing forwards to them.
	ReasonWaitingForEndpoints = "WaitingForEndpoints"
	// Pod trouble, read from the pods and claims (controllers/pod_trouble.go).
	// ReasonClaimPending: a claim of the server is not bound, so its pod cannot start.
	ReasonClaimPending = "ClaimPending"
	// ReasonUnschedulable: the scheduler finds no node for a daemon pod.
	ReasonUnschedulable = "Unschedulable"
	// ReasonImagePullFailed: the node cannot get the daemon's image.
	ReasonImagePullFailed = "ImagePullFailed"
	// ReasonDaemonCrashLooping: the daemon keeps exiting and the kubelet backs off.
	ReasonDaemonCrashLooping = "DaemonCrashLooping"
	// ReasonContainerCannotStart: the runtime cannot create or start the daemon's container.
	ReasonContainerCannotStart = "ContainerCannotStart"
	// ReasonSysctlForbidden: a node's kubelet refuses the daemon pod for a sysctl of
	// spec.pod.sysctls it does not allow (an unsafe one without --allowed-unsafe-sysctls).
	ReasonSysctlForbidden = "SysctlForbidden"
	// ReasonStopping: spec.replicas is 0 and daemon pods are still terminating.
	ReasonStopping = "Stopping"
	// ReasonStopped: spec.replicas is 0 and no daemon pod runs: the state asked for, reached.
	// Ready is True with this reason (kstatus Current, Argo CD Suspended); nothing serves.
	ReasonStopped        = "Stopped"
	ReasonSecretNotFound = "SecretNotFound"
	ReasonSecretInvalid  = "SecretInvalid"
	ReasonClaimNotFound  = "ClaimNotFound"
	ReasonPortConflict   = "PortConflict"
	// ReasonNameConflict: an object with a name the operator needs exists and is not ours.
	ReasonNameConflict = "NameConflict"
	// ReasonClaimUpdateRejected: a claimTemplate change the existing claim cannot take.
	ReasonClaimUpdateRejected = "ClaimUpdateRejected"
	// ReasonVolumeNotShared: several replicas, and an existing claim that not every replica
	// can mount (not ReadWriteMany).
	ReasonVolumeNotShared = "VolumeNotShared"
	// ReasonDegraded: several replicas, some serve and some do not. Ready stays True (clients
	// are served) with this reason; the message names the replicas that do not serve.
	ReasonDegraded = "Degraded"
)
