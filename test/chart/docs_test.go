package chart

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubeftp/ftp-operator/test/manifests"
)

// documents whose YAML examples must all work. Each ```yaml block is used according to the HTML
// comment on the line before it:
//
//	(none)                    Kubernetes objects: applied with server-side dry-run
//	<!-- sample: PATH -->     must equal the file PATH (a config/samples file, applied too)
//	<!-- helm-values -->      values for the chart: rendered with helm and applied
//	<!-- file: PATH -->       must equal the file PATH (e.g. the Argo CD health check); not applied
var documents = []string{"docs/install.md", "docs/user-guide.md", "charts/ftp-operator/README.md"}

func TestDocsExamples(t *testing.T) {
	e := requireEnv(t)
	helm := tool(t, "HELM")
	lua, err := os.ReadFile(filepath.Join(chartPath, "files", "argocd-health.lua"))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range documents {
		data, err := os.ReadFile(filepath.Join(repo, doc))
		if err != nil {
			t.Fatal(err)
		}
		blocks := manifests.YAMLBlocks(string(data))
		for _, b := range blocks {
			t.Run(filepath.Base(doc)+":"+itoa(b.Line), func(t *testing.T) {
				kind, arg, _ := strings.Cut(b.Marker, ":")
				arg = strings.TrimSpace(arg)
				switch strings.TrimSpace(kind) {
				case "sample", "file":
					want, err := os.ReadFile(filepath.Join(repo, arg))
					if err != nil {
						t.Fatalf("the block names %s: %v", arg, err)
					}
					if strings.TrimSpace(string(want)) != strings.TrimSpace(b.Text) {
						t.Fatalf("the block differs from %s: copy the file into the document again", arg)
					}
					if kind == "file" {
						return
					}
					objs, err := manifests.ParseFile(filepath.Join(repo, arg))
					if err != nil {
						t.Fatal(err)
					}
					dryRun(t, e, objs, "docs")
				case "helm-values":
					values := filepath.Join(t.TempDir(), "values.yaml")
					if err := os.WriteFile(values, []byte(b.Text), 0o644); err != nil {
						t.Fatal(err)
					}
					dryRun(t, e, render(t, helm, "-f", values), "ftp-operator-system")
				case "":
					objs, err := manifests.Parse([]byte(b.Text))
					if err != nil {
						t.Fatal(err)
					}
					for _, u := range objs {
						// The Argo CD ConfigMap example must carry the shipped health check.
						if u.GetKind() == "ConfigMap" && u.GetName() == "argocd-cm" {
							data, _, _ := unstructuredString(u.Object, "data", "resource.customizations.health.ftp.kubeftp.dev_FTPServer")
							if strings.TrimSpace(data) != strings.TrimSpace(string(lua)) {
								t.Error("the argocd-cm example does not carry charts/ftp-operator/files/argocd-health.lua verbatim")
							}
						}
					}
					dryRun(t, e, objs, "docs")
				default:
					t.Fatalf("unknown marker <!-- %s -->", b.Marker)
				}
			})
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func unstructuredString(obj map[string]any, fields ...string) (string, bool, error) {
	return unstructured.NestedString(obj, fields...)
}
