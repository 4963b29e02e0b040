package testenv

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"text/template"
	"time"
)

// FilesServerManifest is the end-to-end tests' FTPServer "files" and its password Secret
// (test/e2e/testdata/files-server.yaml), with the given control port and drain timeout: the one
// definition the e2e suite and the real node's tests share.
func FilesServerManifest(control int32, drain time.Duration) ([]byte, error) {
	path := filepath.Join(RepoRoot(), "test", "e2e", "testdata", "files-server.yaml")
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	tmpl, err := template.New(filepath.Base(path)).Option("missingkey=error").Parse(string(text))
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, struct {
		Control      int32
		DrainTimeout string
	}{control, drain.String()}); err != nil {
		return nil, fmt.Errorf("render %s: %w", path, err)
	}
	return out.Bytes(), nil
}
