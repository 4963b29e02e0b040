package chart

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/yaml"
)

const (
	rulesFile     = "charts/ftp-operator/files/prometheus-rules.yaml"
	rulesTests    = "test/chart/testdata/prometheus-rules.test.yaml"
	dashboardFile = "charts/ftp-operator/files/grafana-dashboard.json"
)

// TestPrometheusRules checks the shipped alert rules with Prometheus' own promtool (built by
// the Makefile, pinned): they load, and every alert passes its unit tests.
func TestPrometheusRules(t *testing.T) {
	promtool := tool(t, "PROMTOOL")
	run(t, promtool, "check", "rules", rulesFile)
	out := run(t, promtool, "test", "rules", rulesTests)
	if !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool test rules:\n%s", out)
	}
}

// TestPrometheusRulesAreAllTested: every alert of the rules file has a `promtool test rules`
// case that expects it to fire, so a new alert cannot ship untested.
func TestPrometheusRulesAreAllTested(t *testing.T) {
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
			} `json:"rules"`
		} `json:"groups"`
	}
	readYAML(t, rulesFile, &rules)
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	readYAML(t, rulesTests, &tests)
	fired := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fired[a.Alertname] = true
			}
		}
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if !fired[r.Alert] {
				t.Errorf("alert %s has no promtool test that expects it to fire (%s)", r.Alert, rulesTests)
			}
		}
	}
	if n == 0 {
		t.Fatal("no alerts found")
	}
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repo, path))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestChartMonitoringObjects: prometheusRule.enabled ships the rules file as it is (the file
// promtool tests), grafanaDashboard.enabled the dashboard with the sidecar's label; both are
// accepted by the API server.
func TestChartMonitoringObjects(t *testing.T) {
	helm := tool(t, "HELM")
	e := requireEnv(t)
	objs := render(t, helm, "--set", "prometheusRule.enabled=true", "--set", "grafanaDashboard.enabled=true",
		"--set", "metrics.serviceMonitor.enabled=true", "--set", "daemonMetrics.podMonitor.enabled=true")

	rule := find(objs, "PrometheusRule", "ftp-operator")
	if rule == nil {
		t.Fatal("no PrometheusRule ftp-operator")
	}
	var want map[string]any
	readYAML(t, rulesFile, &want)
	if got, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups"); !reflect.DeepEqual(got, want["groups"]) {
		t.Errorf("the PrometheusRule's groups differ from %s", rulesFile)
	}

	cm := find(objs, "ConfigMap", "ftp-operator-dashboard")
	if cm == nil {
		t.Fatal("no ConfigMap ftp-operator-dashboard")
	}
	if cm.GetLabels()["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap labels %v: want grafana_dashboard=1 for the sidecar", cm.GetLabels())
	}
	data, _, _ := unstructured.NestedString(cm.Object, "data", "ftp-operator.json")
	shipped, err := os.ReadFile(filepath.Join(repo, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(data) != strings.TrimSpace(string(shipped)) {
		t.Error("the dashboard ConfigMap does not carry files/grafana-dashboard.json verbatim")
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []any  `json:"panels"`
	}
	if err := json.Unmarshal([]byte(data), &dash); err != nil || dash.UID == "" || len(dash.Panels) == 0 {
		t.Errorf("dashboard JSON: uid %q, %d panels, %v", dash.UID, len(dash.Panels), err)
	}

	// The monitors give the series the labels the rules and the dashboard select on.
	pm := find(objs, "PodMonitor", "ftp-operator-ftpd")
	if jl, _, _ := unstructured.NestedString(pm.Object, "spec", "jobLabel"); jl != "app.kubernetes.io/name" {
		t.Errorf("PodMonitor jobLabel %q: the rules select job=\"ftpd\" (the daemon pods' app.kubernetes.io/name)", jl)
	}
	sm := find(objs, "ServiceMonitor", "ftp-operator-manager")
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	ep := eps[0].(map[string]any)
	if ep["scheme"] != "https" || ep["bearerTokenFile"] == nil || ep["honorLabels"] != true {
		t.Errorf("manager ServiceMonitor endpoint %v: want https with the ServiceAccount token and honorLabels", ep)
	}
	dryRun(t, e, objs, "ftp-operator-system")
}

// TestChartKubeVersion: the chart refuses clusters older than its kubeVersion and accepts the
// test API server's version (hack/control-plane.sh stamps it).
func TestChartKubeVersion(t *testing.T) {
	helm := tool(t, "HELM")
	cases := []struct {
		version string
		ok      bool
	}{
		{"1.30.9", false},
		{"1.31.0", true},
		{"1.31.4-eks-2d98532", true},
		{"1.37.2", true},
	}
	for _, tc := range cases {
		t.Run(tc.version, func(t *testing.T) {
			out, err := runErr(helm, "template", "x", "charts/ftp-operator", "--kube-version", tc.version)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("refused: %s", out)
			case !tc.ok && err == nil:
				t.Fatal("accepted")
			case !tc.ok && !strings.Contains(string(out), "kubeVersion"):
				t.Fatalf("refusal does not name kubeVersion: %s", out)
			}
		})
	}
	t.Run("test API server", func(t *testing.T) {
		e := requireEnv(t)
		dc, err := discovery.NewDiscoveryClientForConfig(e.Config)
		if err != nil {
			t.Fatal(err)
		}
		v, err := dc.ServerVersion()
		if err != nil {
			t.Fatal(err)
		}
		if out, err := runErr(helm, "template", "x", "charts/ftp-operator", "--kube-version", v.GitVersion); err != nil {
			t.Fatalf("the chart refuses the test API server's %s: %s", v.GitVersion, out)
		}
	})
}

// TestChartMetricsModes: the manager's metrics endpoint, its RBAC and the ServiceMonitor agree
// in each mode: secure with a self-signed or a mounted certificate, or plain HTTP by choice.
func TestChartMetricsModes(t *testing.T) {
	helm := tool(t, "HELM")
	cases := []struct {
		name       string
		set        []string
		wantArgs   []string
		scheme     string
		authRBAC   bool
		certVolume bool
	}{
		{name: "secure, self-signed", wantArgs: []string{"--metrics-bind-address=:8443", "--metrics-secure=true"}, scheme: "https", authRBAC: true},
		{name: "secure, mounted certificate", set: []string{"--set", "metrics.certSecretName=metrics-tls"},
			wantArgs: []string{"--metrics-secure=true", "--metrics-cert-path=/etc/ftp-operator/metrics-certs"}, scheme: "https", authRBAC: true, certVolume: true},
		{name: "plain HTTP", set: []string{"--set", "metrics.secure=false", "--set", "metrics.port=8080"},
			wantArgs: []string{"--metrics-bind-address=:8080", "--metrics-secure=false"}, scheme: "http"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, helm, append([]string{"--set", "metrics.serviceMonitor.enabled=true"}, tc.set...)...)
			dep := find(objs, "Deployment", "ftp-operator-manager")
			cs, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
			args, _, _ := unstructured.NestedStringSlice(cs[0].(map[string]any), "args")
			for _, a := range tc.wantArgs {
				if !slices.Contains(args, a) {
					t.Errorf("manager args %v lack %s", args, a)
				}
			}
			_, hasVolume, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "volumes")
			if hasVolume != tc.certVolume {
				t.Errorf("certificate volume present %v, want %v", hasVolume, tc.certVolume)
			}
			if got := find(objs, "ClusterRole", "ftp-operator-metrics-auth") != nil; got != tc.authRBAC {
				t.Errorf("metrics-auth ClusterRole present %v, want %v", got, tc.authRBAC)
			}
			sm := find(objs, "ServiceMonitor", "ftp-operator-manager")
			eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
			ep := eps[0].(map[string]any)
			if ep["scheme"] != tc.scheme || (ep["bearerTokenFile"] != nil) != (tc.scheme == "https") {
				t.Errorf("ServiceMonitor endpoint %v: want scheme %s, a token only with https", ep, tc.scheme)
			}
		})
	}
}

// TestGrafanaDashboard checks what Grafana would otherwise only show as broken panels: every
// panel queries the dashboard's data-source variable, ids are unique, panels fit the 24-column
// grid, every query selects the monitors' job and the variables it uses exist.
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repo, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr       string `json:"expr"`
		RefID      string `json:"refId"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	}
	type panel struct {
		ID      int      `json:"id"`
		Type    string   `json:"type"`
		Title   string   `json:"title"`
		Targets []target `json:"targets"`
		GridPos struct {
			X, Y, W, H int
		} `json:"gridPos"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	}
	var dash struct {
		UID        string  `json:"uid"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name string `json:"name"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{"__rate_interval": true, "__range": true, "__interval": true}
	for _, v := range dash.Templating.List {
		vars[v.Name] = true
	}
	for _, want := range []string{"datasource", "namespace", "ftpserver", "user"} {
		if !vars[want] {
			t.Errorf("no dashboard variable %s", want)
		}
	}
	varRef := regexp.MustCompile(`\$\{?([A-Za-z_]+)`)
	ids := map[int]bool{}
	queried := 0
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H <= 0 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: data source %q, want ${datasource}", p.Title, p.Datasource.UID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			queried++
			if tg.Expr == "" || tg.RefID == "" || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: incomplete query %+v", p.Title, tg)
			}
			if !strings.Contains(tg.Expr, `job="ftpd"`) && !strings.Contains(tg.Expr, `job="ftp-operator-manager"`) {
				t.Errorf("panel %q: %s selects neither job the monitors set", p.Title, tg.Expr)
			}
			for _, m := range varRef.FindAllStringSubmatch(tg.Expr, -1) {
				if !vars[m[1]] {
					t.Errorf("panel %q uses an undefined variable $%s", p.Title, m[1])
				}
			}
		}
	}
	if queried < 20 {
		t.Errorf("only %d queries: the dashboard lost panels", queried)
	}
}
