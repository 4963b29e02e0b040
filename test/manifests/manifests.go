// Package manifests is shared by the packaging tests (test/chart, test/gitops): it parses
// multi-document YAML and applies objects to the test API server with server-side apply, either
// as a dry run (validation only: OpenAPI schema, CEL rules, admission) or for real.
package manifests

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kubeftp/ftp-operator/internal/poll"
)

// FieldOwner is the server-side-apply field manager of the packaging tests.
const FieldOwner = "ftp-operator-packaging-test"

// Parse splits multi-document YAML into objects, skipping empty documents (e.g. a template
// whose condition is off). A List is flattened into its items.
func Parse(data []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var obj map[string]any
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return nil, fmt.Errorf("parse document %d: %w\n%s", len(out)+1, err, doc)
		}
		if len(obj) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.GetAPIVersion() == "" || u.GetKind() == "" {
			return nil, fmt.Errorf("document %d has no apiVersion or kind:\n%s", len(out)+1, doc)
		}
		if u.IsList() {
			list, err := u.ToList()
			if err != nil {
				return nil, err
			}
			for i := range list.Items {
				out = append(out, &list.Items[i])
			}
			continue
		}
		out = append(out, u)
	}
}

// ParseFile reads and parses one file.
func ParseFile(path string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	objs, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return objs, nil
}

// Name is kind/namespace/name, for messages.
func Name(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetKind() + "/" + u.GetName()
	}
	return u.GetKind() + "/" + u.GetNamespace() + "/" + u.GetName()
}

// Apply applies one object with server-side apply (forcing ownership), as a dry run when dryRun
// is set. Server-side apply rejects fields the schema does not declare, so a typo fails.
func Apply(ctx context.Context, c client.Client, u *unstructured.Unstructured, dryRun bool) error {
	obj := u.DeepCopy()
	opts := []client.ApplyOption{client.FieldOwner(FieldOwner), client.ForceOwnership}
	if dryRun {
		opts = append(opts, client.DryRunAll)
	}
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), opts...); err != nil {
		return fmt.Errorf("apply %s: %w", Name(u), err)
	}
	return nil
}

// EnsureNamespaces creates (for real) every Namespace object in objs and every namespace a
// namespaced object in objs names (or defaultNS for those without one, which is also set on
// them). The API server refuses even a dry-run create in a namespace that does not exist.
func EnsureNamespaces(ctx context.Context, c client.Client, objs []*unstructured.Unstructured, defaultNS string) error {
	names := map[string]bool{}
	for _, u := range objs {
		if u.GetKind() == "Namespace" && u.GetAPIVersion() == "v1" {
			names[u.GetName()] = true
			continue
		}
		namespaced, err := c.IsObjectNamespaced(u)
		if err != nil {
			return fmt.Errorf("%s: %w", Name(u), err)
		}
		if !namespaced {
			continue
		}
		if u.GetNamespace() == "" {
			u.SetNamespace(defaultNS)
		}
		names[u.GetNamespace()] = true
	}
	for name := range names {
		ns := &unstructured.Unstructured{}
		ns.SetAPIVersion("v1")
		ns.SetKind("Namespace")
		ns.SetName(name)
		if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s: %w", name, err)
		}
	}
	return nil
}

// DryRunAll makes sure the namespaces exist and dry-runs every object, returning one error per
// rejected object.
func DryRunAll(ctx context.Context, c client.Client, objs []*unstructured.Unstructured, defaultNS string) []error {
	if err := EnsureNamespaces(ctx, c, objs, defaultNS); err != nil {
		return []error{err}
	}
	var errs []error
	for _, u := range objs {
		if u.GetKind() == "Namespace" {
			continue // created for real above
		}
		if err := Apply(ctx, c, u, true); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

var crdDir = func() string {
	_, file, _ := callerFile()
	return filepath.Join(filepath.Dir(file), "crds")
}()

// InstallTestCRDs installs the stand-in CRDs of other projects that example manifests use
// (Prometheus Operator monitors, cert-manager certificates and issuers) and waits until they
// are served. They are this project's own minimal schemas of the fields our manifests use,
// without x-kubernetes-preserve-unknown-fields, so a misspelt field is still rejected; they are
// not the upstream CRDs.
func InstallTestCRDs(ctx context.Context, c client.Client) error {
	files, err := filepath.Glob(filepath.Join(crdDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no test CRDs in %s: %v", crdDir, err)
	}
	var names []string
	for _, f := range files {
		objs, err := ParseFile(f)
		if err != nil {
			return err
		}
		for _, u := range objs {
			if err := Apply(ctx, c, u, false); err != nil {
				return err
			}
			names = append(names, u.GetName())
		}
	}
	for _, name := range names {
		if err := WaitEstablished(ctx, c, name, 30*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// WaitEstablished waits until the API server serves the CRD name.
func WaitEstablished(ctx context.Context, c client.Client, name string, timeout time.Duration) error {
	return poll.Until(ctx, timeout, 100*time.Millisecond, "CRD "+name+" established", func(ctx context.Context) (bool, error) {
		crd := &unstructured.Unstructured{}
		crd.SetAPIVersion("apiextensions.k8s.io/v1")
		crd.SetKind("CustomResourceDefinition")
		if err := c.Get(ctx, types.NamespacedName{Name: name}, crd); err != nil {
			return false, err
		}
		conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
}

// YAMLBlocks returns the fenced ```yaml blocks of a Markdown document with the line each starts
// on and the HTML comment (if any) on the line just before the fence, which tells the docs test
// how to use the block (e.g. "<!-- helm-values -->").
func YAMLBlocks(markdown string) []Block {
	var blocks []Block
	lines := strings.Split(markdown, "\n")
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```yaml" {
			continue
		}
		b := Block{Line: i + 1}
		for j := i - 1; j >= 0; j-- {
			l := strings.TrimSpace(lines[j])
			if l == "" {
				continue
			}
			if strings.HasPrefix(l, "<!--") && strings.HasSuffix(l, "-->") {
				b.Marker = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(l, "<!--"), "-->"))
			}
			break
		}
		var body []string
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			body = append(body, lines[i])
		}
		b.Text = strings.Join(body, "\n") + "\n"
		blocks = append(blocks, b)
	}
	return blocks
}

// Block is one fenced YAML block of a Markdown document.
type Block struct {
	Line   int
	Marker string
	Text   string
}
