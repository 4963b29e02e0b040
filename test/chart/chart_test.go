package chart

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kubeftp/ftp-operator/internal/poll"
	"github.com/kubeftp/ftp-operator/test/manifests"
)

const fullValues = "charts/ftp-operator/ci/full-values.yaml"

// TestChartGeneratedPartsAreCurrent: the chart's CRD and manager ClusterRole equal what
// config/ holds (controller-gen output), and its README lists every value.
func TestChartGeneratedPartsAreCurrent(t *testing.T) {
	run(t, "go", "run", "./hack/chartgen", "-check")
}

func TestHelmLint(t *testing.T) {
	helm := tool(t, "HELM")
	for _, args := range [][]string{
		{"lint", "--strict", "charts/ftp-operator"},
		{"lint", "--strict", "charts/ftp-operator", "-f", fullValues},
	} {
		run(t, helm, args...)
	}
}

func render(t *testing.T, helm string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	out := run(t, helm, append([]string{"template", "ftp-operator", "charts/ftp-operator", "--namespace", "ftp-operator-system"}, args...)...)
	objs, err := manifests.Parse(out)
	if err != nil {
		t.Fatalf("parse rendered chart: %v", err)
	}
	return objs
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, u := range objs {
		if u.GetKind() == kind && u.GetName() == name {
			return u
		}
	}
	return nil
}

// TestChartDefaultValues renders the chart as `helm install` would with no values and applies
// every object to the real API server (server-side dry-run).
func TestChartDefaultValues(t *testing.T) {
	helm := tool(t, "HELM")
	e := requireEnv(t)
	objs := render(t, helm)
	want := map[string]int{"CustomResourceDefinition": 1, "ServiceAccount": 1, "ClusterRole": 5, "ClusterRoleBinding": 2,
		"Role": 1, "RoleBinding": 1, "Service": 1, "Deployment": 1}
	if got := kinds(objs); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("default values render %v, want %v", got, want)
	}
	crd := find(objs, "CustomResourceDefinition", "ftpservers.ftp.kubeftp.dev")
	if crd == nil || crd.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
		t.Errorf("the CRD must carry helm.sh/resource-policy: keep by default; got %v", crd)
	}
	dep := find(objs, "Deployment", "ftp-operator-manager")
	if dep == nil {
		t.Fatal("no Deployment ftp-operator-manager")
	}
	checkSecureManager(t, dep)
	dryRun(t, e, objs, "ftp-operator-system")
}

// checkSecureManager: the manager pod meets the restricted Pod Security Standard and runs the
// daemons from its own image.
func checkSecureManager(t *testing.T, dep *unstructured.Unstructured) {
	t.Helper()
	pod, _, _ := unstructured.NestedMap(dep.Object, "spec", "template", "spec")
	if v, _, _ := unstructured.NestedBool(pod, "securityContext", "runAsNonRoot"); !v {
		t.Error("manager pod: securityContext.runAsNonRoot is not true")
	}
	if v, _, _ := unstructured.NestedString(pod, "securityContext", "seccompProfile", "type"); v != "RuntimeDefault" {
		t.Errorf("manager pod: seccompProfile %q, want RuntimeDefault", v)
	}
	containers, _, _ := unstructured.NestedSlice(pod, "containers")
	if len(containers) != 1 {
		t.Fatalf("manager pod has %d containers", len(containers))
	}
	c := containers[0].(map[string]any)
	if v, _, _ := unstructured.NestedBool(c, "securityContext", "readOnlyRootFilesystem"); !v {
		t.Error("manager container: readOnlyRootFilesystem is not true")
	}
	if v, found, _ := unstructured.NestedBool(c, "securityContext", "allowPrivilegeEscalation"); !found || v {
		t.Error("manager container: allowPrivilegeEscalation is not false")
	}
	if v, _, _ := unstructured.NestedStringSlice(c, "securityContext", "capabilities", "drop"); !slices.Equal(v, []string{"ALL"}) {
		t.Errorf("manager container drops capabilities %v, want [ALL]", v)
	}
	for _, probe := range []string{"livenessProbe", "readinessProbe"} {
		if _, found, _ := unstructured.NestedMap(c, probe); !found {
			t.Errorf("manager container has no %s", probe)
		}
	}
	if _, found, _ := unstructured.NestedMap(c, "resources", "requests"); !found {
		t.Error("manager container has no resource requests")
	}
	args, _, _ := unstructured.NestedStringSlice(c, "args")
	if len(args) == 0 || args[0] != "manager" || (!slices.Contains(args, "--leader-elect=true") && !slices.Contains(args, "--leader-elect")) {
		t.Errorf("manager args %v: want the manager subcommand with leader election", args)
	}
	image, _, _ := unstructured.NestedString(c, "image")
	// The daemons run from the operator's image by default: either the install names it
	// (FTP_OPERATOR_IMAGE, the chart) or the manager reads it from its own pod (POD_NAME and
	// POD_NAMESPACE from the downward API, config/manager).
	envs, _, _ := unstructured.NestedSlice(c, "env")
	daemon, hasDaemon := "", false
	fieldRefs := map[string]string{}
	for _, e := range envs {
		m := e.(map[string]any)
		name, _ := m["name"].(string)
		if name == "FTP_OPERATOR_IMAGE" {
			daemon, hasDaemon = m["value"].(string)
		}
		if path, found, _ := unstructured.NestedString(m, "valueFrom", "fieldRef", "fieldPath"); found {
			fieldRefs[name] = path
		}
	}
	switch {
	case hasDaemon && daemon != image:
		t.Errorf("FTP_OPERATOR_IMAGE %q differs from the manager image %q: the daemons must run from the operator's image by default", daemon, image)
	case !hasDaemon && (fieldRefs["POD_NAME"] != "metadata.name" || fieldRefs["POD_NAMESPACE"] != "metadata.namespace"):
		t.Errorf("the manager has neither FTP_OPERATOR_IMAGE nor POD_NAME/POD_NAMESPACE from the downward API (%v): it cannot give the daemons its own image", fieldRefs)
	}
}

// TestChartFullValues renders with every feature on (ci/full-values.yaml: monitors, FTPServers,
// overrides) and applies everything.
func TestChartFullValues(t *testing.T) {
	helm := tool(t, "HELM")
	e := requireEnv(t)
	objs := render(t, helm, "-f", fullValues)
	got := kinds(objs)
	for _, k := range []string{"CustomResourceDefinition", "Deployment", "Service", "ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap", "FTPServer"} {
		if got[k] == 0 {
			t.Errorf("full values render no %s (got %v)", k, got)
		}
	}
	if got["FTPServer"] != 2 {
		t.Errorf("full values render %d FTPServers, want 2", got["FTPServer"])
	}
	crd := find(objs, "CustomResourceDefinition", "ftpservers.ftp.kubeftp.dev")
	if _, keep := crd.GetAnnotations()["helm.sh/resource-policy"]; keep {
		t.Error("crds.keep=false still renders the keep policy")
	}
	dep := find(objs, "Deployment", "ftpop-manager")
	if dep == nil {
		t.Fatal("no Deployment ftpop-manager (fullnameOverride)")
	}
	image, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	if img := image[0].(map[string]any)["image"]; !strings.Contains(img.(string), "@sha256:") {
		t.Errorf("image.digest not used: %v", img)
	}
	dryRun(t, e, objs, "ftp-operator-system")
}

// TestChartServersOnlyRelease: the second release of the two-release layout (docs/install.md)
// renders only the FTPServers.
func TestChartServersOnlyRelease(t *testing.T) {
	helm := tool(t, "HELM")
	e := requireEnv(t)
	serversOnly := filepath.Join(t.TempDir(), "servers.yaml")
	full, err := os.ReadFile(filepath.Join(repo, fullValues))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(full, &v); err != nil {
		t.Fatal(err)
	}
	data, _ := yaml.Marshal(map[string]any{"crds": map[string]any{"enabled": false}, "manager": map[string]any{"enabled": false}, "ftpServers": v["ftpServers"]})
	if err := os.WriteFile(serversOnly, data, 0o644); err != nil {
		t.Fatal(err)
	}
	objs := render(t, helm, "-f", serversOnly)
	if got := kinds(objs); len(got) != 1 || got["FTPServer"] != 2 {
		t.Errorf("servers-only release renders %v, want only the 2 FTPServers", got)
	}
	dryRun(t, e, objs, "ftp-operator-system")
}

// TestChartRejectsBadValues: values.schema.json and the templates' checks refuse mistakes
// before anything reaches a cluster.
func TestChartRejectsBadValues(t *testing.T) {
	helm := tool(t, "HELM")
	cases := []struct {
		name string
		set  []string
		want string
	}{
		{"unknown top-level value", []string{"--set", "replicas=2"}, "additional properties 'replicas' not allowed"},
		{"misspelt nested value", []string{"--set", "manager.leaderElect=false"}, "additional properties 'leaderElect' not allowed"},
		{"wrong type", []string{"--set-string", "manager.replicas=two"}, "/manager/replicas"},
		{"bad pull policy", []string{"--set", "image.pullPolicy=Sometimes"}, "/image/pullPolicy"},
		{"bad digest", []string{"--set", "image.digest=latest"}, "/image/digest"},
		{"metrics on the probe port", []string{"--set", "metrics.port=8081"}, "/metrics/port"},
		{"bad scrape interval", []string{"--set", "metrics.serviceMonitor.interval=30 seconds"}, "/metrics/serviceMonitor/interval"},
		{"server without spec", []string{"--set", "ftpServers[0].name=files"}, "missing property 'spec'"},
		{"server with a bad name", []string{"--set", "ftpServers[0].name=Files", "--set", "ftpServers[0].spec.volumes[0].name=data"}, "/ftpServers/0/name"},
		{"standby replicas without leader election", []string{"--set", "manager.replicas=2", "--set", "manager.leaderElection=false"}, "needs manager.leaderElection"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := runErr(helm, append([]string{"template", "x", "charts/ftp-operator"}, c.set...)...)
			if err == nil {
				t.Fatalf("accepted %v", c.set)
			}
			if !strings.Contains(string(out), c.want) {
				t.Fatalf("error does not mention %q:\n%s", c.want, out)
			}
		})
	}
}

// TestValuesSchemaCoversEveryValue: every value of values.yaml is declared in values.schema.json
// (which rejects undeclared ones), so the schema cannot silently fall behind the values.
func TestValuesSchemaCoversEveryValue(t *testing.T) {
	var values map[string]any
	data, err := os.ReadFile(filepath.Join(chartPath, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	data, err = os.ReadFile(filepath.Join(chartPath, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	var missing []string
	var walk func(prefix string, v map[string]any, s map[string]any)
	walk = func(prefix string, v map[string]any, s map[string]any) {
		props, _ := s["properties"].(map[string]any)
		if s["additionalProperties"] != false {
			return // a free-form map (labels, resources): nothing more to check
		}
		for k, val := range v {
			sub, ok := props[k].(map[string]any)
			if !ok {
				missing = append(missing, prefix+k)
				continue
			}
			if m, ok := val.(map[string]any); ok {
				walk(prefix+k+".", m, sub)
			}
		}
	}
	walk("", values, schema)
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("values.yaml has values that values.schema.json does not declare: %v", missing)
	}
}

// TestHelmInstallUpgradeUninstall drives the real helm binary against the test API server: the
// two-release layout of docs/install.md, an upgrade that changes the CRD, and an uninstall that
// keeps the CRD (and so every FTPServer) in place.
func TestHelmInstallUpgradeUninstall(t *testing.T) {
	helm := tool(t, "HELM")
	e := requireEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, e.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	helmRun := func(args ...string) []byte {
		t.Helper()
		base := []string{"--kubeconfig", kubeconfig, "--namespace", "helm-test"}
		// Keep helm's cache, config and data out of $HOME.
		return run(t, "env", append([]string{"HELM_CACHE_HOME=" + dir + "/cache", "HELM_CONFIG_HOME=" + dir + "/config", "HELM_DATA_HOME=" + dir + "/data", helm}, append(args, base...)...)...)
	}

	// A cluster as a user would find it: without our CRD (envtest installed it for the other tests).
	crd := &unstructured.Unstructured{}
	crd.SetAPIVersion("apiextensions.k8s.io/v1")
	crd.SetKind("CustomResourceDefinition")
	crd.SetName("ftpservers.ftp.kubeftp.dev")
	if err := e.Client.Delete(ctx, crd); err != nil {
		t.Fatalf("delete the envtest CRD: %v", err)
	}
	waitGone(t, ctx, e.Client, crd)

	helmRun("install", "ftp-operator", "charts/ftp-operator", "--create-namespace", "--wait=false")
	if err := e.Client.Get(ctx, client.ObjectKeyFromObject(crd), crd); err != nil {
		t.Fatalf("the release did not install the CRD: %v", err)
	}
	if err := manifests.WaitEstablished(ctx, e.Client, crd.GetName(), 2*time.Minute); err != nil {
		t.Fatal(err)
	}

	servers := filepath.Join(dir, "servers.yaml")
	if err := os.WriteFile(servers, []byte(`crds: {enabled: false}
manager: {enabled: false}
ftpServers:
  - name: files
    spec:
      volumes: [{name: data, claimTemplate: {size: 1Gi}}]
      users: [{name: partner, passwordSecretRef: {name: partner-ftp}}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	helmRun("install", "ftp-servers", "charts/ftp-operator", "-f", servers)
	server := &unstructured.Unstructured{}
	server.SetAPIVersion("ftp.kubeftp.dev/v1alpha1")
	server.SetKind("FTPServer")
	if err := e.Client.Get(ctx, client.ObjectKey{Namespace: "helm-test", Name: "files"}, server); err != nil {
		t.Fatalf("the servers release did not create FTPServer files: %v", err)
	}

	// An upgrade updates the CRD (a template, not crds/): a label set through the chart's
	// labels shows that Helm patched it.
	helmRun("upgrade", "ftp-operator", "charts/ftp-operator", "--set", "nameOverride=ftpop")
	if err := e.Client.Get(ctx, client.ObjectKeyFromObject(crd), crd); err != nil {
		t.Fatal(err)
	}
	if got := crd.GetLabels()["app.kubernetes.io/name"]; got != "ftpop" {
		t.Errorf("helm upgrade did not update the CRD: label app.kubernetes.io/name=%q, want ftpop", got)
	}

	helmRun("uninstall", "ftp-operator")
	if err := e.Client.Get(ctx, client.ObjectKeyFromObject(crd), crd); err != nil {
		t.Fatalf("helm uninstall deleted the CRD despite helm.sh/resource-policy: keep: %v", err)
	}
	if err := e.Client.Get(ctx, client.ObjectKeyFromObject(server), server); err != nil {
		t.Fatalf("uninstalling the operator release took FTPServer files with it: %v", err)
	}
	helmRun("uninstall", "ftp-servers")
	waitGone(t, ctx, e.Client, server)
}

// waitGone waits until the API server answers NotFound for obj.
func waitGone(t *testing.T, ctx context.Context, c client.Client, obj *unstructured.Unstructured) {
	t.Helper()
	err := poll.Until(ctx, 2*time.Minute, 100*time.Millisecond, manifests.Name(obj)+" gone", func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj.DeepCopy())
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	if err != nil {
		t.Fatal(err)
	}
}
