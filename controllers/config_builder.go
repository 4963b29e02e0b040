package controllers

import (
	"fmt"
	"net/netip"
	"path"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
)

// advertisedAddress is the default address the daemon advertises in PASV replies (the spec's
// PassiveAddressSpec says how to choose it; fileconfig.PassiveAddress is how it is written).
type advertisedAddress struct {
	static   string // an IPv4 address
	hostname string // resolved by the daemon
}

func (a advertisedAddress) known() bool { return a.static != "" || a.hostname != "" }

func (a advertisedAddress) String() string {
	if a.static != "" {
		return a.static
	}
	return a.hostname
}

// advertisedAddressFor decides the PASV address: the spec's address when set, else what the
// Service offers: the load balancer's address, or the cluster IP for type ClusterIP.
func advertisedAddressFor(s *ftpv1alpha1.FTPServer, facts clusterFacts) advertisedAddress {
	if a := s.Spec.PassiveAddress.Address; a != "" {
		return addressFromString(a)
	}
	switch s.Spec.Service.Type {
	case corev1.ServiceTypeClusterIP:
		if ip, err := netip.ParseAddr(facts.clusterIP); err == nil && ip.Is4() {
			return advertisedAddress{static: facts.clusterIP}
		}
	case corev1.ServiceTypeLoadBalancer, "":
		ip, hostname := facts.loadBalancerAddress()
		return advertisedAddress{static: ip, hostname: hostname}
	}
	return advertisedAddress{}
}

func addressFromString(a string) advertisedAddress {
	if ip, err := netip.ParseAddr(a); err == nil && ip.Is4() {
		return advertisedAddress{static: a}
	}
	return advertisedAddress{hostname: a}
}

// ftpdConfigFor renders the daemon's ftpd.yaml, advertising addr (advertisedAddressFor).
func ftpdConfigFor(s *ftpv1alpha1.FTPServer, facts clusterFacts, addr advertisedAddress) *fileconfig.Config {
	spec := s.Spec
	passive := fileconfig.PortRange{Start: int(spec.Ports.Passive.Start), End: int(spec.Ports.Passive.End)}
	cfg := &fileconfig.Config{
		Listen:    fmt.Sprintf(":%d", controlContainerPort),
		OpsListen: fmt.Sprintf(":%d", opsContainerPort),
		DataRoot:  dataRoot,
		UsersFile: path.Join(usersMountPath, fileconfig.UsersFileName),
		Passive: fileconfig.Passive{
			// The Service maps each passive port to the same container port, so the daemon
			// listens on and advertises the same numbers.
			ListenedPorts: passive,
			ExposedPorts:  passive,
			Address: fileconfig.PassiveAddress{
				Static:    addr.static,
				Hostname:  addr.hostname,
				Overrides: overridesFor(s, facts),
			},
		},
		Active: fileconfig.Active{Enabled: spec.ActiveMode.Enabled},
		TLS:    tlsConfigFor(spec.TLS),
		Limits: fileconfig.Limits{
			MaxSessions:      int(spec.Limits.MaxSessions),
			MaxSessionsPerIP: int(spec.Limits.MaxSessionsPerIP),
			IdleTimeout:      duration(spec.Limits.IdleTimeout),
			LoginTimeout:     duration(spec.Limits.LoginTimeout),
			BanAfterFailures: int(spec.Limits.MaxFailedLogins),
			BanDuration:      duration(spec.Limits.BanDuration),
			DataTimeout:      duration(spec.Limits.DataTimeout),
			IPv6PrefixLength: int(spec.Limits.IPv6PrefixLength),
			TCPKeepAlive: fileconfig.TCPKeepAlive{
				Idle:     duration(spec.Limits.TCPKeepAlive.Idle),
				Interval: duration(spec.Limits.TCPKeepAlive.Interval),
				Count:    int(spec.Limits.TCPKeepAlive.Count),
			},
		},
		DrainTimeout: optionalDuration(spec.DrainTimeout),
	}
	return cfg
}

func overridesFor(s *ftpv1alpha1.FTPServer, facts clusterFacts) []fileconfig.Override {
	var out []fileconfig.Override
	for _, o := range s.Spec.PassiveAddress.Overrides {
		fo := fileconfig.Override{CIDRs: append([]string(nil), o.CIDRs...)}
		switch o.Source {
		case ftpv1alpha1.PassiveAddressPodIP:
			fo.UsePodIP = true
		case ftpv1alpha1.PassiveAddressServiceClusterIP:
			if facts.clusterIP == "" || facts.clusterIP == corev1.ClusterIPNone {
				continue // not allocated yet; the next reconcile adds it
			}
			fo.Address = facts.clusterIP
		default:
			fo.Address = o.Address
		}
		out = append(out, fo)
	}
	return out
}

func tlsConfigFor(t ftpv1alpha1.TLSSpec) fileconfig.TLS {
	mode := map[ftpv1alpha1.TLSMode]fileconfig.TLSMode{
		ftpv1alpha1.TLSExplicit: fileconfig.TLSExplicit,
		ftpv1alpha1.TLSRequired: fileconfig.TLSRequired,
		ftpv1alpha1.TLSImplicit: fileconfig.TLSImplicit,
	}[t.Mode]
	if mode == "" {
		return fileconfig.TLS{Mode: fileconfig.TLSDisabled}
	}
	return fileconfig.TLS{
		Mode:       mode,
		CertFile:   path.Join(tlsMountPath, corev1.TLSCertKey),
		KeyFile:    path.Join(tlsMountPath, corev1.TLSPrivateKeyKey),
		MinVersion: t.MinVersion,

		RequireSessionReuse: t.RequireSessionReuse,
	}
}

// optionalDuration keeps a set zero (drainTimeout: 0s means no drain) apart from an unset value.
func optionalDuration(d *metav1.Duration) *fileconfig.Duration {
	if d == nil {
		return nil
	}
	return &fileconfig.Duration{Duration: d.Duration}
}

func duration(d *metav1.Duration) fileconfig.Duration {
	if d == nil {
		return fileconfig.Duration{}
	}
	return fileconfig.Duration{Duration: d.Duration}
}

// configMapFor wraps the rendered ftpd.yaml in the ConfigMap the daemon mounts.
func configMapFor(s *ftpv1alpha1.FTPServer, cfg *fileconfig.Config) (*corev1.ConfigMap, error) {
	data, err := fileconfig.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("render %s for %s/%s: %w", fileconfig.ConfigFileName, s.Namespace, s.Name, err)
	}
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: objectMeta(s, configMapName(s)),
		Data:       map[string]string{fileconfig.ConfigFileName: string(data)},
	}, nil
}

// restartChecksum digests the settings the daemon cannot apply without a restart, as
// classified once for both sides by fileconfig (settingReload): the PASV address, the limits
// and the users (a separate file) are left out. It goes on the pod template, so only changes
// that need a restart roll the pods.
func restartChecksum(cfg *fileconfig.Config) (string, error) {
	digest, err := fileconfig.RestartDigest(cfg)
	if err != nil {
		return "", err
	}
	return digest[:16], nil
}

// objectMeta is the metadata of an object owned by s: deleted with it by garbage collection.
func objectMeta(s *ftpv1alpha1.FTPServer, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:            name,
		Namespace:       s.Namespace,
		Labels:          commonLabels(s),
		OwnerReferences: []metav1.OwnerReference{ownerReference(s)},
	}
}

func ownerReference(s *ftpv1alpha1.FTPServer) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion:         ftpv1alpha1.GroupVersion.String(),
		Kind:               "FTPServer",
		Name:               s.Name,
		UID:                s.UID,
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}
}
