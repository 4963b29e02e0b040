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

// Images built here. The tags are fixed: pods name them with imagePullPolicy Never or
// IfNotPresent, and nothing may ever try to pull them.
const (
	// PauseImage is the sandbox image (hack/pause, written by hack/image as `make pause-image`
	// does, under the same reference), pinned in containerd's config.
	PauseImage = "localhost/ftp-operator/pause:3.10"
	// EchoImage is a small HTTP server (images/echo): /whoami answers with the client's address
	// and records it in /data/visits.log, /apiserver fetches the API server's /version through
	// the kubernetes Service with the pod's service account, /healthz answers ok.
	EchoImage = "localhost/ftp-operator/realnode-echo:v1"
)

// goBuild compiles main packages of this module (static, CGO off, as `make build` does) into
// dir, each under its directory's name.
func goBuild(ctx context.Context, dir string, ldflags string, pkgs ...string) error {
	args := append([]string{"build", "-trimpath", "-ldflags=" + ldflags, "-o", dir + "/"}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = testenv.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w: %s", strings.Join(pkgs, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// writeImage runs hack/image (built into dir by buildImages or BuildOperatorImage).
func writeImage(ctx context.Context, tool string, args ...string) error {
	out, err := exec.CommandContext(ctx, tool, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("hack/image %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// buildImages writes the pause and echo images' OCI archives into the run directory.
func (c *Cluster) buildImages(ctx context.Context) ([]string, error) {
	dir := filepath.Join(c.dir, "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	if err := goBuild(ctx, dir, "-s -w", "./hack/pause", "./hack/image", "./test/realnode/images/echo"); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	pause := filepath.Join(dir, "pause.oci.tar")
	if err := writeImage(ctx, filepath.Join(dir, "image"), "-pause", "-binary", filepath.Join(dir, "pause"), "-ref", PauseImage, "-o", pause); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	echo := filepath.Join(dir, "echo.oci.tar")
	err := ociimage.Write(echo, ociimage.Spec{
		Ref: EchoImage,
		Files: []ociimage.File{
			{Path: "/echo", Mode: 0o755, Source: filepath.Join(dir, "echo")},
			{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		},
		Entrypoint: []string{"/echo"},
		User:       "65532:65532", // distroless' nonroot, as our daemon runs
	})
	if err != nil {
		return nil, fmt.Errorf("images: write %s: %w", EchoImage, err)
	}
	return []string{pause, echo}, nil
}

// BuildOperatorImage writes our image as `make image IMG=ref` does (the static binary with ref
// stamped in as the manager's default daemon image, packed by hack/image) into dir and returns
// the archive, for Options.Images.
func BuildOperatorImage(ctx context.Context, dir, ref string) (string, error) {
	if err := goBuild(ctx, dir, "-s -w -X main.defaultDaemonImage="+ref, "./cmd"); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "ftp-operator")
	if err := os.Rename(filepath.Join(dir, "cmd"), bin); err != nil {
		return "", fmt.Errorf("name the binary: %w", err)
	}
	if err := goBuild(ctx, dir, "-s -w", "./hack/image"); err != nil {
		return "", err
	}
	archive := filepath.Join(dir, "ftp-operator-image.tar")
	if err := writeImage(ctx, filepath.Join(dir, "image"), "-binary", bin, "-ref", ref, "-o", archive); err != nil {
		return "", err
	}
	return archive, nil
}

// ImportImage loads an OCI archive (as internal/ociimage writes it) into every node's
// containerd, where the kubelet finds it: the CRI's k8s.io namespace, unpacked for its
// snapshotter.
func (c *Cluster) ImportImage(ctx context.Context, archive string) error {
	for _, nd := range c.nodes {
		if _, err := c.ctr(ctx, nd, "images", "import", "--snapshotter", "overlayfs", archive); err != nil {
			return fmt.Errorf("import %s into %s: %w", archive, nd.name, err)
		}
	}
	return nil
}
