package ociimage

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// smallSpec is an image with a generated file, a file copied from the host, an explicit
// directory, a sticky directory and an implied parent.
func smallSpec(t *testing.T) Spec {
	t.Helper()
	src := filepath.Join(t.TempDir(), "tool")
	if err := os.WriteFile(src, []byte("#!not really\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return Spec{
		Ref: "localhost/ociimage/test:v1",
		Files: []File{
			{Path: "/usr/bin/tool", Mode: 0o755, Source: src},
			{Path: "/etc/passwd", Mode: 0o644, Data: []byte("nonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n")},
			{Path: "/home/nonroot", Mode: fs.ModeDir | 0o700, UID: 65532, GID: 65532},
			{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		},
		Entrypoint: []string{"/usr/bin/tool"},
		Cmd:        []string{"--help"},
		User:       "65532:65532",
		Env:        []string{"PATH=/usr/bin"},
		WorkingDir: "/home/nonroot",
		Labels:     map[string]string{"org.opencontainers.image.source": "https://example.com/x"},
		// Reordering Files must not change the archive; the host file's mode (0600) must not leak.
	}
}

type layerEntry struct {
	typ      byte
	mode     int64
	uid, gid int
	uname    string
	gname    string
	mtime    time.Time
	content  string
}

// layerOf returns the entries of the image's only layer, by name.
func layerOf(t *testing.T, img v1.Image) (names []string, entries map[string]layerEntry) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("want one layer, got %d (%v)", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	entries = map[string]layerEntry{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		entries[hdr.Name] = layerEntry{hdr.Typeflag, hdr.Mode, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname, hdr.ModTime.UTC(), string(data)}
	}
	return names, entries
}

func openImage(t *testing.T, archive string) (v1.Descriptor, v1.Image) {
	t.Helper()
	idx, err := Open(archive, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("the index does not validate: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("want one manifest in index.json, got %d", len(im.Manifests))
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return im.Manifests[0], img
}

func TestImageWrite(t *testing.T) {
	spec := smallSpec(t)
	archive := filepath.Join(t.TempDir(), "image.tar")
	if err := Write(archive, spec); err != nil {
		t.Fatal(err)
	}
	desc, img := openImage(t, archive)

	if got, want := desc.Annotations, map[string]string{AnnotationImageName: spec.Ref, AnnotationRefName: "v1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("index annotations %v, want %v", got, want)
	}
	if desc.MediaType != types.OCIManifestSchema1 || desc.Platform == nil || desc.Platform.OS != "linux" || desc.Platform.Architecture != "amd64" {
		t.Errorf("index entry: media type %s, platform %v; want an OCI manifest for linux/amd64", desc.MediaType, desc.Platform)
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s", mt)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	wantCfg := v1.Config{
		Entrypoint: spec.Entrypoint, Cmd: spec.Cmd, User: spec.User, Env: spec.Env,
		WorkingDir: spec.WorkingDir, Labels: spec.Labels,
	}
	if !reflect.DeepEqual(cf.Config, wantCfg) {
		t.Errorf("config %+v\nwant %+v", cf.Config, wantCfg)
	}
	epoch := time.Unix(0, 0).UTC()
	if !cf.Created.Equal(epoch) || len(cf.History) != 1 || !cf.History[0].Created.Equal(epoch) {
		t.Errorf("created %v, history %+v: want the epoch everywhere", cf.Created, cf.History)
	}

	names, entries := layerOf(t, img)
	wantNames := []string{"etc/", "etc/passwd", "home/", "home/nonroot/", "tmp/", "usr/", "usr/bin/", "usr/bin/tool"}
	if !reflect.DeepEqual(names, wantNames) {
		t.Errorf("layer entries %q, want %q (sorted, parents first)", names, wantNames)
	}
	for _, tc := range []struct {
		name     string
		typ      byte
		mode     int64
		uid, gid int
		content  string
	}{
		{"usr/", tar.TypeDir, 0o755, 0, 0, ""},
		{"usr/bin/tool", tar.TypeReg, 0o755, 0, 0, "#!not really\n"},
		{"etc/passwd", tar.TypeReg, 0o644, 0, 0, "nonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n"},
		{"home/nonroot/", tar.TypeDir, 0o700, 65532, 65532, ""},
		{"tmp/", tar.TypeDir, 0o1777, 0, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, ok := entries[tc.name]
			if !ok {
				t.Fatal("missing from the layer")
			}
			want := layerEntry{tc.typ, tc.mode, tc.uid, tc.gid, "", "", epoch, tc.content}
			if e != want {
				t.Errorf("got %+v, want %+v", e, want)
			}
		})
	}
}

// TestImageWriteReproducible: the same spec gives the same bytes, whatever the order of Files, the
// time of day or the host file's timestamps.
func TestImageWriteReproducible(t *testing.T) {
	dir := t.TempDir()
	spec := smallSpec(t)
	first := filepath.Join(dir, "a.tar")
	if err := Write(first, spec); err != nil {
		t.Fatal(err)
	}
	for i, j := 0, len(spec.Files)-1; i < j; i, j = i+1, j-1 {
		spec.Files[i], spec.Files[j] = spec.Files[j], spec.Files[i]
	}
	future := time.Now().Add(48 * time.Hour)
	if err := os.Chtimes(spec.Files[len(spec.Files)-1].Source, future, future); err != nil {
		t.Fatal(err)
	}
	second := filepath.Join(dir, "b.tar")
	if err := Write(second, spec); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(first)
	b, _ := os.ReadFile(second)
	if !bytes.Equal(a, b) {
		t.Fatalf("two writes differ (%d and %d bytes)", len(a), len(b))
	}

	// The archive itself: sorted layout entries, root-owned, epoch mtime.
	tr := tar.NewReader(bytes.NewReader(a))
	var names []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		if hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" || hdr.ModTime.Unix() != 0 {
			t.Errorf("%s: owner %d:%d (%q:%q), mtime %v; want 0:0, no names, the epoch", hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname, hdr.ModTime)
		}
	}
	if len(names) < 5 || names[0] != "blobs/" || names[1] != "blobs/sha256/" || names[len(names)-2] != "index.json" || names[len(names)-1] != "oci-layout" {
		t.Errorf("archive entries %q: want blobs/, blobs/sha256/, the blobs, index.json, oci-layout", names)
	}
}

func TestImageWriteRejects(t *testing.T) {
	valid := smallSpec
	for _, tc := range []struct {
		name   string
		change func(*Spec)
		want   string
	}{
		{"no registry", func(s *Spec) { s.Ref = "ociimage/test:v1" }, "name the registry"},
		{"docker hub short name", func(s *Spec) { s.Ref = "docker.io/test:v1" }, "library"},
		{"no tag", func(s *Spec) { s.Ref = "localhost/ociimage/test" }, "image reference"},
		{"digest", func(s *Spec) { s.Ref = "localhost/ociimage/test@sha256:" + strings.Repeat("0", 64) }, "a tag, not a digest"},
		{"relative path", func(s *Spec) { s.Files[0].Path = "usr/bin/tool" }, "clean absolute path"},
		{"unclean path", func(s *Spec) { s.Files[0].Path = "/usr/../bin/tool" }, "clean absolute path"},
		{"symlink", func(s *Spec) { s.Files[0].Mode |= fs.ModeSymlink }, "only regular files and directories"},
		{"duplicate", func(s *Spec) { s.Files = append(s.Files, s.Files[0]) }, "listed twice"},
		{"file as parent", func(s *Spec) { s.Files = append(s.Files, File{Path: "/etc/passwd/x", Mode: 0o644}) }, "not a directory"},
		{"entrypoint missing", func(s *Spec) { s.Entrypoint = []string{"/bin/sh"} }, "not an executable file"},
		{"entrypoint not executable", func(s *Spec) { s.Entrypoint = []string{"/etc/passwd"} }, "not an executable file"},
		{"missing source", func(s *Spec) { s.Files[0].Source = filepath.Join(t.TempDir(), "nope") }, "reading layer file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := valid(t)
			tc.change(&spec)
			archive := filepath.Join(t.TempDir(), "image.tar")
			err := Write(archive, spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Write: %v, want an error containing %q", err, tc.want)
			}
			if _, statErr := os.Stat(archive); !errors.Is(statErr, fs.ErrNotExist) {
				t.Errorf("a failed Write left %s behind (%v)", archive, statErr)
			}
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(archive), ".*tmp-*")); len(left) > 0 {
				t.Errorf("a failed Write left temporary files: %v", left)
			}
		})
	}
}

// TestImageOpenRejectsForeignEntries: Open unpacks only what an OCI layout holds.
func TestImageOpenRejectsForeignEntries(t *testing.T) {
	for _, name := range []string{"../escape", "/etc/passwd", "blobs/sha256/../../x", "blobs/md5/abc"} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644}); err != nil {
				t.Fatal(err)
			}
			if err := tw.Close(); err != nil {
				t.Fatal(err)
			}
			archive := filepath.Join(t.TempDir(), "bad.tar")
			if err := os.WriteFile(archive, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(archive, t.TempDir()); err == nil || !strings.Contains(err.Error(), "unexpected entry") {
				t.Errorf("Open: %v, want an unexpected-entry error", err)
			}
		})
	}
}
