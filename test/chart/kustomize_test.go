package chart

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/kubeftp/ftp-operator/test/manifests"
)

func kustomizeBuild(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := manifests.Parse(run(t, tool(t, "KUSTOMIZE"), "build", dir))
	if err != nil {
		t.Fatalf("parse kustomize build %s: %v", dir, err)
	}
	return objs
}

// TestKustomizeDefault applies `kustomize build config/default` (what `make deploy` and
// `kubectl apply -k config/default` install) to the API server with server-side dry-run.
func TestKustomizeDefault(t *testing.T) {
	e := requireEnv(t)
	objs := kustomizeBuild(t, "config/default")
	got := kinds(objs)
	for _, k := range []string{"Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "Service"} {
		if got[k] == 0 {
			t.Errorf("config/default has no %s (got %v)", k, got)
		}
	}
	dep := find(objs, "Deployment", "ftp-operator-controller-manager")
	if dep == nil {
		t.Fatal("config/default has no Deployment ftp-operator-controller-manager")
	}
	checkSecureManager(t, dep)
	dryRun(t, e, objs, "ftp-operator-system")
}

// TestKustomizePrometheus applies config/prometheus (monitors for a kustomize install).
func TestKustomizePrometheus(t *testing.T) {
	e := requireEnv(t)
	objs := kustomizeBuild(t, "config/prometheus")
	if got := kinds(objs); got["ServiceMonitor"] != 1 || got["PodMonitor"] != 1 {
		t.Errorf("config/prometheus renders %v, want one ServiceMonitor and one PodMonitor", got)
	}
	// The ServiceMonitor must select the metrics Service of config/default.
	def := kustomizeBuild(t, "config/default")
	svc := find(def, "Service", "ftp-operator-controller-manager-metrics")
	if svc == nil {
		t.Fatal("config/default has no metrics Service")
	}
	sm := find(objs, "ServiceMonitor", "ftp-operator-controller-manager")
	sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	for k, v := range sel {
		if svc.GetLabels()[k] != v {
			t.Errorf("ServiceMonitor selects %s=%s, which the metrics Service does not carry (labels %v)", k, v, svc.GetLabels())
		}
	}
	dryRun(t, e, objs, "ftp-operator-system")
}

// TestKustomizeAndChartAgree: the two installs run the manager the same way.
func TestKustomizeAndChartAgree(t *testing.T) {
	helm := tool(t, "HELM")
	flagNames := func(dep *unstructured.Unstructured) []string {
		cs, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
		args, _, _ := unstructured.NestedStringSlice(cs[0].(map[string]any), "args")
		var names []string
		for _, a := range args {
			names = append(names, strings.SplitN(a, "=", 2)[0])
		}
		sort.Strings(names)
		return slices.Compact(names)
	}
	k := find(kustomizeBuild(t, "config/default"), "Deployment", "ftp-operator-controller-manager")
	h := find(render(t, helm), "Deployment", "ftp-operator-manager")
	kf, hf := flagNames(k), flagNames(h)
	for _, f := range kf {
		if !slices.Contains(hf, f) {
			t.Errorf("config/default passes %s to the manager but the chart does not (chart: %v)", f, hf)
		}
	}
}

// TestSamplesKustomizationListsEverySample: `kubectl apply -k config/samples` gets every sample
// file (api/v1alpha1's TestSamplesAreAccepted dry-runs each file on its own).
func TestSamplesKustomizationListsEverySample(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repo, "config", "samples", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(repo, "config", "samples", "*.yaml"))
	for _, f := range files {
		if base := filepath.Base(f); base != "kustomization.yaml" && !slices.Contains(k.Resources, base) {
			t.Errorf("config/samples/%s is not listed in config/samples/kustomization.yaml", base)
		}
	}
	e := requireEnv(t)
	objs := kustomizeBuild(t, "config/samples")
	if len(objs) != len(k.Resources) {
		t.Errorf("config/samples builds %d objects from %d files", len(objs), len(k.Resources))
	}
	dryRun(t, e, objs, "samples")
}

// TestDryRunCatchesMistakes keeps the other tests honest: a misspelt field, a bad value and a
// CEL rule violation are rejected by the same dry-run path.
func TestDryRunCatchesMistakes(t *testing.T) {
	e := requireEnv(t)
	for name, doc := range map[string]string{
		"misspelt Deployment field":  `{apiVersion: apps/v1, kind: Deployment, metadata: {name: d}, spec: {replica: 1, selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}}}`,
		"misspelt PodMonitor field":  `{apiVersion: monitoring.coreos.com/v1, kind: PodMonitor, metadata: {name: p}, spec: {selector: {}, podMetricEndpoints: [{port: ops}]}}`,
		"misspelt Certificate field": `{apiVersion: cert-manager.io/v1, kind: Certificate, metadata: {name: c}, spec: {secretName: s, issuerRef: {name: i}, dnsName: [a.example.com]}}`,
		"FTPServer CEL rule":         `{apiVersion: ftp.kubeftp.dev/v1alpha1, kind: FTPServer, metadata: {name: f}, spec: {replicas: 2, volumes: [{name: data, claimTemplate: {size: 1Gi}}]}}`,
	} {
		objs, err := manifests.Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if errs := manifests.DryRunAll(t.Context(), e.Client, objs, "mistakes"); len(errs) == 0 {
			t.Errorf("%s: accepted", name)
		}
	}
}
