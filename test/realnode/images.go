package realnode

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/kubeftp/ftp-operator/internal/ociimage"
	"github.com/kubeftp/ftp-operator/internal/testenv"
)

// Images built from this package's programs. The tags are fixed: pods name them with
// imagePullPolicy Never or IfNotPresent, and nothing may ever try to pull them.
const (
	// PauseImage is the sandbox image, pinned in containerd's config.
	PauseImage = "localhost/ftp-operator/realnode-pause:v1"
	// EchoImage is a small HTTP server (images/echo): /whoami answers with the client's address
	// and records it in /data/visits.log, /apiserver fetches the API server's /version through
	// the kubernetes Service with the pod's service account, /healthz answers ok.
	EchoImage = "localhost/ftp-operator/realnode-echo:v1"
	// nonRootUser is who images run as unless a pod says otherwise (distroless' nonroot).
	nonRootUser = "65532:65532"
)

// buildImages compiles the pause and echo programs (static, CGO off) and writes their OCI
// archives into the run directory, returning their paths.
func (c *Cluster) buildImages(ctx context.Context) ([]string, error) {
	dir := filepath.Join(c.dir, "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	type program struct{ name, ref string }
	programs := []program{{"pause", PauseImage}, {"echo", EchoImage}}
	args := []string{"build", "-trimpath", "-ldflags=-s -w", "-o", dir + "/"}
	for _, p := range programs {
		args = append(args, "./test/realnode/images/"+p.name)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = testenv.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("images: go build: %w: %s", err, strings.TrimSpace(string(out)))
	}
	var archives []string
	for _, p := range programs {
		archive := filepath.Join(dir, p.name+".oci.tar")
		err := ociimage.Write(archive, ociimage.Spec{
			Ref: p.ref,
			Files: []ociimage.File{
				{Path: "/" + p.name, Mode: 0o755, Source: filepath.Join(dir, p.name)},
				// A writable /tmp, as distroless images have.
				{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
			},
			Entrypoint: []string{"/" + p.name},
			User:       nonRootUser,
		})
		if err != nil {
			return nil, fmt.Errorf("images: write %s: %w", p.ref, err)
		}
		archives = append(archives, archive)
	}
	return archives, nil
}

// ImportImage loads an OCI archive (as internal/ociimage writes it) into the node's containerd,
// where the kubelet finds it: the CRI's k8s.io namespace, unpacked for its snapshotter.
func (c *Cluster) ImportImage(ctx context.Context, archive string) error {
	if _, err := c.ctr(ctx, "images", "import", "--snapshotter", "overlayfs", archive); err != nil {
		return fmt.Errorf("import %s: %w", archive, err)
	}
	return nil
}
