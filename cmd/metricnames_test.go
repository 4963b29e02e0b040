package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/ftpd"
	"github.com/kubeftp/ftp-operator/internal/operatormetrics"
	"github.com/kubeftp/ftp-operator/internal/poll"
	"github.com/kubeftp/ftp-operator/internal/testenv"
)

// metricName finds the metric names in PromQL (and in the prose around it): the families of
// the daemon, the operator, controller-runtime and the Go client. Label names never have these
// prefixes; "up" is Prometheus' own and left out.
var metricName = regexp.MustCompile(`\b(?:ftpd|ftp_operator|controller_runtime|workqueue|rest_client|leader_election|certwatcher|go|process)_[a-zA-Z0-9_:]*[a-zA-Z0-9]\b`)

// TestDashboardAndRulesUseExportedMetrics: every metric named by the shipped alert rules and
// Grafana dashboard is exported by the code, as collected in this process from the manager's
// registry (controller-runtime's, with the FTPServer controller and the readiness collector
// running) and from a daemon's /metrics. A renamed metric fails here instead of silently
// emptying a panel or disarming an alert.
func TestDashboardAndRulesUseExportedMetrics(t *testing.T) {
	if env == nil {
		t.Skip(skipReason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	exported := managerMetricNames(t, ctx)
	for name := range daemonMetricNames(t, ctx) {
		exported[name] = true
	}

	root := testenv.RepoRoot()
	used := map[string][]string{} // metric -> where
	for _, expr := range ruleExpressions(t, filepath.Join(root, "charts", "ftp-operator", "files", "prometheus-rules.yaml")) {
		for _, m := range metricName.FindAllString(expr, -1) {
			used[m] = append(used[m], "prometheus-rules.yaml")
		}
	}
	for _, expr := range dashboardQueries(t, filepath.Join(root, "charts", "ftp-operator", "files", "grafana-dashboard.json")) {
		for _, m := range metricName.FindAllString(expr, -1) {
			used[m] = append(used[m], "grafana-dashboard.json")
		}
	}
	if len(used) < 10 {
		t.Fatalf("found only %d metric names in the rules and the dashboard: %v", len(used), used)
	}
	var missing []string
	for m, where := range used {
		if !exported[m] {
			missing = append(missing, fmt.Sprintf("%s (%s)", m, strings.Join(where, ", ")))
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("not exported by the manager or the daemon: %s", m)
	}
}

// managerMetricNames runs the manager command and gathers controller-runtime's registry, which
// is what the manager's /metrics serves, once the readiness collector reports an FTPServer and
// the controller has reconciled it.
func managerMetricNames(t *testing.T, ctx context.Context) map[string]bool {
	t.Helper()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := parseManagerFlags([]string{"--kubeconfig", kubeconfig, "--leader-elect=false",
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0"})
	if err != nil {
		t.Fatal(err)
	}
	run := startManager(ctx, opts)
	defer run.stop(t)
	mustCreate(t, ctx, &ftpv1alpha1.FTPServer{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "named-", Namespace: "default"},
		Spec: ftpv1alpha1.FTPServerSpec{
			Volumes: []ftpv1alpha1.FTPVolume{{Name: "data", ClaimTemplate: &ftpv1alpha1.ClaimTemplate{Size: resource.MustParse("1Gi")}}},
		},
	})
	var names map[string]bool
	err = poll.Until(ctx, time.Minute, 100*time.Millisecond, operatormetrics.ReadyMetric+" and the reconcile metrics in the manager's registry", func(context.Context) (bool, error) {
		if err := run.alive(); err != nil {
			return false, err
		}
		families, err := ctrlmetrics.Registry.Gather()
		if err != nil {
			return false, poll.Stop(err)
		}
		names = familyNames(families)
		// Series appear as the controller starts and its queue takes the FTPServer.
		return names[operatormetrics.ReadyMetric] && names["controller_runtime_reconcile_total"] && names["workqueue_depth"], fmt.Errorf("families %v", names)
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func familyNames(families []*dto.MetricFamily) map[string]bool {
	names := map[string]bool{}
	for _, f := range families {
		addFamily(names, f.GetName(), f.GetType().String())
	}
	return names
}

// addFamily records a family under the names its series have in Prometheus.
func addFamily(names map[string]bool, name, typ string) {
	names[name] = true
	switch strings.ToLower(typ) {
	case "histogram":
		names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
	case "summary":
		names[name+"_sum"], names[name+"_count"] = true, true
	}
}

// daemonMetricNames starts a daemon with a user (the per-user series exist from the start for
// declared users) and reads the families of its /metrics.
func daemonMetricNames(t *testing.T, ctx context.Context) map[string]bool {
	t.Helper()
	srv, err := ftpd.NewServer(ftpd.Config{
		ListenAddr: "127.0.0.1:0",
		HealthAddr: "127.0.0.1:0",
		Root:       t.TempDir(),
		// With a quota, so that the quota families exist (they appear once the first walk of
		// the home is done).
		Users:        []ftpd.User{{Name: "alice", Password: "secret", Quota: ftpd.Quota{MaxBytes: 1 << 20, MaxFiles: 100}}},
		PassivePorts: ftpd.PortRange{Start: 30000, End: 30009},
		DrainTimeout: time.Second,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("ftpd: %v", err)
		}
	}()
	poll.Eventually(t, 30*time.Second, "ftpd ready", func() (bool, error) { return srv.Ready(), nil })
	var names map[string]bool
	poll.Eventually(t, 30*time.Second, "the daemon's /metrics with the quota families", func() (bool, error) {
		var err error
		if names, err = scrapeFamilies(ctx, "http://"+srv.HealthAddr()+"/metrics"); err != nil {
			return false, err
		}
		return names["ftpd_sessions"] && names["ftpd_user_quota_used_bytes"], fmt.Errorf("families: %v", names)
	})
	return names
}

// scrapeFamilies reads the metric family names of a /metrics page.
func scrapeFamilies(ctx context.Context, url string) (map[string]bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		// "# TYPE name type" introduces every family of the text format.
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			addFamily(names, f[2], f[3])
		}
	}
	return names, sc.Err()
}

// ruleExpressions returns every rule's expr and annotations (which may name metrics too).
func ruleExpressions(t *testing.T, path string) []string {
	t.Helper()
	var file struct {
		Groups []struct {
			Rules []struct {
				Expr        string            `json:"expr"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &file); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []string
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			out = append(out, r.Expr)
			for _, a := range r.Annotations {
				out = append(out, a)
			}
		}
	}
	return out
}

// dashboardQueries returns the dashboard's panel queries and variable queries, wherever they
// are nested (rows hold panels too).
func dashboardQueries(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, child := range v {
				if s, ok := child.(string); ok && (k == "expr" || k == "query" || k == "definition") {
					out = append(out, s)
				}
				walk(child)
			}
		case []any:
			for _, child := range v {
				walk(child)
			}
		}
	}
	walk(doc)
	return out
}
