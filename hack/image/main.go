// Command image writes the operator's container image, the one the Dockerfile describes, as an
// OCI archive without a container engine:
//
//	go run ./hack/image -binary bin/ftp-operator -ref ghcr.io/kubeftp/ftp-operator:dev -o bin/ftp-operator-image.tar
//
// It takes the binary `make build` made (static, CGO off, -trimpath, the daemon image stamped in)
// and puts it at /ftp-operator on a layer that reproduces what the Dockerfile's base,
// gcr.io/distroless/static:nonroot, contributes and the binary relies on: the nonroot user
// (65532) in /etc/passwd and /etc/group, its home as the working directory, /tmp and PATH.
// The base's CA bundle, time zone data and nsswitch.conf are left out: the manager reaches only
// the API server (whose CA comes with the service account token) and the daemon serves TLS
// with certificates from Secrets, so neither verifies public roots nor loads zones.
//
// With -pause it writes the pod sandbox image instead (/pause from hack/pause), for containerd
// nodes that have no registry to pull registry.k8s.io/pause from.
//
// `ctr -n k8s.io images import <archive>` loads either under its -ref (see docs/install.md).
package main

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"

	"github.com/kubeftp/ftp-operator/internal/ociimage"
)

// The user the Dockerfile's USER line and the operator's daemon pods run as: distroless's
// "nonroot".
const (
	nonrootUID = 65532
	nonrootGID = 65532
)

// The image's /etc/passwd and /etc/group: the accounts distroless/static ships, so tools in the
// pod (and os/user) resolve 65532 to "nonroot" as they do on the Dockerfile's image.
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group = "root:x:0:\n" +
		"nobody:x:65534:\n" +
		"nonroot:x:65532:\n"
)

// pauseUser is the user of the upstream pause image (65535); the sandbox needs no account.
const pauseUser = "65535:65535"

func main() {
	binary := flag.String("binary", "", "the static binary to put in the image (bin/ftp-operator, or bin/pause with -pause)")
	ref := flag.String("ref", "", "the image reference with a tag, e.g. ghcr.io/kubeftp/ftp-operator:dev")
	out := flag.String("o", "", "the archive to write")
	pause := flag.Bool("pause", false, "write the pod sandbox image (/pause) instead of the operator's")
	flag.Parse()
	if *binary == "" || *ref == "" || *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: image [-pause] -binary FILE -ref REGISTRY/NAME:TAG -o ARCHIVE")
		os.Exit(2)
	}
	if err := run(*binary, *ref, *out, *pause); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(binary, ref, out string, pause bool) error {
	arch, err := staticArch(binary)
	if err != nil {
		return err
	}
	spec := operatorSpec(binary, ref)
	if pause {
		spec = pauseSpec(binary, ref)
	}
	spec.Architecture = arch
	if err := ociimage.Write(out, spec); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	fmt.Printf("wrote %s (%s, linux/%s)\n", out, ref, arch)
	return nil
}

// operatorSpec is the Dockerfile's runtime stage; test/chart checks the two agree.
func operatorSpec(binary, ref string) ociimage.Spec {
	return ociimage.Spec{
		Ref: ref,
		Files: []ociimage.File{
			{Path: "/ftp-operator", Mode: 0o755, Source: binary},
			{Path: "/etc/passwd", Mode: 0o644, Data: []byte(passwd)},
			{Path: "/etc/group", Mode: 0o644, Data: []byte(group)},
			// Pods mount an emptyDir over /tmp; the directory is there for runs without one.
			{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
			{Path: "/home/nonroot", Mode: fs.ModeDir | 0o700, UID: nonrootUID, GID: nonrootGID},
		},
		Entrypoint: []string{"/ftp-operator"},
		User:       fmt.Sprintf("%d:%d", nonrootUID, nonrootGID),
		// From the base image: its PATH and its working directory.
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		WorkingDir: "/home/nonroot",
	}
}

func pauseSpec(binary, ref string) ociimage.Spec {
	return ociimage.Spec{
		Ref:        ref,
		Files:      []ociimage.File{{Path: "/pause", Mode: 0o755, Source: binary}},
		Entrypoint: []string{"/pause"},
		User:       pauseUser,
	}
}

// goArch maps ELF machines to GOARCH, so the image's platform is the binary's, not the host's
// (a GOARCH=arm64 `make build` makes an arm64 image).
var goArch = map[elf.Machine]string{
	elf.EM_X86_64:  "amd64",
	elf.EM_AARCH64: "arm64",
	elf.EM_PPC64:   "ppc64le",
	elf.EM_S390:    "s390x",
	elf.EM_RISCV:   "riscv64",
}

// staticArch returns the binary's architecture and refuses a dynamically linked binary: the
// image has no C library or loader, so such a binary would fail at exec with "no such file".
func staticArch(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading %s as an ELF binary: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			return "", fmt.Errorf("%s is dynamically linked (built with CGO on?); the image has no loader: use `make build`", path)
		}
	}
	arch, ok := goArch[f.Machine]
	if !ok || (f.Machine == elf.EM_PPC64 && f.ByteOrder != binary.LittleEndian) {
		return "", errors.New(path + ": unsupported ELF machine " + f.Machine.String())
	}
	return arch, nil
}
