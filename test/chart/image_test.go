package chart

import (
	"debug/elf"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The image cannot be built here (no container engine), so these tests pin what can be checked
// without one: the Dockerfile builds the binary exactly as `make build` does, that binary is
// static and runs both subcommands, and the runtime stage is a non-root static base.

func dockerfile(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repo, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestDockerfileBuildsLikeMake: the go build line of the Dockerfile uses the flags of the
// Makefile's GO_BUILD_FLAGS, with CGO off, and the image reference stamped in.
func TestDockerfileBuildsLikeMake(t *testing.T) {
	df := dockerfile(t)
	m := regexp.MustCompile(`(?m)^RUN (.*go build .*)$`).FindStringSubmatch(df)
	if m == nil {
		t.Fatal("Dockerfile has no `RUN ... go build` line")
	}
	build := m[1]
	// make -n prints the recipe with the variables expanded; IMG is set to the Dockerfile's
	// build argument reference so both lines can be compared word for word.
	out := string(run(t, "make", "-n", "--no-print-directory", "build", "IMG=$${IMAGE}"))
	var makeLine string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "go build") {
			makeLine = l
		}
	}
	if makeLine == "" {
		t.Fatalf("make -n build printed no go build line:\n%s", out)
	}
	norm := func(s string) string {
		s = regexp.MustCompile(`-o \S+`).ReplaceAllString(s, "-o OUT")
		return strings.Join(strings.Fields(s), " ")
	}
	if norm(build) != norm(makeLine) {
		t.Errorf("the Dockerfile and `make build` build differently:\n  Dockerfile: %s\n  make build: %s", norm(build), norm(makeLine))
	}
	if !strings.Contains(build, "CGO_ENABLED=0") {
		t.Error("the Dockerfile must build with CGO_ENABLED=0 (a static binary for a distroless/static base)")
	}
}

// TestDockerfileRuntimeStage: non-root static base, numeric non-root user, the binary as the
// entrypoint (so `manager` and `ftpd` are its arguments), and every source directory the
// build copies present and not excluded by .dockerignore.
func TestDockerfileRuntimeStage(t *testing.T) {
	df := dockerfile(t)
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if len(froms) < 2 {
		t.Fatalf("want a multi-stage build, found %d FROM lines", len(froms))
	}
	final := froms[len(froms)-1][1]
	if !strings.HasPrefix(final, "gcr.io/distroless/static") || !strings.Contains(final, "nonroot") {
		t.Errorf("runtime base %s: want gcr.io/distroless/static...:nonroot", final)
	}
	if !regexp.MustCompile(`(?m)^USER 65532:65532$`).MatchString(df) {
		t.Error("the runtime stage must run as USER 65532:65532 (the operator's daemon pods use the same UID)")
	}
	if !regexp.MustCompile(`(?m)^ENTRYPOINT \["/ftp-operator"\]$`).MatchString(df) {
		t.Error(`want ENTRYPOINT ["/ftp-operator"], so the pod's args select manager or ftpd`)
	}
	ignore, err := os.ReadFile(filepath.Join(repo, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	ignored := strings.Fields(string(ignore))
	for _, m := range regexp.MustCompile(`(?m)^COPY (\S+) `).FindAllStringSubmatch(df, -1) {
		src := m[1]
		if strings.HasPrefix(src, "--") {
			continue
		}
		if _, err := os.Stat(filepath.Join(repo, src)); err != nil {
			t.Errorf("the Dockerfile copies %s, which does not exist", src)
		}
		for _, ig := range ignored {
			if strings.TrimSuffix(ig, "/") == strings.TrimSuffix(src, "/") {
				t.Errorf("the Dockerfile copies %s, which .dockerignore excludes", src)
			}
		}
	}
	// Every package the binary needs must be copied: the directories of the module's
	// non-test packages that ./cmd imports.
	out := string(run(t, "go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", "./cmd"))
	for _, dir := range strings.Fields(out) {
		rel, err := filepath.Rel(repo, dir)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // a module dependency, downloaded in the image
		}
		top := strings.Split(rel, string(filepath.Separator))[0] + "/"
		if !strings.Contains(df, "COPY "+top+" ") {
			t.Errorf("./cmd needs package %s but the Dockerfile does not COPY %s", rel, top)
		}
	}
}

// TestMakeBuildIsStatic builds the binary as the image does and checks that it is static and
// runs both subcommands with the daemon image stamped in.
func TestMakeBuildIsStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	out := filepath.Join(t.TempDir(), "ftp-operator")
	// The recipe of `make build` with another output path, so the work tree's bin/ is untouched.
	recipe := string(run(t, "make", "-n", "--no-print-directory", "build", "IMG=registry.example.com/ftp-operator:test"))
	var line string
	for _, l := range strings.Split(recipe, "\n") {
		if strings.Contains(l, "go build") {
			line = l
		}
	}
	line = strings.Replace(line, "-o bin/ftp-operator", "-o "+out, 1)
	run(t, "bash", "-c", line)

	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has an ELF interpreter: it is dynamically linked (CGO on?) and would not run on distroless/static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary links shared libraries %v", libs)
	}
	help := string(run(t, out, "manager", "--help"))
	if !strings.Contains(help, "registry.example.com/ftp-operator:test") {
		t.Errorf("manager --help does not show the stamped default daemon image:\n%s", help)
	}
	run(t, out, "ftpd", "--help")
}
