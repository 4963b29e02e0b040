// Package ociimage writes a single-layer container image as an OCI image layout packed in a tar
// archive, without a container engine, so that `ctr images import` (containerd) can load it.
//
// The image format (layer digests, config, manifest, index, oci-layout) comes from
// go-containerregistry; this package only decides what goes into the one layer and packs the
// layout directory the library wrote into a tar. Everything that could vary between two runs is
// fixed: timestamps are Created (the Unix epoch by default), entries are sorted, owners are the
// ones the spec names (never the host's) and no user or group names are recorded.
package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations on the index entry that name the image. containerd's importer prefers
// AnnotationImageName (the full reference) and falls back to the OCI ref name, which by the OCI
// convention (and containerd's own exporter) holds only the tag.
const (
	AnnotationImageName = "io.containerd.image.name"
	AnnotationRefName   = "org.opencontainers.image.ref.name"
)

// Spec describes the image: its one layer and its runtime configuration.
type Spec struct {
	// Ref is the full image reference with a tag, e.g. "ghcr.io/kubeftp/ftp-operator:dev". It must
	// name its registry explicitly (a domain with a dot or port, or localhost): containerd stores
	// the annotation as given, and the kubelet looks images up by the normalized name.
	Ref string
	// Files are placed in the single layer. Missing parent directories are added, owned by root
	// with mode 0755.
	Files      []File
	Entrypoint []string
	Cmd        []string
	User       string // "uid:gid", as in a Dockerfile USER line
	Env        []string
	WorkingDir string
	Labels     map[string]string
	// OS and Architecture of the image's platform; empty means linux and amd64 respectively.
	OS           string
	Architecture string
	// Created stamps the config, the history and every file; the zero value means the Unix epoch,
	// so the archive depends on its inputs only.
	Created time.Time
}

// File is one entry of the layer: a regular file (from Source or Data) or, when Mode has
// fs.ModeDir, a directory.
type File struct {
	Path   string      // absolute path in the image, e.g. "/ftp-operator"
	Mode   fs.FileMode // permission bits plus fs.ModeDir, fs.ModeSticky, fs.ModeSetuid, fs.ModeSetgid
	UID    int
	GID    int
	Source string // host file whose content is copied (its mode and owner are not)
	Data   []byte // the content when Source is empty
}

// Write writes the image described by spec to archivePath as a tar of an OCI image layout. The
// archive appears atomically: it is written to a temporary file beside archivePath and renamed.
func Write(archivePath string, spec Spec) error {
	img, desc, err := build(spec)
	if err != nil {
		return err
	}
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img, Descriptor: desc})

	// The library writes layouts to directories; the directory is packed into the archive below.
	dir, err := os.MkdirTemp("", "ociimage-layout-")
	if err != nil {
		return fmt.Errorf("creating a temporary layout directory: %w", err)
	}
	defer os.RemoveAll(dir)
	if _, err := layout.Write(dir, idx); err != nil {
		return fmt.Errorf("writing the OCI layout of %s: %w", spec.Ref, err)
	}

	tmp, err := os.CreateTemp(filepath.Dir(archivePath), "."+filepath.Base(archivePath)+".tmp-")
	if err != nil {
		return fmt.Errorf("creating the archive: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if err := packDir(tmp, dir); err != nil {
		tmp.Close()
		return fmt.Errorf("packing the OCI layout into %s: %w", archivePath, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("setting the archive's mode: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("syncing the archive: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing the archive: %w", err)
	}
	if err := os.Rename(tmp.Name(), archivePath); err != nil {
		return fmt.Errorf("moving the archive into place: %w", err)
	}
	return nil
}

// build makes the image and the index descriptor that names it.
func build(spec Spec) (v1.Image, v1.Descriptor, error) {
	tag, err := parseRef(spec.Ref)
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	created := spec.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	created = created.UTC()
	platform := v1.Platform{OS: orDefault(spec.OS, "linux"), Architecture: orDefault(spec.Architecture, "amd64")}

	entries, err := layerEntries(spec)
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	layerTar, err := layerTar(entries, created)
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	layer, err := tarball.LayerFromOpener(
		func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil },
		tarball.WithMediaType(types.OCILayer),
		tarball.WithCompressionLevel(gzip.BestCompression),
		// Compress once: the layout writer asks for the digest and then the bytes.
		tarball.WithCompressedCaching,
	)
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("making the layer of %s: %w", spec.Ref, err)
	}

	cfg := &v1.ConfigFile{
		Created:      v1.Time{Time: created},
		OS:           platform.OS,
		Architecture: platform.Architecture,
		// mutate.Append fills in the diff IDs; the type is what readers check.
		RootFS: v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Entrypoint: spec.Entrypoint,
			Cmd:        spec.Cmd,
			User:       spec.User,
			Env:        spec.Env,
			WorkingDir: spec.WorkingDir,
			Labels:     spec.Labels,
		},
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	base, err = mutate.ConfigFile(base, cfg)
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("setting the config of %s: %w", spec.Ref, err)
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "ociimage.Write", Comment: spec.Ref},
	})
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("adding the layer to %s: %w", spec.Ref, err)
	}
	return img, v1.Descriptor{
		Platform: &platform,
		Annotations: map[string]string{
			AnnotationImageName: spec.Ref,
			AnnotationRefName:   tag.TagStr(),
		},
	}, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// parseRef accepts only references that containerd and the kubelet spell the same way: an
// explicit registry, the full repository path and a tag. "ftp-operator:dev" would be stored as
// given but looked up as docker.io/library/ftp-operator:dev, and never found.
func parseRef(ref string) (name.Tag, error) {
	if strings.Contains(ref, "@") {
		return name.Tag{}, fmt.Errorf("image reference %q: a tag, not a digest, is needed to name an imported image", ref)
	}
	domain, _, _ := strings.Cut(ref, "/")
	if !strings.Contains(ref, "/") || (!strings.ContainsAny(domain, ".:") && domain != "localhost") {
		return name.Tag{}, fmt.Errorf("image reference %q: name the registry explicitly (e.g. localhost/%s), as containerd stores the name verbatim", ref, ref)
	}
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image reference %q: %w", ref, err)
	}
	return tag, nil
}

// entry is one validated layer entry, with its path relative to the root.
type entry struct {
	File
	rel string
}

// layerEntries validates the files, adds the missing parent directories and sorts the result,
// so that every directory precedes its contents and the order never depends on the caller's.
func layerEntries(spec Spec) ([]entry, error) {
	byPath := map[string]entry{}
	for _, f := range spec.Files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			return nil, fmt.Errorf("layer file %q: want a clean absolute path below /", f.Path)
		}
		if f.Mode&^(fs.ModePerm|fs.ModeDir|fs.ModeSticky|fs.ModeSetuid|fs.ModeSetgid) != 0 {
			return nil, fmt.Errorf("layer file %s: mode %v: only regular files and directories are supported", f.Path, f.Mode)
		}
		if f.UID < 0 || f.GID < 0 {
			return nil, fmt.Errorf("layer file %s: negative owner %d:%d", f.Path, f.UID, f.GID)
		}
		if f.Mode.IsDir() && (f.Source != "" || f.Data != nil) {
			return nil, fmt.Errorf("layer directory %s has content", f.Path)
		}
		if f.Source != "" && f.Data != nil {
			return nil, fmt.Errorf("layer file %s has both Source and Data", f.Path)
		}
		if _, dup := byPath[f.Path]; dup {
			return nil, fmt.Errorf("layer file %s is listed twice", f.Path)
		}
		byPath[f.Path] = entry{File: f, rel: strings.TrimPrefix(f.Path, "/")}
	}
	for _, f := range spec.Files {
		for dir := path.Dir(f.Path); dir != "/"; dir = path.Dir(dir) {
			parent, ok := byPath[dir]
			if !ok {
				byPath[dir] = entry{File: File{Path: dir, Mode: fs.ModeDir | 0o755}, rel: strings.TrimPrefix(dir, "/")}
				continue
			}
			if !parent.Mode.IsDir() {
				return nil, fmt.Errorf("layer file %s is below %s, which is not a directory", f.Path, dir)
			}
		}
	}
	entries := make([]entry, 0, len(byPath))
	for _, e := range byPath {
		entries = append(entries, e)
	}
	// Sorting by path puts "a" before "a/b"; "a-b" sorts before "a/b" too, which unpackers accept
	// since "a" was already created.
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.rel, b.rel) })

	for _, argv0 := range [][]string{spec.Entrypoint, spec.Cmd} {
		if len(argv0) == 0 {
			continue
		}
		e, ok := byPath[argv0[0]]
		if !ok || e.Mode.IsDir() || e.Mode&0o111 == 0 {
			return nil, fmt.Errorf("the image would run %s, which is not an executable file of its layer", argv0[0])
		}
		break // with an entrypoint, Cmd holds its arguments
	}
	return entries, nil
}

// layerTar is the uncompressed layer: the entries with the spec's owners and modes, Created as
// every timestamp, and no user or group names.
func layerTar(entries []entry, created time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{
			Name:    e.rel,
			Mode:    tarMode(e.Mode),
			Uid:     e.UID,
			Gid:     e.GID,
			ModTime: created,
			Format:  tar.FormatPAX,
		}
		var content []byte
		switch {
		case e.Mode.IsDir():
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case e.Source != "":
			data, err := os.ReadFile(e.Source)
			if err != nil {
				return nil, fmt.Errorf("reading layer file %s: %w", e.Path, err)
			}
			content = data
		default:
			content = e.Data
		}
		if !e.Mode.IsDir() {
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(content))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("writing the layer entry of %s: %w", e.Path, err)
		}
		if _, err := tw.Write(content); err != nil {
			return nil, fmt.Errorf("writing the layer content of %s: %w", e.Path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing the layer: %w", err)
	}
	return buf.Bytes(), nil
}

// tarMode converts Go's file mode bits to the tar (and chmod) bits.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// packDir writes the layout directory as a tar: entries sorted (WalkDir walks in lexical order),
// owned by 0:0, fixed modes and the epoch as mtime, so only the content decides the bytes.
func packDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		switch {
		case d.IsDir():
			hdr.Typeflag, hdr.Mode, hdr.Name = tar.TypeDir, 0o755, hdr.Name+"/"
			return tw.WriteHeader(hdr)
		case d.Type().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, int64(len(data))
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			_, err = tw.Write(data)
			return err
		default:
			return fmt.Errorf("%s: unexpected file type %v in the layout", rel, d.Type())
		}
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// Open unpacks an archive written by Write into dir (which should be empty) and returns its
// index, read back by go-containerregistry; tests and callers inspect images through it.
func Open(archivePath, dir string) (v1.ImageIndex, error) {
	f, err := os.Open(archivePath)
	if err != nil {
		return nil, fmt.Errorf("opening the image archive: %w", err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", archivePath, err)
		}
		// Only the names an OCI layout has, so a hostile archive cannot write outside dir.
		clean := path.Clean(hdr.Name)
		if !isLayoutName(clean) {
			return nil, fmt.Errorf("%s: unexpected entry %q in an OCI layout", archivePath, hdr.Name)
		}
		target := filepath.Join(dir, filepath.FromSlash(clean))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return nil, fmt.Errorf("unpacking %s: %w", hdr.Name, err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return nil, fmt.Errorf("unpacking %s: %w", hdr.Name, err)
			}
			out, err := os.Create(target)
			if err != nil {
				return nil, fmt.Errorf("unpacking %s: %w", hdr.Name, err)
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, fmt.Errorf("unpacking %s: %w", hdr.Name, err)
			}
		default:
			return nil, fmt.Errorf("%s: entry %q has type %q; an OCI layout has only files and directories", archivePath, hdr.Name, hdr.Typeflag)
		}
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the OCI layout of %s: %w", archivePath, err)
	}
	return idx, nil
}

func isLayoutName(p string) bool {
	switch p {
	case "oci-layout", "index.json", "blobs", "blobs/sha256":
		return true
	}
	hex, ok := strings.CutPrefix(p, "blobs/sha256/")
	return ok && len(hex) == 64 && strings.Trim(hex, "0123456789abcdef") == ""
}
