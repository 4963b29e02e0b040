package chart

import (
	"archive/tar"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/kubeftp/ftp-operator/internal/ociimage"
)

// `make image` writes, without a container engine, the image the Dockerfile describes. These
// tests run its recipe (with the outputs moved to a temporary directory) and check the archive
// against the Dockerfile, against what containerd's importer needs, and against itself: two
// runs must give the same bytes.

const testImageRef = "registry.example.com/ftp-operator:test"

// baseImage is what the Dockerfile's runtime base, gcr.io/distroless/static:nonroot, puts in the
// config and the archive reproduces (directives of the Dockerfile's last stage override it).
// The base's SSL_CERT_FILE is left out on purpose, with its CA bundle: the binary verifies no
// public roots (hack/image explains).
var baseImage = v1.Config{
	User:       "65532",
	Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	WorkingDir: "/home/nonroot",
}

// dockerStage is the runtime configuration one stage of the Dockerfile declares.
type dockerStage struct {
	from   string
	config v1.Config
	copies [][2]string // source and destination of each COPY
	run    []string
	// other directives that would change the image, which hack/image does not reproduce
	unsupported []string
}

// parseDockerfile reads the directives this project's Dockerfile uses, stage by stage. It is
// deliberately strict: an ENTRYPOINT or CMD in shell form fails the test, since the image has no
// shell to run it.
func parseDockerfile(t *testing.T, df string) []dockerStage {
	t.Helper()
	df = strings.ReplaceAll(df, "\\\n", " ")
	var stages []dockerStage
	for _, line := range strings.Split(df, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr, args, _ := strings.Cut(line, " ")
		instr, args = strings.ToUpper(instr), strings.TrimSpace(args)
		if instr == "FROM" {
			stages = append(stages, dockerStage{from: strings.Fields(args)[0]})
			continue
		}
		if len(stages) == 0 {
			continue // ARG before the first FROM
		}
		st := &stages[len(stages)-1]
		switch instr {
		case "USER":
			st.config.User = args
		case "WORKDIR":
			st.config.WorkingDir = args
		case "ENTRYPOINT", "CMD":
			var argv []string
			if err := json.Unmarshal([]byte(args), &argv); err != nil {
				t.Fatalf("Dockerfile %s %s: want the exec (JSON) form, the image has no shell: %v", instr, args, err)
			}
			if instr == "ENTRYPOINT" {
				st.config.Entrypoint = argv
			} else {
				st.config.Cmd = argv
			}
		case "ENV":
			for _, kv := range keyValues(t, instr, args) {
				st.config.Env = setEnv(st.config.Env, kv[0], kv[1])
			}
		case "LABEL":
			for _, kv := range keyValues(t, instr, args) {
				if st.config.Labels == nil {
					st.config.Labels = map[string]string{}
				}
				st.config.Labels[kv[0]] = kv[1]
			}
		case "COPY":
			f := slices.DeleteFunc(strings.Fields(args), func(s string) bool { return strings.HasPrefix(s, "--") })
			if len(f) != 2 {
				st.unsupported = append(st.unsupported, line)
				continue
			}
			st.copies = append(st.copies, [2]string{f[0], f[1]})
		case "RUN":
			st.run = append(st.run, args)
		case "ARG":
		default:
			st.unsupported = append(st.unsupported, line)
		}
	}
	return stages
}

// keyValues parses `KEY=VALUE ...` (values optionally double-quoted) and the legacy `KEY VALUE`.
func keyValues(t *testing.T, instr, args string) [][2]string {
	t.Helper()
	if !strings.Contains(strings.Fields(args)[0], "=") {
		k, v, _ := strings.Cut(args, " ")
		return [][2]string{{k, strings.TrimSpace(v)}}
	}
	var out [][2]string
	for _, m := range regexp.MustCompile(`([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)`).FindAllStringSubmatch(args, -1) {
		v := m[2]
		if strings.HasPrefix(v, `"`) {
			if err := json.Unmarshal([]byte(v), &v); err != nil {
				t.Fatalf("Dockerfile %s %s: %v", instr, args, err)
			}
		}
		out = append(out, [2]string{m[1], v})
	}
	return out
}

func setEnv(env []string, key, value string) []string {
	env = slices.DeleteFunc(slices.Clone(env), func(e string) bool { return strings.HasPrefix(e, key+"=") })
	return append(env, key+"="+value)
}

// wantConfig is the config of the image the Dockerfile's last stage describes.
func wantConfig(t *testing.T, last dockerStage) v1.Config {
	t.Helper()
	want := baseImage
	want.Env = slices.Clone(baseImage.Env)
	c := last.config
	if c.User != "" {
		want.User = c.User
	}
	if c.WorkingDir != "" {
		want.WorkingDir = c.WorkingDir
	}
	want.Entrypoint, want.Cmd = c.Entrypoint, c.Cmd
	for _, e := range c.Env {
		k, v, _ := strings.Cut(e, "=")
		want.Env = setEnv(want.Env, k, v)
	}
	if len(c.Labels) > 0 {
		want.Labels = maps.Clone(c.Labels)
	}
	return want
}

// recipe returns the shell lines `make -n target vars...` prints, with each old path of
// replace turned into its new one, so the real recipe writes into a temporary directory.
func recipe(t *testing.T, target string, vars []string, replace ...string) []string {
	t.Helper()
	out := string(run(t, "make", append([]string{"-n", "--no-print-directory", target}, vars...)...))
	r := strings.NewReplacer(replace...)
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		lines = append(lines, r.Replace(l+" "))
	}
	return lines
}

func runLines(t *testing.T, lines []string) {
	t.Helper()
	for _, l := range lines {
		run(t, "bash", "-c", l)
	}
}

// layerFile is one entry of the image's layer.
type layerFile struct {
	typ      byte
	mode     int64
	uid, gid int
}

// readLayer returns the single layer's entries and the content of its regular files.
func readLayer(t *testing.T, img v1.Image) (map[string]layerFile, map[string][]byte) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("want a single layer, got %d (%v)", len(layers), err)
	}
	if mt, _ := layers[0].MediaType(); mt != types.OCILayer {
		t.Errorf("layer media type %s, want %s", mt, types.OCILayer)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files, content := map[string]layerFile{}, map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := "/" + strings.TrimSuffix(hdr.Name, "/")
		if hdr.Uname != "" || hdr.Gname != "" || hdr.ModTime.Unix() != 0 {
			t.Errorf("layer entry %s: owner names %q:%q, mtime %v; want no names and the epoch", name, hdr.Uname, hdr.Gname, hdr.ModTime)
		}
		files[name] = layerFile{hdr.Typeflag, hdr.Mode, hdr.Uid, hdr.Gid}
		if hdr.Typeflag == tar.TypeReg {
			if content[name], err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	return files, content
}

// openArchive unpacks the archive with the system's tar (not our code) and reads the layout
// back with go-containerregistry, validating every digest and size; it returns the one index
// entry and its image.
func openArchive(t *testing.T, archive string) (v1.Descriptor, v1.Image) {
	t.Helper()
	dir := t.TempDir()
	run(t, "tar", "-xf", archive, "-C", dir)
	layoutFile, err := os.ReadFile(filepath.Join(dir, "oci-layout"))
	if err != nil || !strings.Contains(string(layoutFile), `"imageLayoutVersion": "1.0.0"`) {
		t.Fatalf("oci-layout: %s (%v); containerd's importer needs version 1.0.0", layoutFile, err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("the archive does not validate: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("index.json lists %d manifests, want 1", len(im.Manifests))
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return im.Manifests[0], img
}

// checkContainerdName: containerd's importer names the image from io.containerd.image.name (the
// full reference, as kubelet looks it up) and falls back to the OCI ref name (the tag); the
// platform selects it for unpacking on this node.
func checkContainerdName(t *testing.T, desc v1.Descriptor, ref, tag string) {
	t.Helper()
	want := map[string]string{ociimage.AnnotationImageName: ref, ociimage.AnnotationRefName: tag}
	if !reflect.DeepEqual(desc.Annotations, want) {
		t.Errorf("index.json annotations %v, want %v", desc.Annotations, want)
	}
	if desc.MediaType != types.OCIManifestSchema1 {
		t.Errorf("index.json entry media type %s, want %s", desc.MediaType, types.OCIManifestSchema1)
	}
	if desc.Platform == nil || desc.Platform.OS != "linux" || desc.Platform.Architecture != runtime.GOARCH {
		t.Errorf("index.json entry platform %v, want linux/%s", desc.Platform, runtime.GOARCH)
	}
}

// checkStatic fails unless the ELF binary has no interpreter and no dynamic section.
func checkStatic(t *testing.T, name string, data []byte) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: not an ELF binary: %v", name, err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s has program header %v: dynamically linked, and the image has no loader or libc", name, p.Type)
		}
	}
	if f.Section(".dynamic") != nil || f.Section(".interp") != nil {
		t.Errorf("%s has a .dynamic or .interp section", name)
	}
}

// checkOnlyExecutable: the layer's one executable is the entrypoint, so there is no shell
// (nor any other program) to exec into.
func checkOnlyExecutable(t *testing.T, files map[string]layerFile, want string) {
	t.Helper()
	for name, f := range files {
		base := filepath.Base(name)
		if base == "sh" || base == "bash" || base == "busybox" || strings.HasPrefix(name, "/bin") || strings.HasPrefix(name, "/usr") {
			t.Errorf("the image has %s: no shell and no system binaries", name)
		}
		if f.typ == tar.TypeReg && f.mode&0o111 != 0 && name != want {
			t.Errorf("%s is executable; only %s should be", name, want)
		}
	}
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestImageArchive runs `make image`'s recipe twice and checks the archive.
func TestImageArchive(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and the image")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "ftp-operator")
	archives := []string{filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")}
	lines := recipe(t, "image", []string{"IMG=" + testImageRef, "IMAGE_ARCHIVE=" + archives[0]}, "bin/ftp-operator ", bin+" ")
	if len(lines) != 2 || !strings.Contains(lines[0], "go build") || !strings.Contains(lines[1], "./hack/image") {
		t.Fatalf("make image: want the recipe of `make build` and then hack/image, got:\n%s", strings.Join(lines, "\n"))
	}
	build := recipe(t, "build", []string{"IMG=" + testImageRef}, "bin/ftp-operator ", bin+" ")
	if !slices.Equal(build, lines[:1]) {
		t.Errorf("make image builds differently from make build:\n  %s\n  %s", lines[0], build)
	}
	runLines(t, lines)
	// The second write, from the same inputs at another time, into another file.
	time.Sleep(1100 * time.Millisecond)
	runLines(t, []string{strings.Replace(lines[1], archives[0], archives[1], 1)})

	t.Run("reproducible", func(t *testing.T) {
		a, errA := os.ReadFile(archives[0])
		b, errB := os.ReadFile(archives[1])
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("two runs of make image wrote different archives (%d and %d bytes)", len(a), len(b))
		}
	})

	desc, img := openArchive(t, archives[0])
	checkContainerdName(t, desc, testImageRef, "test")
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(t, dockerfile(t))
	last := stages[len(stages)-1]
	files, content := readLayer(t, img)

	t.Run("config matches the Dockerfile", func(t *testing.T) {
		if len(last.unsupported) > 0 {
			t.Errorf("the Dockerfile's runtime stage has directives hack/image does not reproduce (extend it and this test): %q", last.unsupported)
		}
		if want := wantConfig(t, last); !reflect.DeepEqual(cf.Config, want) {
			t.Errorf("image config\n  %+v\nwant (the Dockerfile over its base)\n  %+v", cf.Config, want)
		}
		if cf.OS != "linux" || cf.Architecture != runtime.GOARCH || cf.RootFS.Type != "layers" {
			t.Errorf("config platform %s/%s, rootfs %q", cf.OS, cf.Architecture, cf.RootFS.Type)
		}
		if cf.Created.Unix() != 0 {
			t.Errorf("config created %v, want the epoch (reproducible)", cf.Created)
		}
	})

	// The binary sits where the Dockerfile copies it and was built with the Dockerfile's flags:
	// the Go build info stamped into it records them.
	var binPath string
	for _, c := range last.copies {
		if c[0] == "/out/ftp-operator" {
			binPath = c[1]
		} else {
			t.Errorf("the Dockerfile's runtime stage copies %s to %s, which hack/image does not", c[0], c[1])
		}
	}
	t.Run("binary as the Dockerfile builds it", func(t *testing.T) {
		if binPath == "" {
			t.Fatalf("the Dockerfile's last stage copies no /out/ftp-operator: %+v", last.copies)
		}
		data, ok := content[binPath]
		if !ok {
			t.Fatalf("the layer has no %s", binPath)
		}
		checkStatic(t, binPath, data)
		info, err := buildinfo.Read(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		settings := map[string]string{}
		for _, s := range info.Settings {
			settings[s.Key] = s.Value
		}
		m := regexp.MustCompile(`go build -trimpath -ldflags "([^"]*)"`).FindStringSubmatch(strings.Join(stages[0].run, "\n"))
		if m == nil {
			t.Fatalf("the build stage has no `go build -trimpath -ldflags \"...\"`: %q", stages[0].run)
		}
		for _, tc := range []struct{ key, want string }{
			{"CGO_ENABLED", "0"},
			{"-trimpath", "true"},
		} {
			if settings[tc.key] != tc.want {
				t.Errorf("the image's binary was built with %s=%q, the Dockerfile says %q", tc.key, settings[tc.key], tc.want)
			}
		}
		// Go does not record -ldflags when -trimpath is on, so each flag is checked by its effect.
		f, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		for _, flag := range regexp.MustCompile(`-X \S+|\S+`).FindAllString(m[1], -1) {
			switch flag {
			case "-s":
				if f.Section(".symtab") != nil {
					t.Error("-s: the image's binary has a symbol table")
				}
			case "-w":
				for _, s := range f.Sections {
					if strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
						t.Errorf("-w: the image's binary has DWARF section %s", s.Name)
					}
				}
			case "-X main.defaultDaemonImage=${IMAGE}":
				help := string(run(t, writeTemp(t, "ftp-operator", data), "manager", "--help"))
				if !strings.Contains(help, testImageRef) {
					t.Errorf("%s: manager --help of the image's binary does not show %s:\n%s", flag, testImageRef, help)
				}
			default:
				t.Errorf("the Dockerfile's ldflag %q is not checked here: add a case", flag)
			}
		}
		host, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(host, data) {
			t.Error("the layer's binary differs from the one make build wrote")
		}
	})

	t.Run("files and owners", func(t *testing.T) {
		want := map[string]layerFile{
			"/etc":          {tar.TypeDir, 0o755, 0, 0},
			"/etc/group":    {tar.TypeReg, 0o644, 0, 0},
			"/etc/passwd":   {tar.TypeReg, 0o644, 0, 0},
			binPath:         {tar.TypeReg, 0o755, 0, 0},
			"/home":         {tar.TypeDir, 0o755, 0, 0},
			"/home/nonroot": {tar.TypeDir, 0o700, 65532, 65532},
			"/tmp":          {tar.TypeDir, 0o1777, 0, 0},
		}
		for _, name := range slices.Sorted(maps.Keys(want)) {
			if got, ok := files[name]; !ok {
				t.Errorf("the layer has no %s", name)
			} else if got != want[name] {
				t.Errorf("%s: %+v, want %+v", name, got, want[name])
			}
		}
		for name := range files {
			if _, ok := want[name]; !ok {
				t.Errorf("the layer has an unexpected %s", name)
			}
		}
		checkOnlyExecutable(t, files, binPath)
	})

	// USER is numeric; the accounts files name it as on the base, with the working directory as
	// its home, owned by it.
	t.Run("user accounts", func(t *testing.T) {
		uid, gid, _ := strings.Cut(cf.Config.User, ":")
		for _, tc := range []struct{ file, want string }{
			{"/etc/passwd", "nonroot:x:" + uid + ":" + gid + ":nonroot:" + cf.Config.WorkingDir + ":/sbin/nologin"},
			{"/etc/group", "nonroot:x:" + gid + ":"},
		} {
			if !slices.Contains(strings.Split(string(content[tc.file]), "\n"), tc.want) {
				t.Errorf("%s lacks %q:\n%s", tc.file, tc.want, content[tc.file])
			}
		}
	})
}

// TestPauseImage runs `make pause-image`'s recipe and checks the sandbox image: a static /pause
// as the only file and entrypoint, which exits 0 on SIGTERM and SIGINT.
func TestPauseImage(t *testing.T) {
	dir := t.TempDir()
	const ref = "localhost/ftp-operator/pause:test"
	archive := filepath.Join(dir, "pause.tar")
	runLines(t, recipe(t, "pause-image", []string{"PAUSE_IMG=" + ref, "PAUSE_ARCHIVE=" + archive}, "bin/pause ", filepath.Join(dir, "pause")+" "))

	desc, img := openArchive(t, archive)
	checkContainerdName(t, desc, ref, "test")
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if want := (v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"}); !reflect.DeepEqual(cf.Config, want) {
		t.Errorf("pause config %+v, want %+v", cf.Config, want)
	}
	files, content := readLayer(t, img)
	if want := map[string]layerFile{"/pause": {tar.TypeReg, 0o755, 0, 0}}; !reflect.DeepEqual(files, want) {
		t.Errorf("pause layer %+v, want %+v", files, want)
	}
	checkStatic(t, "/pause", content["/pause"])
	pause := writeTemp(t, "pause", content["/pause"])

	for _, tc := range []struct {
		name string
		sig  syscall.Signal
	}{
		{"SIGTERM", syscall.SIGTERM},
		{"SIGINT", syscall.SIGINT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(pause)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			// It must still be running before the signal: pause blocks.
			select {
			case err := <-done:
				t.Fatalf("pause exited before any signal: %v", err)
			case <-time.After(300 * time.Millisecond):
			}
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("pause after %s: %v, want exit status 0", tc.name, err)
				}
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("pause did not exit within 10s of %s", tc.name)
			}
		})
	}
}
