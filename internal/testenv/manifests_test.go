package testenv

import (
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// TestFilesServerManifest renders the shared e2e manifest: two documents, the FTPServer on the
// given control port and drain timeout.
func TestFilesServerManifest(t *testing.T) {
	m, err := FilesServerManifest(2121, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(m), "\n---\n")
	if len(docs) != 2 {
		t.Fatalf("%d documents, want the Secret and the FTPServer", len(docs))
	}
	var server struct {
		Kind string
		Spec struct {
			Ports        struct{ Control int32 }
			DrainTimeout string `json:"drainTimeout"`
		}
	}
	if err := yaml.Unmarshal([]byte(docs[1]), &server); err != nil {
		t.Fatal(err)
	}
	if server.Kind != "FTPServer" || server.Spec.Ports.Control != 2121 || server.Spec.DrainTimeout != "20s" {
		t.Fatalf("rendered %+v", server)
	}
}
