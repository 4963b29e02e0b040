package controllers

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// fixtureHash is a syntactically valid bcrypt hash for fixtures.
var fixtureHash = "$2a$10$" + strings.Repeat("N", 53)

// withDefaults fills what the API server's defaulting would, so fixtures look like real objects
// (TestFixturesAreDefaultedAsTheAPIServerDoes holds it to the CRD's defaults).
func withDefaults(s *ftpv1alpha1.FTPServer) *ftpv1alpha1.FTPServer {
	sp := &s.Spec
	if sp.Replicas == nil {
		sp.Replicas = ptr.To(int32(1))
	}
	if sp.Ports.Control == 0 {
		sp.Ports.Control = 21
	}
	if sp.Ports.Passive.Start == 0 {
		sp.Ports.Passive = ftpv1alpha1.PassivePortRange{Start: 30000, End: 30019}
	}
	if sp.Service.Type == "" {
		sp.Service.Type = corev1.ServiceTypeLoadBalancer
	}
	if sp.Service.ExternalTrafficPolicy == "" {
		sp.Service.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	if sp.TLS.Mode == "" {
		sp.TLS.Mode = ftpv1alpha1.TLSDisabled
	}
	if sp.TLS.MinVersion == "" {
		sp.TLS.MinVersion = "1.2"
	}
	l := &sp.Limits
	if l.MaxSessions == 0 {
		l.MaxSessions, l.MaxSessionsPerIP, l.MaxFailedLogins = 200, 20, 5
	}
	if l.IdleTimeout == nil {
		l.IdleTimeout = &metav1.Duration{Duration: 5 * time.Minute}
	}
	if l.LoginTimeout == nil {
		l.LoginTimeout = &metav1.Duration{Duration: 30 * time.Second}
	}
	if l.BanDuration == nil {
		l.BanDuration = &metav1.Duration{Duration: 15 * time.Minute}
	}
	if ka := &l.TCPKeepAlive; ka.Idle == nil {
		ka.Idle, ka.Interval, ka.Count = &metav1.Duration{Duration: time.Minute}, &metav1.Duration{Duration: 15 * time.Second}, 4
	}
	if l.DataTimeout == nil {
		l.DataTimeout = &metav1.Duration{Duration: 5 * time.Minute}
	}
	if l.IPv6PrefixLength == 0 {
		l.IPv6PrefixLength = 64
	}
	if sp.NetworkPolicy.Enabled == nil {
		sp.NetworkPolicy.Enabled = ptr.To(true)
	}
	if sp.DrainTimeout == nil {
		sp.DrainTimeout = &metav1.Duration{Duration: 2 * time.Minute}
	}
	return s
}

// undefaultedMinimalServer is the minimal fixture as a user writes it: only what has no default.
func undefaultedMinimalServer() *ftpv1alpha1.FTPServer {
	return &ftpv1alpha1.FTPServer{
		ObjectMeta: metav1.ObjectMeta{Name: "files", Namespace: "ftp", UID: types.UID("11111111-2222-3333-4444-555555555555")},
		Spec: ftpv1alpha1.FTPServerSpec{
			Volumes: []ftpv1alpha1.FTPVolume{{Name: "data", ClaimTemplate: &ftpv1alpha1.ClaimTemplate{
				Size: resource.MustParse("10Gi"), AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, ReclaimPolicy: ftpv1alpha1.ReclaimRetain,
			}}},
			Users: []ftpv1alpha1.FTPUser{{Name: "partner", PasswordSecretRef: ftpv1alpha1.SecretKeyRef{Name: "partner-ftp", Key: "password"}}},
		},
	}
}

func minimalServer() *ftpv1alpha1.FTPServer { return withDefaults(undefaultedMinimalServer()) }

func fullServer() *ftpv1alpha1.FTPServer {
	s := minimalServer()
	s.Name = "partners"
	sp := &s.Spec
	sp.Volumes = []ftpv1alpha1.FTPVolume{
		{Name: "inbound", ClaimTemplate: &ftpv1alpha1.ClaimTemplate{
			Size: resource.MustParse("50Gi"), StorageClassName: ptr.To("fast"),
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}, ReclaimPolicy: ftpv1alpha1.ReclaimDelete,
		}},
		{Name: "archive", ClaimName: "archive-pvc"},
	}
	sp.Users = []ftpv1alpha1.FTPUser{
		{Name: "bank", PasswordSecretRef: ftpv1alpha1.SecretKeyRef{Name: "ftp-users", Key: "bank"}, Home: ftpv1alpha1.UserHome{Volume: "inbound", SubPath: "banks/acme"},
			Quota: &ftpv1alpha1.UserQuota{MaxBytes: "20Gi", MaxFiles: ptr.To(int64(100_000)), MaxFileSize: "1.5Gi"}},
		{Name: "auditor", PasswordSecretRef: ftpv1alpha1.SecretKeyRef{Name: "ftp-users", Key: "auditor"}, Home: ftpv1alpha1.UserHome{Volume: "archive"}, ReadOnly: true},
	}
	sp.Anonymous = &ftpv1alpha1.AnonymousAccess{Enabled: true, Volume: "archive"}
	sp.Ports.Passive = ftpv1alpha1.PassivePortRange{Start: 31000, End: 31004}
	sp.PassiveAddress = ftpv1alpha1.PassiveAddressSpec{
		Address: "198.51.100.10",
		Overrides: []ftpv1alpha1.PassiveAddressOverride{
			{CIDRs: []string{"10.0.0.0/8"}, Source: ftpv1alpha1.PassiveAddressServiceClusterIP},
			{CIDRs: []string{"192.0.2.0/24"}, Source: ftpv1alpha1.PassiveAddressPodIP},
			{CIDRs: []string{"203.0.113.0/24"}, Source: ftpv1alpha1.PassiveAddressStatic, Address: "ftp-internal.example.com"},
		},
	}
	sp.Service = ftpv1alpha1.ServiceSpec{
		Type: corev1.ServiceTypeNodePort, ControlNodePort: ptr.To(int32(30021)),
		ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
		Annotations:           map[string]string{"example.com/team": "payments"},
	}
	sp.NetworkPolicy.AllowedSources = []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "198.51.100.0/24"}}}
	sp.NetworkPolicy.MetricsSources = []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}}}}
	sp.TLS = ftpv1alpha1.TLSSpec{Mode: ftpv1alpha1.TLSRequired, SecretName: "partners-tls", MinVersion: "1.3", RequireSessionReuse: true}
	sp.ActiveMode.Enabled = true
	sp.Limits.MaxSessions, sp.Limits.MaxSessionsPerIP = 500, 10
	sp.Limits.TCPKeepAlive = ftpv1alpha1.TCPKeepAliveSpec{Idle: &metav1.Duration{Duration: 30 * time.Second}, Interval: &metav1.Duration{Duration: 10 * time.Second}, Count: 3}
	sp.Image = "registry.example.com/ftp-operator:custom"
	sp.Pod = ftpv1alpha1.PodSpec{
		Resources:    corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}},
		NodeSelector: map[string]string{"kubernetes.io/os": "linux"},
		Annotations:  map[string]string{"prometheus.io/scrape": "true"},
		Labels:       map[string]string{"team": "payments"},
		// As on OpenShift, where the platform assigns the user IDs.
		SecurityContext:    &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
		ImagePullSecrets:   []corev1.LocalObjectReference{{Name: "registry-credentials"}},
		ServiceAccountName: "ftp-daemon",
		Sysctls:            []ftpv1alpha1.PodSysctl{{Name: "net.ipv4.tcp_syncookies", Value: "1"}, {Name: "net.core.somaxconn", Value: "8192"}},
	}
	sp.DrainTimeout = &metav1.Duration{Duration: 10 * time.Minute}
	return s
}

func clusterIPServer() *ftpv1alpha1.FTPServer {
	s := minimalServer()
	s.Name = "batch"
	s.Spec.Service.Type = corev1.ServiceTypeClusterIP
	return s
}

// replicatedServer runs three replicas on a shared claim, the passive range divided evenly.
func replicatedServer() *ftpv1alpha1.FTPServer {
	s := minimalServer()
	s.Name = "shared"
	s.Spec.Replicas = ptr.To(int32(3))
	s.Spec.Volumes[0].ClaimTemplate.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
	return s
}

// factsFor gives every fixture the same looked-up facts.
func factsFor(s *ftpv1alpha1.FTPServer) clusterFacts {
	facts := clusterFacts{
		daemonImage:         "ghcr.io/kubeftp/ftp-operator:v0.1.0",
		loadBalancerIngress: []corev1.LoadBalancerIngress{{IP: "203.0.113.7"}},
		clusterIP:           "10.96.0.42",
		claimAccessModes:    map[string][]corev1.PersistentVolumeAccessMode{},
		replicaServiceIPs:   map[int32]string{},
	}
	for _, v := range s.Spec.Volumes {
		if v.ClaimTemplate != nil {
			facts.claimAccessModes[v.Name] = v.ClaimTemplate.AccessModes
		} else {
			facts.claimAccessModes[v.Name] = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
		}
	}
	if runsStatefulSet(s, facts) {
		facts.relayKey = strings.Repeat("5e", relayKeyBytes)
		for i := range replicasOf(s) {
			facts.replicaServiceIPs[i] = fmt.Sprintf("10.96.1.%d", 10+i)
		}
	}
	for _, u := range s.Spec.Users {
		facts.users = append(facts.users, resolvedUser{name: u.Name, passwordHash: fixtureHash, home: userHome(s, u), readOnly: u.ReadOnly})
	}
	return facts
}

// desiredObjects renders everything the builders make for s (desiredSetFor, as the reconciler
// does), in a stable order.
func desiredObjects(t *testing.T, s *ftpv1alpha1.FTPServer) []any {
	t.Helper()
	d, err := desiredSetFor(s, factsFor(s))
	if err != nil {
		t.Fatal(err)
	}
	var objs []any
	for _, o := range []client.Object{d.configMap, d.usersSecret, asObject(d.deployment), asObject(d.statefulSet), d.service,
		asObject(d.networkPolicy), asObject(d.podDisruptionBudget), asObject(d.relaySecret)} {
		if o != nil {
			objs = append(objs, o)
		}
	}
	for _, svc := range d.replicaServices {
		objs = append(objs, svc)
	}
	for _, c := range d.claims {
		objs = append(objs, c)
	}
	return objs
}

func TestBuildersGolden(t *testing.T) {
	cases := map[string]*ftpv1alpha1.FTPServer{
		"minimal":    minimalServer(),
		"full":       fullServer(),
		"clusterip":  clusterIPServer(),
		"replicated": replicatedServer(),
	}
	for name, server := range cases {
		t.Run(name, func(t *testing.T) {
			var docs []string
			for _, obj := range desiredObjects(t, server) {
				if secret, ok := obj.(*corev1.Secret); ok {
					obj = readableSecret(secret)
				}
				out, err := yaml.Marshal(obj)
				if err != nil {
					t.Fatal(err)
				}
				docs = append(docs, string(out))
			}
			got := strings.Join(docs, "---\n")
			compareGolden(t, filepath.Join("testdata", "golden", name+".yaml"), got)
		})
	}
}

// readableSecret shows a Secret's data as text in golden files, so reviews can read users.yaml.
func readableSecret(s *corev1.Secret) *corev1.Secret {
	c := s.DeepCopy()
	c.StringData = map[string]string{}
	for k, v := range c.Data {
		c.StringData[k] = string(v)
	}
	c.Data = nil
	return c
}

func compareGolden(t *testing.T, path, got string) {
	t.Helper()
	if *updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run `go test ./controllers -run Golden -update` to create it): %v", err)
	}
	if string(want) != got {
		t.Fatalf("%s differs from the builders' output; if the change is intended, run `go test ./controllers -run Golden -update` and review the diff.\n--- got:\n%s", path, got)
	}
}

// The rendered config must be one the daemon accepts.
func TestRenderedConfigParsesInTheDaemon(t *testing.T) {
	for _, s := range []*ftpv1alpha1.FTPServer{minimalServer(), fullServer(), clusterIPServer(), replicatedServer()} {
		objs := desiredObjects(t, s)
		cm := objs[0].(*corev1.ConfigMap)
		if _, err := fileconfig.Parse([]byte(cm.Data[fileconfig.ConfigFileName])); err != nil {
			t.Errorf("%s: daemon rejects the rendered config: %v\n%s", s.Name, err, cm.Data[fileconfig.ConfigFileName])
		}
		users := objs[1].(*corev1.Secret)
		if _, err := fileconfig.ParseUsers(users.Data[fileconfig.UsersFileName]); err != nil {
			t.Errorf("%s: daemon rejects the rendered users file: %v", s.Name, err)
		}
	}
}
