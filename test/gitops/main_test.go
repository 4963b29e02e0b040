// Package gitops checks that GitOps tools read an FTPServer's health correctly: kstatus (used by
// Flux and kpt, from sigs.k8s.io/cli-utils) and the Argo CD Lua health check shipped in
// charts/ftp-operator/files/argocd-health.lua, on fixed cases and on the statuses the real
// controller writes against a real API server.
package gitops

import (
	"os"
	"os/exec"
	"testing"

	"github.com/kubeftp/ftp-operator/internal/testenv"
)

var (
	env        *testenv.Env
	skipReason string
	repo       = testenv.RepoRoot()
)

func TestMain(m *testing.M) { testenv.Main(m, &env, &skipReason) }

// lua finds the Lua 5.1 interpreter (Argo CD runs health checks in a Lua 5.1 VM). Outside CI
// its absence skips the test; in CI (env CI set) it fails: hack/install-test-deps.sh installs it.
func lua(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LUA"); p != "" {
		return p
	}
	p, err := exec.LookPath("lua5.1")
	if err != nil {
		msg := "lua5.1 not found: install the Debian package lua5.1 (hack/install-test-deps.sh does) to run the Argo CD health check's cases"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}
