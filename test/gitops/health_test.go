package gitops

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

var healthScript = filepath.Join(repo, "charts", "ftp-operator", "files", "argocd-health.lua")

type healthStatus struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// argoHealth runs the health check on obj the way Argo CD does: obj is a global table built
// from the object's JSON, and the script returns {status, message}.
func argoHealth(t *testing.T, obj map[string]any) healthStatus {
	t.Helper()
	script, err := os.ReadFile(healthScript)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("obj = ")
	writeLua(&b, obj)
	b.WriteString("\nlocal function check()\n")
	b.Write(script)
	b.WriteString("\nend\nlocal hs = check()\nio.write(hs.status, \"\\n\", hs.message or \"\")\n")
	cmd := exec.Command(lua(t), "-")
	cmd.Stdin = strings.NewReader(b.String())
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("lua: %v\n%s", err, stderr.String())
	}
	status, message, _ := strings.Cut(out.String(), "\n")
	return healthStatus{Status: status, Message: message}
}

// writeLua writes a JSON-like value as a Lua table constructor, as Argo CD's conversion
// does: objects become tables keyed by strings, arrays 1-based sequences, null nil.
func writeLua(b *strings.Builder, v any) {
	switch v := v.(type) {
	case nil:
		b.WriteString("nil")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case string:
		b.WriteString(luaString(v))
	case int64:
		b.WriteString(strconv.FormatInt(v, 10))
	case int:
		b.WriteString(strconv.Itoa(v))
	case float64:
		b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("{")
		for _, k := range keys {
			b.WriteString("[" + luaString(k) + "]=")
			writeLua(b, v[k])
			b.WriteString(",")
		}
		b.WriteString("}")
	case []any:
		b.WriteString("{")
		for _, e := range v {
			writeLua(b, e)
			b.WriteString(",")
		}
		b.WriteString("}")
	default:
		panic(fmt.Sprintf("writeLua: unexpected %T", v))
	}
}

func luaString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range []byte(s) {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func kstatusOf(t *testing.T, obj map[string]any) *status.Result {
	t.Helper()
	res, err := status.Compute(&unstructured.Unstructured{Object: obj})
	if err != nil {
		t.Fatalf("kstatus: %v", err)
	}
	return res
}

type healthCase struct {
	InputPath    string       `json:"inputPath"`
	HealthStatus healthStatus `json:"healthStatus"`
	Kstatus      string       `json:"kstatus"`
}

func loadObject(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Through JSON into Unstructured, as the API machinery decodes objects: integers stay int64.
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(js); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return u.Object
}

// TestHealthCases runs every case of testdata/argocd-health-tests.yaml through the Argo CD
// health check and kstatus.
func TestHealthCases(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "argocd-health-tests.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var suite struct {
		Tests []healthCase `json:"tests"`
	}
	if err := yaml.Unmarshal(data, &suite); err != nil {
		t.Fatal(err)
	}
	if len(suite.Tests) < 6 {
		t.Fatalf("only %d cases", len(suite.Tests))
	}
	for _, c := range suite.Tests {
		t.Run(strings.TrimSuffix(filepath.Base(c.InputPath), ".yaml"), func(t *testing.T) {
			obj := loadObject(t, filepath.Join("testdata", c.InputPath))
			if got := kstatusOf(t, obj); string(got.Status) != c.Kstatus {
				t.Errorf("kstatus: %s (%s), want %s", got.Status, got.Message, c.Kstatus)
			}
			if got := argoHealth(t, obj); got != c.HealthStatus {
				t.Errorf("Argo CD health:\n got  %+v\n want %+v", got, c.HealthStatus)
			}
		})
	}
}
