package v1alpha1_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
	"github.com/kubeftp/ftp-operator/internal/testenv"
)

var (
	env        *testenv.Env
	skipReason string
)

func TestMain(m *testing.M) { testenv.Main(m, &env, &skipReason) }

func requireEnv(t *testing.T) *testenv.Env {
	t.Helper()
	if env == nil {
		t.Skip(skipReason)
	}
	return env
}

// minimalSpec is a valid spec; each bad case below changes one thing in it.
const minimalSpec = `
volumes:
  - name: data
    claimTemplate: {size: 1Gi}
users:
  - name: alice
    passwordSecretRef: {name: alice-secret}
`

// ftpServerFromSpec builds an unstructured FTPServer from spec YAML, the way kubectl would send
// it, so that omitted fields stay omitted and zero values stay present.
func ftpServerFromSpec(t *testing.T, name, specYAML string) *unstructured.Unstructured {
	t.Helper()
	var spec map[string]any
	if err := yaml.Unmarshal([]byte(specYAML), &spec); err != nil {
		t.Fatalf("bad test spec YAML: %v", err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": ftpv1alpha1.GroupVersion.String(),
		"kind":       "FTPServer",
		"metadata":   map[string]any{"name": name, "namespace": "default"},
		"spec":       spec,
	}}
	return u
}

// withSpec returns minimalSpec merged with the given top-level spec fields (replacing them).
func withSpec(t *testing.T, override string) string {
	t.Helper()
	var base, patch map[string]any
	if err := yaml.Unmarshal([]byte(minimalSpec), &base); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(override), &patch); err != nil {
		t.Fatalf("bad override YAML: %v", err)
	}
	for k, v := range patch {
		base[k] = v
	}
	out, err := yaml.Marshal(base)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func dryRunCreate(ctx context.Context, c client.Client, obj client.Object) error {
	return c.Create(ctx, obj, client.DryRunAll)
}

func TestSamplesAreAccepted(t *testing.T) {
	e := requireEnv(t)
	samples, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "samples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var checked int
	for _, path := range samples {
		if filepath.Base(path) == "kustomization.yaml" {
			continue
		}
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(data, &u.Object); err != nil {
				t.Fatalf("parse sample: %v", err)
			}
			u.SetNamespace("default")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := dryRunCreate(ctx, e.Client, u); err != nil {
				t.Fatalf("sample rejected: %v", err)
			}
		})
		checked++
	}
	if checked < 4 {
		t.Fatalf("expected at least 4 samples in config/samples, found %d", checked)
	}
}

func TestInvalidFTPServersAreRejected(t *testing.T) {
	e := requireEnv(t)
	cases := []struct {
		name     string
		override string // replaces top-level spec fields of minimalSpec
		spec     string // used instead of minimalSpec when set
		want     string // substring of the API server's message
	}{
		// CEL rules
		{name: "replicas above 1 on a ReadWriteOnce claim template", override: `replicas: 2`,
			want: "replicas above 1 need volumes that every replica can mount: give each claimTemplate accessModes [ReadWriteMany]"},
		{name: "replicas above 1, one template of two shared", override: `{replicas: 3, volumes: [{name: a, claimTemplate: {size: 1Gi, accessModes: [ReadWriteMany]}}, {name: b, claimTemplate: {size: 1Gi}}]}`,
			want: "replicas above 1 need volumes that every replica can mount"},
		{name: "too many replicas", override: `{replicas: 17, volumes: [{name: data, claimName: shared}]}`, want: "spec.replicas: Invalid value: 17: spec.replicas in body should be less than or equal to 16"},
		{name: "negative replicas", override: `replicas: -1`, want: "spec.replicas in body should be greater than or equal to 0"},
		{name: "range too small for the replicas", override: `{replicas: 3, volumes: [{name: data, claimName: shared}], ports: {passive: {start: 30000, end: 30001}}}`,
			want: "ports.passive has too few ports for the replicas"},
		{name: "range too small for the slices", override: `{replicas: 3, volumes: [{name: data, claimName: shared}], ports: {passive: {start: 30000, end: 30019, perReplica: 7}}}`,
			want: "ports.passive has too few ports for the replicas: it needs replicas × ports.passive.perReplica ports"},
		{name: "empty slices", override: `ports: {passive: {start: 30000, end: 30019, perReplica: 0}}`, want: "perReplica in body should be greater than or equal to 1"},
		{name: "relay port in the range", override: `{replicas: 2, volumes: [{name: data, claimName: shared}], ports: {passive: {start: 2122, end: 2130}}}`,
			want: "with several replicas ports.passive must not include 2122"},
		{name: "reversed passive range", override: `ports: {passive: {start: 30010, end: 30000}}`,
			want: "passive port range is reversed: ports.passive.start must not be greater than ports.passive.end"},
		{name: "passive range over 1000 ports", override: `ports: {passive: {start: 30000, end: 31000}}`,
			want: "passive port range has more than 1000 ports"},
		{name: "passive range over the pod's metrics port", override: `ports: {passive: {start: 8075, end: 8085}}`,
			want: "ports.passive must not include 2121 or 8080"},
		{name: "passive range over the pod's control port", override: `ports: {passive: {start: 2121, end: 2121}}`,
			want: "ports.passive must not include 2121 or 8080"},
		{name: "control port inside passive range", override: `ports: {control: 30005, passive: {start: 30000, end: 30009}}`,
			want: "ports.control lies inside the passive range"},
		{name: "NodePort with passive range outside 30000-32767",
			override: "service: {type: NodePort}\npassiveAddress: {address: 198.51.100.10}\nports: {passive: {start: 20000, end: 20009}}",
			want:     "ports.passive must lie within 30000-32767"},
		{name: "NodePort without a declared address", override: `service: {type: NodePort}`,
			want: "service type NodePort has no load balancer to read the PASV address from: set passiveAddress.address"},
		{name: "control node port inside passive range",
			override: "service: {type: NodePort, controlNodePort: 30005}\npassiveAddress: {address: 198.51.100.10}",
			want:     "service.controlNodePort lies inside ports.passive"},
		{name: "duplicate user names", override: `users: [{name: bob, passwordSecretRef: {name: s}}, {name: bob, passwordSecretRef: {name: t}}]`,
			want: "a user name appears more than once"},
		{name: "duplicate volume names", override: `volumes: [{name: data, claimName: a}, {name: data, claimName: b}]`,
			want: "a volume name is declared more than once"},
		{name: "home on undeclared volume", override: `users: [{name: carol, passwordSecretRef: {name: s}, home: {volume: missing}}]`,
			want: "a user's home.volume names a volume that is not declared in spec.volumes"},
		{name: "anonymous on undeclared volume", override: `anonymous: {enabled: true, volume: missing}`,
			want: "anonymous.volume must name a volume declared in spec.volumes"},
		{name: "TLS mode without a Secret", override: `tls: {mode: Explicit}`,
			want: "tls.mode Explicit needs tls.secretName"},
		{name: "implicit TLS without a Secret", override: `tls: {mode: Implicit}`,
			want: "tls.mode Implicit needs tls.secretName"},
		{name: "volume with neither claim nor template", override: `volumes: [{name: data}]`,
			want: "a volume needs exactly one of claimName"},
		{name: "volume with both claim and template", override: `volumes: [{name: data, claimName: x, claimTemplate: {size: 1Gi}}]`,
			want: "a volume needs exactly one of claimName"},
		{name: "reserved user name", override: `users: [{name: anonymous, passwordSecretRef: {name: s}}]`,
			want: "user names 'anonymous' and 'ftp' are reserved"},
		{name: "home escaping the volume", override: `users: [{name: dave, passwordSecretRef: {name: s}, home: {subPath: "a/../../etc"}}]`,
			want: "home.subPath must be a relative path inside the volume"},
		{name: "absolute home", override: `users: [{name: dave, passwordSecretRef: {name: s}, home: {subPath: /etc}}]`,
			want: "home.subPath must be a relative path inside the volume"},
		{name: "static override without address", override: `passiveAddress: {overrides: [{cidrs: [192.0.2.0/24]}]}`,
			want: "an override with source Static needs an address"},
		{name: "pod IP override with address", override: `passiveAddress: {overrides: [{cidrs: [192.0.2.0/24], source: PodIP, address: 192.0.2.1}]}`,
			want: "an override with source Static needs an address, and only Static overrides may set one"},
		{name: "override with bad CIDR", override: `passiveAddress: {overrides: [{cidrs: [not-a-cidr], source: PodIP}]}`,
			want: "every entry of overrides[].cidrs must be a CIDR"},
		{name: "bad passive address", override: `passiveAddress: {address: "bad address!"}`,
			want: "passiveAddress.address must be an IP address or a DNS name"},
		{name: "load balancer fields on ClusterIP", override: `service: {type: ClusterIP, loadBalancerSourceRanges: [203.0.113.0/24]}`,
			want: "loadBalancerClass, loadBalancerSourceRanges and allocateLoadBalancerNodePorts only apply to service type LoadBalancer"},
		{name: "node port allocation switch on NodePort", override: "service: {type: NodePort, allocateLoadBalancerNodePorts: false}\npassiveAddress: {address: 198.51.100.10}",
			want: "allocateLoadBalancerNodePorts only apply to service type LoadBalancer"},
		{name: "control node port on ClusterIP", override: `service: {type: ClusterIP, controlNodePort: 30021}`,
			want: "controlNodePort does not apply to service type ClusterIP"},
		{name: "bad source range", override: `service: {loadBalancerSourceRanges: [everyone]}`,
			want: "every entry of loadBalancerSourceRanges must be a CIDR"},
		{name: "per-IP limit above global", override: `limits: {maxSessions: 10, maxSessionsPerIP: 11}`,
			want: "limits.maxSessionsPerIP cannot exceed limits.maxSessions"},
		{name: "idle timeout too short", override: `limits: {idleTimeout: 10ms}`,
			want: "limits.idleTimeout must be at least 1s"},
		{name: "keepalive idle below a second", override: `limits: {tcpKeepAlive: {idle: 500ms}}`,
			want: "limits.tcpKeepAlive.idle must be between 1s and 32767s"},
		{name: "keepalive interval above the kernel's limit", override: `limits: {tcpKeepAlive: {interval: 10h}}`,
			want: "limits.tcpKeepAlive.interval must be between 1s and 32767s"},
		{name: "sysctl outside the network namespace", override: `pod: {sysctls: [{name: kernel.shm_rmid_forced, value: "1"}]}`,
			want: "pod.sysctls takes network sysctls (net.*) only"},
		{name: "sysctl twice", override: `pod: {sysctls: [{name: net.core.somaxconn, value: "1024"}, {name: net.core.somaxconn, value: "2048"}]}`,
			want: "a sysctl appears more than once in pod.sysctls"},
		{name: "sysctls in both places", override: `pod: {sysctls: [{name: net.ipv4.tcp_syncookies, value: "1"}], securityContext: {sysctls: [{name: net.ipv4.tcp_fin_timeout, value: "30"}]}}`,
			want: "set sysctls in pod.sysctls or in pod.securityContext.sysctls, not in both"},
		{name: "drain timeout too long", override: `drainTimeout: 48h`,
			want: "drainTimeout must be between 0s and 24h"},
		{name: "zero byte quota", override: `users: [{name: q, passwordSecretRef: {name: s}, quota: {maxBytes: "0"}}]`,
			want: `spec.users[0].quota.maxBytes: Invalid value: "0": must be a size between 1 byte and 1Ei`},
		{name: "fractional byte quota", override: `users: [{name: q, passwordSecretRef: {name: s}, quota: {maxBytes: "0.5"}}]`,
			want: `spec.users[0].quota.maxBytes: Invalid value: "0.5": must be a size between 1 byte and 1Ei`},
		{name: "byte quota beyond 1Ei", override: `users: [{name: q, passwordSecretRef: {name: s}, quota: {maxBytes: 2Ei}}]`,
			want: `spec.users[0].quota.maxBytes: Invalid value: "2Ei": must be a size between 1 byte and 1Ei`},
		{name: "zero maximum file size", override: `users: [{name: q, passwordSecretRef: {name: s}, quota: {maxFileSize: "0Gi"}}]`,
			want: `spec.users[0].quota.maxFileSize: Invalid value: "0Gi": must be a size between 1 byte and 1Ei`},

		// OpenAPI bounds and enums
		{name: "no volumes", override: `volumes: []`, want: "spec.volumes: Invalid value: 0"},
		{name: "passive start below 1024", override: `ports: {passive: {start: 21, end: 30}}`,
			want: "spec.ports.passive.start: Invalid value: 21: spec.ports.passive.start in body should be greater than or equal to 1024"},
		{name: "passive end above 65535", override: `ports: {passive: {start: 65530, end: 65536}}`,
			want: "spec.ports.passive.end in body should be less than or equal to 65535"},
		{name: "control port 0", override: `ports: {control: 0}`,
			want: "spec.ports.control in body should be greater than or equal to 1"},
		{name: "unknown service type", override: `service: {type: ExternalName}`,
			want: `spec.service.type: Unsupported value: "ExternalName"`},
		{name: "unknown TLS mode", override: `tls: {mode: Sometimes, secretName: s}`,
			want: `spec.tls.mode: Unsupported value: "Sometimes"`},
		{name: "control node port outside NodePort range", override: "service: {type: NodePort, controlNodePort: 80}\npassiveAddress: {address: 198.51.100.10}",
			want: "spec.service.controlNodePort in body should be greater than or equal to 30000"},
		{name: "user without password Secret", override: `users: [{name: erin}]`,
			want: "spec.users[0].passwordSecretRef: Required value"},
		{name: "bad user name", override: `users: [{name: "-x", passwordSecretRef: {name: s}}]`,
			want: "spec.users[0].name in body should match"},
		{name: "bad volume name", override: `volumes: [{name: Data_1, claimName: c}]`,
			want: "spec.volumes[0].name in body should match"},
		{name: "max sessions 0", override: `limits: {maxSessions: 0, maxSessionsPerIP: 0}`,
			want: "spec.limits.maxSessions in body should be greater than or equal to 1"},
		{name: "unknown reclaim policy", override: `volumes: [{name: data, claimTemplate: {size: 1Gi, reclaimPolicy: Recycle}}]`,
			want: `Unsupported value: "Recycle"`},
		{name: "keepalive count 0", override: `limits: {tcpKeepAlive: {count: 0}}`,
			want: "spec.limits.tcpKeepAlive.count: Invalid value: 0"},
		{name: "keepalive count above the kernel's limit", override: `limits: {tcpKeepAlive: {count: 128}}`,
			want: "spec.limits.tcpKeepAlive.count: Invalid value: 128"},
		{name: "malformed sysctl name", override: `pod: {sysctls: [{name: "net.ipv4.tcp syncookies", value: "1"}]}`,
			want: "spec.pod.sysctls[0].name: Invalid value"},
		{name: "sysctl without a value", override: `pod: {sysctls: [{name: net.ipv4.tcp_syncookies, value: ""}]}`,
			want: "spec.pod.sysctls[0].value: Invalid value"},
		{name: "TLS 1.1", override: `tls: {mode: Explicit, secretName: s, minVersion: "1.1"}`,
			want: `spec.tls.minVersion: Unsupported value: "1.1"`},
		{name: "zero file quota", override: `users: [{name: q, passwordSecretRef: {name: s}, quota: {maxFiles: 0}}]`,
			want: "spec.users[0].quota.maxFiles in body should be greater than or equal to 1"},
		{name: "quota as a word", override: `users: [{name: q, passwordSecretRef: {name: s}, quota: {maxBytes: lots}}]`,
			want: "spec.users[0].quota.maxBytes in body should match"},
		{name: "negative byte quota", override: `users: [{name: q, passwordSecretRef: {name: s}, quota: {maxBytes: "-1Gi"}}]`,
			want: "spec.users[0].quota.maxBytes in body should match"},
		{name: "byte quota in millibytes", override: `users: [{name: q, passwordSecretRef: {name: s}, quota: {maxBytes: 500m}}]`,
			want: "spec.users[0].quota.maxBytes in body should match"},
		{name: "unquoted byte count", override: `users: [{name: q, passwordSecretRef: {name: s}, quota: {maxBytes: 1000}}]`,
			want: "spec.users[0].quota.maxBytes in body must be of type string"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.spec
			if spec == "" {
				spec = withSpec(t, tc.override)
			}
			obj := ftpServerFromSpec(t, "bad-"+strconv.Itoa(i), spec)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := dryRunCreate(ctx, e.Client, obj)
			if err == nil {
				t.Fatalf("accepted, want rejection containing %q", tc.want)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("rejected with the wrong message:\n got: %v\nwant: ...%s...", err, tc.want)
			}
		})
	}
}

// TestValidEdgeCasesAreAccepted: values at the edges of the rules above are accepted, in the
// forms a user may write them.
func TestValidEdgeCasesAreAccepted(t *testing.T) {
	e := requireEnv(t)
	cases := []struct{ name, override string }{
		{"quota with suffixes", `users: [{name: q, passwordSecretRef: {name: s}, quota: {maxBytes: 10Gi, maxFiles: 100000, maxFileSize: 1Gi}}]`},
		{"quota in plain bytes", `users: [{name: q, passwordSecretRef: {name: s}, quota: {maxBytes: "1", maxFiles: 1, maxFileSize: "1000000"}}]`},
		{"fractional quota of whole bytes", `users: [{name: q, passwordSecretRef: {name: s}, quota: {maxBytes: 1.5Gi}}]`},
		{"quota of 1Ei", `users: [{name: q, passwordSecretRef: {name: s}, quota: {maxBytes: 1Ei, maxFileSize: 1Ei}}]`},
		{"session reuse required", `tls: {mode: Required, secretName: s, requireSessionReuse: true}`},
		{"16 replicas on an existing claim", `{replicas: 16, volumes: [{name: data, claimName: shared}]}`},
		{"replicas on a shared claim template", `{replicas: 3, volumes: [{name: data, claimTemplate: {size: 1Gi, accessModes: [ReadWriteMany]}}]}`},
		{"slices filling the range", `{replicas: 4, volumes: [{name: data, claimName: shared}], ports: {passive: {start: 30000, end: 30019, perReplica: 5}}}`},
		{"one replica may use 2122", `ports: {passive: {start: 2122, end: 2130}}`},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := ftpServerFromSpec(t, "edge-"+strconv.Itoa(i), withSpec(t, tc.override))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := dryRunCreate(ctx, e.Client, obj); err != nil {
				t.Fatalf("rejected: %v", err)
			}
		})
	}
}

// TestDefaults creates the minimal FTPServer and checks that every documented default comes back.
func TestDefaults(t *testing.T) {
	e := requireEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	obj := ftpServerFromSpec(t, "defaults", minimalSpec)
	if err := e.Client.Create(ctx, obj); err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() { _ = e.Client.Delete(context.Background(), obj) })

	var got ftpv1alpha1.FTPServer
	if err := e.Client.Get(ctx, client.ObjectKeyFromObject(obj), &got); err != nil {
		t.Fatalf("get: %v", err)
	}
	s := got.Spec
	checks := []struct {
		field     string
		got, want any
	}{
		{"replicas", deref(s.Replicas), int32(1)},
		{"ports.control", s.Ports.Control, int32(21)},
		{"ports.passive.start", s.Ports.Passive.Start, int32(30000)},
		{"ports.passive.end", s.Ports.Passive.End, int32(30019)},
		{"service.type", string(s.Service.Type), "LoadBalancer"},
		{"service.externalTrafficPolicy", string(s.Service.ExternalTrafficPolicy), "Local"},
		{"networkPolicy.enabled", deref(s.NetworkPolicy.Enabled), true},
		{"tls.mode", string(s.TLS.Mode), "Disabled"},
		{"tls.minVersion", s.TLS.MinVersion, "1.2"},
		{"tls.requireSessionReuse", s.TLS.RequireSessionReuse, false},
		{"activeMode.enabled", s.ActiveMode.Enabled, false},
		// The daemon's settings default as ftpd/fileconfig (the daemon's one home of defaults)
		// says, so an FTPServer and a config file without them behave alike.
		{"limits.maxSessions", int(s.Limits.MaxSessions), fileconfig.DefaultMaxSessions},
		{"limits.maxSessionsPerIP", int(s.Limits.MaxSessionsPerIP), fileconfig.DefaultMaxSessionsPerIP},
		{"limits.idleTimeout", s.Limits.IdleTimeout.Duration, fileconfig.DefaultIdleTimeout},
		{"limits.loginTimeout", s.Limits.LoginTimeout.Duration, fileconfig.DefaultLoginTimeout},
		{"limits.maxFailedLogins", int(s.Limits.MaxFailedLogins), fileconfig.DefaultBanAfterFailures},
		{"limits.banDuration", s.Limits.BanDuration.Duration, fileconfig.DefaultBanDuration},
		{"limits.dataTimeout", s.Limits.DataTimeout.Duration, fileconfig.DefaultDataTimeout},
		{"limits.ipv6PrefixLength", int(s.Limits.IPv6PrefixLength), fileconfig.DefaultIPv6PrefixLength},
		{"limits.tcpKeepAlive.idle", s.Limits.TCPKeepAlive.Idle.Duration, fileconfig.DefaultTCPKeepAliveIdle},
		{"limits.tcpKeepAlive.interval", s.Limits.TCPKeepAlive.Interval.Duration, fileconfig.DefaultTCPKeepAliveInterval},
		{"limits.tcpKeepAlive.count", int(s.Limits.TCPKeepAlive.Count), fileconfig.DefaultTCPKeepAliveCount},
		{"drainTimeout", s.DrainTimeout.Duration, fileconfig.DefaultDrainTimeout},
		{"volumes[0].claimTemplate.accessModes", len(s.Volumes[0].ClaimTemplate.AccessModes), 1},
		{"volumes[0].claimTemplate.accessModes[0]", string(s.Volumes[0].ClaimTemplate.AccessModes[0]), "ReadWriteOnce"},
		{"volumes[0].claimTemplate.reclaimPolicy", string(s.Volumes[0].ClaimTemplate.ReclaimPolicy), "Retain"},
		{"users[0].passwordSecretRef.key", s.Users[0].PasswordSecretRef.Key, "password"},
		{"users[0].readOnly", s.Users[0].ReadOnly, false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("default of spec.%s = %v, want %v", c.field, c.got, c.want)
		}
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
