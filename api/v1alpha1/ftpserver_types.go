package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FTPServer is a managed FTP service: the operator turns it into a daemon Deployment serving files
// from PersistentVolumes, a Service whose ports match the passive-port range, the address the
// daemon advertises in PASV replies, and a NetworkPolicy.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ftpsrv,categories=ftp
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.status.endpoint`
// +kubebuilder:printcolumn:name="Passive",type=string,JSONPath=`.status.passivePorts`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type FTPServer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec FTPServerSpec `json:"spec"`

	// +optional
	Status FTPServerStatus `json:"status,omitempty"`
}

// FTPServerList is a list of FTPServers.
//
// +kubebuilder:object:root=true
type FTPServerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []FTPServer `json:"items"`
}

// FTPServerSpec is the desired state of an FTPServer.
//
// Cross-field rules live here because CEL on a field only sees that field.
//
// +kubebuilder:validation:XValidation:rule="!has(self.users) || self.users.all(u, !has(u.home) || !has(u.home.volume) || self.volumes.exists(v, v.name == u.home.volume))",message="a user's home.volume names a volume that is not declared in spec.volumes; declare that volume or point the home at a declared one",reason=FieldValueInvalid,fieldPath=".users"
// +kubebuilder:validation:XValidation:rule="!has(self.anonymous) || !has(self.anonymous.volume) || self.volumes.exists(v, v.name == self.anonymous.volume)",message="anonymous.volume must name a volume declared in spec.volumes",reason=FieldValueInvalid,fieldPath=".anonymous.volume"
// +kubebuilder:validation:XValidation:rule="self.service.type != 'NodePort' || (self.ports.passive.start >= 30000 && self.ports.passive.end <= 32767)",message="service type NodePort exposes each passive port as the node port of the same number, so ports.passive must lie within 30000-32767 (the default NodePort range)",reason=FieldValueInvalid,fieldPath=".ports.passive"
// +kubebuilder:validation:XValidation:rule="self.service.type != 'NodePort' || (has(self.passiveAddress.address) && size(self.passiveAddress.address) > 0)",message="service type NodePort has no load balancer to read the PASV address from: set passiveAddress.address to the node IP or DNS name that clients reach",reason=FieldValueRequired,fieldPath=".passiveAddress.address"
// +kubebuilder:validation:XValidation:rule="!has(self.service.controlNodePort) || self.service.controlNodePort < self.ports.passive.start || self.service.controlNodePort > self.ports.passive.end",message="service.controlNodePort lies inside ports.passive; the passive ports use the node ports of the same numbers, so pick a control node port outside the passive range",reason=FieldValueInvalid,fieldPath=".service.controlNodePort"
// +kubebuilder:validation:XValidation:rule="!has(self.replicas) || self.replicas <= 1 || self.volumes.all(v, !has(v.claimTemplate) || (has(v.claimTemplate.accessModes) && v.claimTemplate.accessModes.exists(m, m == 'ReadWriteMany')))",message="replicas above 1 need volumes that every replica can mount: give each claimTemplate accessModes [ReadWriteMany] (with a storage class that provides it), or use 1 replica",reason=FieldValueInvalid,fieldPath=".replicas"
// +kubebuilder:validation:XValidation:rule="!has(self.replicas) || self.replicas <= 1 || self.ports.passive.end - self.ports.passive.start + 1 >= self.replicas * (has(self.ports.passive.perReplica) ? self.ports.passive.perReplica : 1)",message="ports.passive has too few ports for the replicas: it needs replicas × ports.passive.perReplica ports (at least one per replica when perReplica is unset); widen the range, or lower perReplica or replicas",reason=FieldValueInvalid,fieldPath=".ports.passive"
// +kubebuilder:validation:XValidation:rule="!has(self.replicas) || self.replicas <= 1 || !(self.ports.passive.start <= 2122 && 2122 <= self.ports.passive.end)",message="with several replicas ports.passive must not include 2122: inside the pods it carries the data connections relayed between replicas",reason=FieldValueInvalid,fieldPath=".ports.passive"
type FTPServerSpec struct {
	// Replicas is the number of daemon pods: 0 stops the server (no pods; the Service, claims
	// and data are kept), 1 runs one, 2 to 16 run several behind the one Service address (a
	// StatefulSet): each replica answers PASV/EPSV from its own slice of ports.passive, and a
	// data connection the load balancer brings to another replica is relayed to it
	// (docs/design/multi-replica.md). Several replicas need volumes that every replica can
	// mount (ReadWriteMany). A server on such volumes runs a StatefulSet at any count, so that
	// scaling between 1 and several is a plain scale; one on a volume of one node (ReadWriteOnce)
	// runs a Deployment of at most 1.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=16
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Image overrides the daemon image. By default the daemon runs from the operator's own image,
	// so that the operator and its daemons never skew.
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Image string `json:"image,omitempty"`

	// ImagePullPolicy of the daemon container.
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// Volumes the daemon serves files from. Users' homes are directories inside them.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:XValidation:rule="self.all(v, self.exists_one(w, w.name == v.name))",message="a volume name is declared more than once; give each volume a unique name"
	// +listType=atomic
	Volumes []FTPVolume `json:"volumes"`

	// Users who may log in, each with a password from a Secret and a home inside a volume.
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:XValidation:rule="self.all(u, self.exists_one(w, w.name == u.name))",message="a user name appears more than once; each user needs a unique name"
	// +listType=atomic
	// +optional
	Users []FTPUser `json:"users,omitempty"`

	// Anonymous enables read-only anonymous access (user "anonymous" or "ftp", any password).
	// +optional
	Anonymous *AnonymousAccess `json:"anonymous,omitempty"`

	// Ports are the control port and the passive-port range. The one passive range drives the
	// daemon, the Service ports and the NetworkPolicy, so they always agree.
	// +kubebuilder:default={}
	// +optional
	Ports FTPPorts `json:"ports,omitzero"`

	// PassiveAddress chooses the address the daemon advertises in PASV replies.
	// +kubebuilder:default={}
	// +optional
	PassiveAddress PassiveAddressSpec `json:"passiveAddress,omitzero"`

	// Service shapes the Service that exposes the daemon.
	// +kubebuilder:default={}
	// +optional
	Service ServiceSpec `json:"service,omitzero"`

	// NetworkPolicy restricts who may reach the daemon.
	// +kubebuilder:default={}
	// +optional
	NetworkPolicy NetworkPolicySpec `json:"networkPolicy,omitzero"`

	// TLS configures FTPS.
	// +kubebuilder:default={}
	// +optional
	TLS TLSSpec `json:"tls,omitzero"`

	// ActiveMode configures PORT/EPRT, where the server connects back to the client.
	// +kubebuilder:default={}
	// +optional
	ActiveMode ActiveModeSpec `json:"activeMode,omitzero"`

	// Limits protect the daemon from overload and password guessing.
	// +kubebuilder:default={}
	// +optional
	Limits LimitsSpec `json:"limits,omitzero"`

	// Pod holds scheduling and resource knobs for the daemon pods.
	// +optional
	Pod PodSpec `json:"pod,omitzero"`

	// DrainTimeout is how long in-flight transfers may run after the pod is asked to stop.
	// The pod's terminationGracePeriodSeconds follows it.
	// +kubebuilder:default="2m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('24h')",message="drainTimeout must be between 0s and 24h"
	// +optional
	DrainTimeout *metav1.Duration `json:"drainTimeout,omitempty"`
}

// FTPVolume is a PersistentVolumeClaim the daemon mounts: an existing claim, or one the operator
// creates from a template.
//
// +kubebuilder:validation:XValidation:rule="has(self.claimName) != has(self.claimTemplate)",message="a volume needs exactly one of claimName (an existing PersistentVolumeClaim) or claimTemplate (a claim the operator creates)"
type FTPVolume struct {
	// Name identifies the volume in users' homes.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=40
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// ClaimName is an existing PersistentVolumeClaim in the FTPServer's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	ClaimName string `json:"claimName,omitempty"`

	// ClaimTemplate makes the operator create a claim named <ftpserver>-<volume>.
	// +optional
	ClaimTemplate *ClaimTemplate `json:"claimTemplate,omitempty"`
}

// ReclaimPolicy says what happens to an operator-created claim when its FTPServer is deleted.
// +kubebuilder:validation:Enum=Retain;Delete
type ReclaimPolicy string

const (
	// ReclaimRetain keeps the claim (and the data) after the FTPServer is gone. The default.
	ReclaimRetain ReclaimPolicy = "Retain"
	// ReclaimDelete deletes the claim with the FTPServer.
	ReclaimDelete ReclaimPolicy = "Delete"
)

// ClaimTemplate describes a PersistentVolumeClaim the operator creates.
type ClaimTemplate struct {
	// Size is the requested storage.
	Size resource.Quantity `json:"size"`

	// StorageClassName of the claim; the cluster default when omitted.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`

	// AccessModes of the claim. With ReadWriteOnce the Deployment uses the Recreate strategy.
	// +kubebuilder:default={ReadWriteOnce}
	// +kubebuilder:validation:MaxItems=4
	// +kubebuilder:validation:items:Enum=ReadWriteOnce;ReadOnlyMany;ReadWriteMany;ReadWriteOncePod
	// +listType=set
	// +optional
	AccessModes []corev1.PersistentVolumeAccessMode `json:"accessModes,omitempty"`

	// ReclaimPolicy: Retain (default) keeps the claim and its data when the FTPServer is deleted;
	// Delete removes it.
	// +kubebuilder:default=Retain
	// +optional
	ReclaimPolicy ReclaimPolicy `json:"reclaimPolicy,omitempty"`
}

// FTPUser is an account that may log in.
type FTPUser struct {
	// Name is the login name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9._@-]*$`
	// +kubebuilder:validation:XValidation:rule="!(self.lowerAscii() in ['anonymous', 'ftp'])",message="user names 'anonymous' and 'ftp' are reserved for anonymous access; use spec.anonymous instead"
	Name string `json:"name"`

	// PasswordSecretRef points at the Secret key holding the password, plain or as a bcrypt hash
	// ($2a$, $2b$ or $2y$). Plain passwords are hashed by the operator and never reach the daemon.
	PasswordSecretRef SecretKeyRef `json:"passwordSecretRef"`

	// Home is the user's directory; the user is confined to it.
	// +optional
	Home UserHome `json:"home,omitzero"`

	// ReadOnly users may list and download but not upload, delete, rename or create directories.
	// +optional
	ReadOnly bool `json:"readOnly,omitempty"`

	// Quota limits what the user may store. Usage is that of the home's directory tree, whoever
	// wrote it (users sharing a home share its usage); uploads beyond a limit get 552.
	// +optional
	Quota *UserQuota `json:"quota,omitempty"`
}

// UserQuota limits a user's storage. Each limit is optional.
type UserQuota struct {
	// MaxBytes is the total size of the files in the user's home, e.g. 10Gi. Uploads in
	// flight count as they are written; a file being replaced counts until the upload
	// completes.
	// +optional
	MaxBytes ByteSize `json:"maxBytes,omitempty"`

	// MaxFiles is the number of files in the user's home.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000000000
	// +optional
	MaxFiles *int64 `json:"maxFiles,omitempty"`

	// MaxFileSize is the largest file an upload (STOR, APPE, a resumed STOR) may leave, e.g. 2Gi.
	// +optional
	MaxFileSize ByteSize `json:"maxFileSize,omitempty"`
}

// ByteSize is a number of bytes written as a quantity string: "500Mi", "10Gi", "1000". It is a
// string rather than a resource.Quantity so that its length is bounded, which keeps the CEL
// range check within the API server's cost budget.
// +kubebuilder:validation:MaxLength=32
// +kubebuilder:validation:Pattern=`^[0-9]+(\.[0-9]+)?([KMGTPE]i|[kMGTPE])?$`
// +kubebuilder:validation:XValidation:rule="quantity(self).compareTo(quantity('1')) >= 0 && quantity(self).compareTo(quantity('1Ei')) <= 0",message="must be a size between 1 byte and 1Ei, such as 500Mi or 10Gi"
type ByteSize string

// SecretKeyRef selects a key of a Secret in the FTPServer's namespace.
type SecretKeyRef struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// Key within the Secret.
	// +kubebuilder:default=password
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Key string `json:"key,omitempty"`
}

// UserHome is a directory inside one of the FTPServer's volumes.
type UserHome struct {
	// Volume names an entry of spec.volumes; the first volume when omitted.
	// +kubebuilder:validation:MaxLength=40
	// +optional
	Volume string `json:"volume,omitempty"`

	// SubPath is the directory inside the volume, relative; the user's name when omitted.
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/') && !self.split('/').exists(p, p == '..')",message="home.subPath must be a relative path inside the volume, without '..' segments"
	// +optional
	SubPath string `json:"subPath,omitempty"`
}

// AnonymousAccess configures read-only anonymous logins.
type AnonymousAccess struct {
	// Enabled turns anonymous logins on.
	// +optional
	Enabled bool `json:"enabled,omitempty"`

	// Volume holding the anonymous tree; the first volume when omitted.
	// +kubebuilder:validation:MaxLength=40
	// +optional
	Volume string `json:"volume,omitempty"`

	// SubPath of the anonymous tree inside the volume; "pub" when omitted.
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/') && !self.split('/').exists(p, p == '..')",message="anonymous.subPath must be a relative path inside the volume, without '..' segments"
	// +optional
	SubPath string `json:"subPath,omitempty"`
}

// FTPPorts are the ports clients use.
//
// +kubebuilder:validation:XValidation:rule="!has(self.control) || !has(self.passive) || self.control < self.passive.start || self.control > self.passive.end",message="ports.control lies inside the passive range ports.passive.start..end; choose a control port outside it",reason=FieldValueInvalid,fieldPath=".control"
type FTPPorts struct {
	// Control is the Service port of the FTP control connection.
	// The daemon itself listens on an unprivileged port and the Service maps this one to it.
	// +kubebuilder:default=21
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Control int32 `json:"control,omitempty"`

	// Passive is the range of data-connection ports, both ends included. Each port becomes its
	// own Service port, so keep it small: passive-port multiplexing lets many clients share it.
	// +kubebuilder:default={start: 30000, end: 30019}
	// +optional
	Passive PassivePortRange `json:"passive,omitzero"`
}

// PassivePortRange is an inclusive range of TCP ports.
//
// +kubebuilder:validation:XValidation:rule="self.start <= self.end",message="passive port range is reversed: ports.passive.start must not be greater than ports.passive.end",reason=FieldValueInvalid
// +kubebuilder:validation:XValidation:rule="self.end - self.start < 1000",message="passive port range has more than 1000 ports: each passive port becomes a Service port, so keep end - start below 1000 (a few dozen ports are plenty with passive-port multiplexing)",reason=FieldValueInvalid
// +kubebuilder:validation:XValidation:rule="!(self.start <= 2121 && 2121 <= self.end) && !(self.start <= 8080 && 8080 <= self.end)",message="ports.passive must not include 2121 or 8080: inside the pod they carry the control connection and the health and metrics endpoints",reason=FieldValueInvalid
type PassivePortRange struct {
	// Start is the first passive port.
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=65535
	Start int32 `json:"start"`

	// End is the last passive port, included.
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=65535
	End int32 `json:"end"`

	// PerReplica is the size of each replica's slice of the range when spec.replicas is above
	// 1: replica i answers PASV/EPSV with ports start + i*perReplica up to the next slice.
	// Default: the range divided evenly by replicas. Set it to keep each replica's slice where
	// it is when you scale (a derived size moves every slice, and until each daemon has
	// reloaded its config a transfer can fail once).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	PerReplica *int32 `json:"perReplica,omitempty"`
}

// PassiveAddressSpec chooses the address advertised in PASV replies. By default it is read from
// the LoadBalancer Service's status (an IP, or a hostname the daemon resolves), or the Service's
// cluster IP for type ClusterIP; Address overrides that, and Overrides pick another address for
// particular client networks.
type PassiveAddressSpec struct {
	// Address is a fixed IP or DNS name to advertise instead of the discovered one.
	// Required for service type NodePort.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="isIP(self) || self.matches('^([a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?\\\\.)*[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$')",message="passiveAddress.address must be an IP address or a DNS name"
	// +optional
	Address string `json:"address,omitempty"`

	// Overrides give clients from particular networks another address, e.g. in-cluster clients
	// the Service's cluster IP. The first matching override wins.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	Overrides []PassiveAddressOverride `json:"overrides,omitempty"`
}

// PassiveAddressSource says where an override's address comes from.
// +kubebuilder:validation:Enum=Static;ServiceClusterIP;PodIP
type PassiveAddressSource string

const (
	// PassiveAddressStatic advertises the override's Address.
	PassiveAddressStatic PassiveAddressSource = "Static"
	// PassiveAddressServiceClusterIP advertises the Service's cluster IP.
	PassiveAddressServiceClusterIP PassiveAddressSource = "ServiceClusterIP"
	// PassiveAddressPodIP advertises the daemon pod's own IP.
	PassiveAddressPodIP PassiveAddressSource = "PodIP"
)

// PassiveAddressOverride advertises another PASV address to clients from some networks.
//
// +kubebuilder:validation:XValidation:rule="(self.source == 'Static') == (has(self.address) && size(self.address) > 0)",message="an override with source Static needs an address, and only Static overrides may set one"
type PassiveAddressOverride struct {
	// CIDRs of the client networks this override applies to.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.all(c, isCIDR(c))",message="every entry of overrides[].cidrs must be a CIDR such as 10.0.0.0/8"
	// +listType=atomic
	CIDRs []string `json:"cidrs"`

	// Source of the address: Static (Address), ServiceClusterIP or PodIP.
	// +kubebuilder:default=Static
	// +optional
	Source PassiveAddressSource `json:"source,omitempty"`

	// Address is the IP or DNS name for source Static.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Address string `json:"address,omitempty"`
}

// ServiceSpec shapes the Service exposing the daemon.
//
// +kubebuilder:validation:XValidation:rule="self.type == 'LoadBalancer' || (!has(self.loadBalancerClass) && !has(self.loadBalancerSourceRanges) && !has(self.allocateLoadBalancerNodePorts))",message="loadBalancerClass, loadBalancerSourceRanges and allocateLoadBalancerNodePorts only apply to service type LoadBalancer"
// +kubebuilder:validation:XValidation:rule="self.type != 'ClusterIP' || !has(self.controlNodePort)",message="controlNodePort does not apply to service type ClusterIP"
type ServiceSpec struct {
	// Type of the Service: LoadBalancer (default), NodePort or ClusterIP.
	// +kubebuilder:default=LoadBalancer
	// +kubebuilder:validation:Enum=LoadBalancer;NodePort;ClusterIP
	// +optional
	Type corev1.ServiceType `json:"type,omitempty"`

	// Annotations added to the Service, e.g. for the cloud's load balancer controller.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`

	// Labels added to the Service.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`

	// LoadBalancerClass selects a load balancer implementation.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	LoadBalancerClass *string `json:"loadBalancerClass,omitempty"`

	// LoadBalancerSourceRanges restricts the client networks the load balancer accepts.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.all(c, isCIDR(c))",message="every entry of loadBalancerSourceRanges must be a CIDR such as 203.0.113.0/24"
	// +listType=atomic
	// +optional
	LoadBalancerSourceRanges []string `json:"loadBalancerSourceRanges,omitempty"`

	// AllocateLoadBalancerNodePorts false stops Kubernetes from giving a LoadBalancer Service a
	// node port per Service port. An FTPServer has one port per passive port (21 by default), so
	// on load balancers that reach pods directly (MetalLB, cloud LBs in IP-target mode) turning
	// this off keeps many FTPServers from exhausting the cluster's node-port range.
	// +optional
	AllocateLoadBalancerNodePorts *bool `json:"allocateLoadBalancerNodePorts,omitempty"`

	// ExternalTrafficPolicy defaults to Local so the daemon sees real client IPs, which per-IP
	// limits, bans and the data-connection IP check depend on.
	// +kubebuilder:default=Local
	// +kubebuilder:validation:Enum=Local;Cluster
	// +optional
	ExternalTrafficPolicy corev1.ServiceExternalTrafficPolicy `json:"externalTrafficPolicy,omitempty"`

	// ControlNodePort pins the node port of the control connection (types NodePort and
	// LoadBalancer); assigned by Kubernetes when omitted. Passive ports always use node ports of
	// the same numbers for type NodePort.
	// +kubebuilder:validation:Minimum=30000
	// +kubebuilder:validation:Maximum=32767
	// +optional
	ControlNodePort *int32 `json:"controlNodePort,omitempty"`
}

// NetworkPolicySpec restricts ingress to the daemon.
type NetworkPolicySpec struct {
	// Enabled creates the NetworkPolicy (default true).
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// AllowedSources may reach the control port and the passive range; anyone when empty.
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	AllowedSources []networkingv1.NetworkPolicyPeer `json:"allowedSources,omitempty"`

	// MetricsSources may scrape the daemon's metrics port; nobody when empty.
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	MetricsSources []networkingv1.NetworkPolicyPeer `json:"metricsSources,omitempty"`
}

// TLSMode selects how FTPS is offered.
// +kubebuilder:validation:Enum=Disabled;Explicit;Required;Implicit
type TLSMode string

const (
	// TLSDisabled serves plain FTP only.
	TLSDisabled TLSMode = "Disabled"
	// TLSExplicit offers AUTH TLS; clients may stay in plain text.
	TLSExplicit TLSMode = "Explicit"
	// TLSRequired requires AUTH TLS before login.
	TLSRequired TLSMode = "Required"
	// TLSImplicit speaks TLS from the first byte (classically on port 990).
	TLSImplicit TLSMode = "Implicit"
)

// TLSSpec configures FTPS.
//
// +kubebuilder:validation:XValidation:rule="!has(self.mode) || self.mode == 'Disabled' || (has(self.secretName) && size(self.secretName) > 0)",messageExpression="'tls.mode ' + self.mode + ' needs tls.secretName: a Secret of type kubernetes.io/tls, e.g. one cert-manager issues'",reason=FieldValueRequired,fieldPath=".secretName"
type TLSSpec struct {
	// Mode: Disabled (default), Explicit, Required or Implicit.
	// +kubebuilder:default=Disabled
	// +optional
	Mode TLSMode `json:"mode,omitempty"`

	// SecretName of a kubernetes.io/tls Secret with the certificate and key; renewals are
	// picked up without a restart.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// MinVersion of TLS: "1.2" (default) or "1.3".
	// +kubebuilder:default="1.2"
	// +kubebuilder:validation:Enum="1.2";"1.3"
	// +optional
	MinVersion string `json:"minVersion,omitempty"`

	// RequireSessionReuse refuses a protected data connection whose TLS handshake does not
	// resume the session of its own control connection (vsftpd's require_ssl_reuse), which
	// proves that the data connection comes from the client that logged in, not merely from its
	// IP address. Off by default: Python's ftplib, curl over TLS 1.2 and Go clients without a
	// session cache never resume and would be refused; curl over TLS 1.3 and lftp do. The
	// daemon's metric ftpd_tls_data_handshakes_total{resumed="false"} shows whether the
	// server's clients would be refused, before turning it on.
	// +optional
	RequireSessionReuse bool `json:"requireSessionReuse,omitempty"`
}

// ActiveModeSpec configures active mode (PORT/EPRT).
type ActiveModeSpec struct {
	// Enabled allows active mode. Off by default: it breaks behind client NAT and can be abused
	// to make the server connect elsewhere. When on, the daemon only connects back to the
	// control connection's client IP, never to ports below 1024.
	// +optional
	Enabled bool `json:"enabled,omitempty"`
}

// LimitsSpec protects the daemon.
//
// +kubebuilder:validation:XValidation:rule="!has(self.maxSessionsPerIP) || !has(self.maxSessions) || self.maxSessionsPerIP <= self.maxSessions",message="limits.maxSessionsPerIP cannot exceed limits.maxSessions"
type LimitsSpec struct {
	// MaxSessions is the number of concurrent sessions per pod.
	// +kubebuilder:default=200
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	// +optional
	MaxSessions int32 `json:"maxSessions,omitempty"`

	// MaxSessionsPerIP is the number of concurrent sessions from one client IP.
	// +kubebuilder:default=20
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	// +optional
	MaxSessionsPerIP int32 `json:"maxSessionsPerIP,omitempty"`

	// IdleTimeout closes sessions without activity.
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="limits.idleTimeout must be at least 1s"
	// +optional
	IdleTimeout *metav1.Duration `json:"idleTimeout,omitempty"`

	// LoginTimeout closes connections that have not logged in by then.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="limits.loginTimeout must be at least 1s"
	// +optional
	LoginTimeout *metav1.Duration `json:"loginTimeout,omitempty"`

	// MaxFailedLogins from one IP within BanDuration bans that IP for BanDuration.
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	MaxFailedLogins int32 `json:"maxFailedLogins,omitempty"`

	// BanDuration of an IP after too many failed logins.
	// +kubebuilder:default="15m"
	// +optional
	BanDuration *metav1.Duration `json:"banDuration,omitempty"`

	// DataTimeout ends a transfer whose data connection moves no byte for this long (vsftpd's
	// data_connection_timeout): a stalled client frees its session slot and never holds up a
	// drain; an interrupted upload leaves the previous file.
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="limits.dataTimeout must be at least 1s"
	// +optional
	DataTimeout *metav1.Duration `json:"dataTimeout,omitempty"`

	// IPv6PrefixLength is how many leading bits of an IPv6 client address make one client for
	// maxSessionsPerIP and bans: a host usually owns a whole /64.
	// +kubebuilder:default=64
	// +kubebuilder:validation:Minimum=32
	// +kubebuilder:validation:Maximum=128
	// +optional
	IPv6PrefixLength int32 `json:"ipv6PrefixLength,omitempty"`

	// TCPKeepAlive probes quiet control and data connections. A load balancer or NAT gateway
	// forgets a connection that stays quiet past its idle timeout (AWS NLB 350 s, Azure 4 min),
	// and a control connection is quiet for as long as a transfer runs: without probes the
	// transfer would finish and its client never get the reply. The probes also end the
	// sessions of clients that vanished without closing their connections, idle + interval x
	// count (2 minutes by default) after their last packet.
	// +kubebuilder:default={}
	// +optional
	TCPKeepAlive TCPKeepAliveSpec `json:"tcpKeepAlive,omitzero"`
}

// TCPKeepAliveSpec is the TCP keepalive of the daemon's connections: a connection quiet for
// idle gets a probe, then one every interval; count unanswered probes in a row end it. The
// kernel counts whole seconds.
type TCPKeepAliveSpec struct {
	// Idle is how long a connection may be quiet before the first probe; keep it well below the
	// idle timeout of what is in front of the pods.
	// +kubebuilder:default="60s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('32767s')",message="limits.tcpKeepAlive.idle must be between 1s and 32767s (the kernel's limit)"
	// +optional
	Idle *metav1.Duration `json:"idle,omitempty"`

	// Interval between probes once one went unanswered.
	// +kubebuilder:default="15s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('32767s')",message="limits.tcpKeepAlive.interval must be between 1s and 32767s (the kernel's limit)"
	// +optional
	Interval *metav1.Duration `json:"interval,omitempty"`

	// Count of unanswered probes in a row after which the connection is given up.
	// +kubebuilder:default=4
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=127
	// +optional
	Count int32 `json:"count,omitempty"`
}

// PodSpec holds the knobs of the daemon pods.
//
// +kubebuilder:validation:XValidation:rule="!has(self.sysctls) || !has(self.securityContext) || !has(self.securityContext.sysctls)",message="set sysctls in pod.sysctls or in pod.securityContext.sysctls, not in both",reason=FieldValueInvalid,fieldPath=".sysctls"
type PodSpec struct {
	// Resources of the daemon container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitzero"`

	// NodeSelector for the daemon pods.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Tolerations of the daemon pods.
	// +listType=atomic
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// Affinity of the daemon pods.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// Annotations added to the daemon pods.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`

	// Labels added to the daemon pods.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`

	// PriorityClassName of the daemon pods.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	PriorityClassName string `json:"priorityClassName,omitempty"`

	// ImagePullSecrets for pulling the daemon image from a private registry.
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +optional
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`

	// ServiceAccountName of the daemon pods; the namespace's default when empty. The daemon
	// never calls the API server, so its token is not mounted either way.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// SecurityContext replaces the operator's pod security context (non-root UID/GID 65532,
	// fsGroup 65532, RuntimeDefault seccomp). Platforms that assign UIDs per namespace, such as
	// OpenShift's restricted SCC, need one without fixed IDs, e.g. {runAsNonRoot: true,
	// seccompProfile: {type: RuntimeDefault}}. The container's own restrictions (no privilege
	// escalation, no capabilities, read-only root filesystem) always stay.
	// +optional
	SecurityContext *corev1.PodSecurityContext `json:"securityContext,omitempty"`

	// Sysctls of the daemon pods' network namespace, added to the pod security context (the
	// operator's or securityContext). The ones a platform may want for an FTP server:
	// net.ipv4.tcp_syncookies (SYN flood protection; the kernel's default 1 sends cookies
	// when the SYN queue overflows), net.core.somaxconn (the daemon's listen backlog: it asks
	// for somaxconn), net.ipv4.ip_unprivileged_port_start. Kubernetes' safe sysctls
	// (tcp_syncookies, ip_unprivileged_port_start, ip_local_port_range, tcp_fin_timeout,
	// tcp_keepalive_*, ...) work on every node; any other (net.core.somaxconn,
	// net.ipv4.tcp_max_syn_backlog) only on nodes whose kubelet allows it with
	// --allowed-unsafe-sysctls, and namespaces enforcing the baseline or restricted Pod
	// Security Standard admit safe ones only.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:XValidation:rule="self.all(s, self.exists_one(o, o.name == s.name))",message="a sysctl appears more than once in pod.sysctls"
	// +listType=atomic
	// +optional
	Sysctls []PodSysctl `json:"sysctls,omitempty"`
}

// PodSysctl is one sysctl of the daemon pods.
type PodSysctl struct {
	// Name of a network sysctl, e.g. net.ipv4.tcp_syncookies.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self.startsWith('net.')",message="pod.sysctls takes network sysctls (net.*) only: they are the ones a pod's own network namespace isolates"
	Name string `json:"name"`

	// Value to set, as it would be written to /proc/sys.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	Value string `json:"value"`
}

// FTPServerStatus is the observed state of an FTPServer.
type FTPServerStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready is always present; Reconciling and Stalled only while True.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Endpoint clients connect to, e.g. ftp://203.0.113.7:21.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`

	// PassiveAddress currently advertised in PASV replies (to clients without an override).
	// +optional
	PassiveAddress string `json:"passiveAddress,omitzero"`

	// PassivePorts is the exposed passive range, e.g. 30000-30019.
	// +optional
	PassivePorts string `json:"passivePorts,omitempty"`

	// ReadyReplicas is the number of daemon pods ready to serve.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`

	// Replicas details each daemon pod when spec.replicas is above 1.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Replicas []ReplicaStatus `json:"replicas,omitempty"`
}

// ReplicaStatus is one daemon pod of a server with several replicas.
type ReplicaStatus struct {
	// Name of the pod.
	Name string `json:"name"`
	// PassivePorts is the replica's slice of the exposed passive range, e.g. 30000-30009.
	PassivePorts string `json:"passivePorts"`
	// Ready: the pod is ready and serves the current inputs.
	Ready bool `json:"ready"`
}
