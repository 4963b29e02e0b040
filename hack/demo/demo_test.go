package main

import (
	"os"
	"testing"

	"github.com/kubeftp/ftp-operator/internal/testenv"
	"github.com/kubeftp/ftp-operator/test/harness"
)

// TestDemoSmoke runs `make demo` as a newcomer would, both ways, up to the printed commands:
// each FTPServer Ready and reachable from this machine at its printed endpoint, where an upload,
// a listing and a download work (the -smoke flag). Locally with the stand-in kubelet as any
// user; on the real node, with two FTPServers at once and the operator from its chart, as root.
func TestDemoSmoke(t *testing.T) {
	ci := os.Getenv("CI") != ""
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		if ci {
			t.Fatal("KUBEBUILDER_ASSETS is not set and CI is: run `make test`")
		}
		t.Skip("KUBEBUILDER_ASSETS is not set: run `make test`")
	}
	t.Run("local", func(t *testing.T) {
		work := t.TempDir()
		bin, err := harness.BuildBinary(testenv.RepoRoot(), work)
		if err != nil {
			t.Fatal(err)
		}
		if err := run(work, bin, "local", true, testing.Verbose()); err != nil {
			t.Fatalf("the local demo: %v", err)
		}
	})
	t.Run("realnode", func(t *testing.T) {
		if err := realNodeAvailable(); err != nil {
			if ci {
				t.Fatalf("the real node cannot run and CI is set: %v", err)
			}
			t.Skipf("the real node cannot run here: %v (set CI=1 to make this a failure)", err)
		}
		if err := run(t.TempDir(), "", "realnode", true, testing.Verbose()); err != nil {
			t.Fatalf("the demo on the real node: %v", err)
		}
	})
}
