// Package chart tests the packaging: the Helm chart (generated parts current, lint, schema,
// rendered manifests accepted by a real API server, install/upgrade/uninstall), the kustomize
// install, the examples of the docs and config/samples, and the image's build flags.
//
// Tools come from the environment, set by `make test`: HELM and KUSTOMIZE (pinned builds in
// the tools cache) and KUBEBUILDER_ASSETS (the source-built API server). Outside CI a test
// whose tool is missing skips and says why; in CI (env CI set) it fails.
package chart

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubeftp/ftp-operator/internal/testenv"
	"github.com/kubeftp/ftp-operator/test/manifests"
)

var (
	env        *testenv.Env
	skipReason string
	repo       = testenv.RepoRoot()
	chartPath  = filepath.Join(repo, "charts", "ftp-operator")
)

func TestMain(m *testing.M) { testenv.Main(m, &env, &skipReason) }

// requireEnv returns the API server with the stand-in CRDs of monitors and certificates.
func requireEnv(t *testing.T) *testenv.Env {
	t.Helper()
	if env == nil {
		t.Skip(skipReason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := manifests.InstallTestCRDs(ctx, env.Client); err != nil {
		t.Fatal(err)
	}
	return env
}

// tool is the path in environment variable name (set by `make test`).
func tool(t *testing.T, name string) string {
	t.Helper()
	path := os.Getenv(name)
	if path == "" {
		msg := name + " is not set: run `make test` (or `make test-chart`), which builds the pinned tool into the tools cache and sets it"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

// run runs a command in the repository and returns its standard output; it fails the test with
// the command's output when it fails.
func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	out, err := runErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = repo
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return append(stdout.Bytes(), stderr.Bytes()...), err
	}
	return stdout.Bytes(), nil
}

// dryRun applies objs with server-side dry-run and reports every rejected object.
func dryRun(t *testing.T, e *testenv.Env, objs []*unstructured.Unstructured, defaultNS string) {
	t.Helper()
	if len(objs) == 0 {
		t.Fatal("nothing to apply")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, err := range manifests.DryRunAll(ctx, e.Client, objs, defaultNS) {
		t.Error(err)
	}
}

func kinds(objs []*unstructured.Unstructured) map[string]int {
	out := map[string]int{}
	for _, u := range objs {
		out[u.GetKind()]++
	}
	return out
}
