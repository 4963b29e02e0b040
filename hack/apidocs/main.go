// Command apidocs writes docs/api.md from the Go types of an API package: one table per struct
// with every field's JSON name, type, default, validation markers and doc comment. Generating the
// reference from the code keeps it from drifting; `make verify` checks that it is current.
//
// Usage: go run ./hack/apidocs api/v1alpha1 > docs/api.md
package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: apidocs DIR")
		os.Exit(2)
	}
	types, err := loadTypes(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "apidocs:", err)
		os.Exit(1)
	}
	render(os.Stdout, types)
}

// apiType is a documented struct or string enum of the API package.
type apiType struct {
	name    string
	doc     []string // comment lines without markers
	markers []string // +kubebuilder markers on the type
	fields  []apiField
	enum    bool
	order   token.Pos
}

type apiField struct {
	jsonName string
	goType   string
	doc      []string
	markers  []string
	required bool
}

func loadTypes(dir string) ([]*apiType, error) {
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	var types []*apiType
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") || strings.HasPrefix(filepath.Base(path), "zz_") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", path, err)
		}
		for _, decl := range f.Decls {
			gen, ok := decl.(*ast.GenDecl)
			if !ok || gen.Tok != token.TYPE {
				continue
			}
			for _, spec := range gen.Specs {
				ts := spec.(*ast.TypeSpec)
				if !ts.Name.IsExported() {
					continue
				}
				doc, markers := splitComment(gen.Doc)
				t := &apiType{name: ts.Name.Name, doc: doc, markers: markers, order: ts.Pos()}
				switch st := ts.Type.(type) {
				case *ast.StructType:
					t.fields = structFields(st)
				case *ast.Ident:
					if st.Name != "string" {
						continue
					}
					t.enum = true
				default:
					continue
				}
				if strings.HasSuffix(t.name, "List") {
					continue
				}
				types = append(types, t)
			}
		}
	}
	sort.SliceStable(types, func(i, j int) bool {
		return rank(types[i]) < rank(types[j]) || (rank(types[i]) == rank(types[j]) && types[i].order < types[j].order)
	})
	return types, nil
}

// rank puts the kind first, then its spec and status, then everything else in source order
// (files are read alphabetically, so source order within ftpserver_types.go).
func rank(t *apiType) int {
	switch t.name {
	case "FTPServer":
		return 0
	case "FTPServerSpec":
		return 1
	case "FTPServerStatus":
		return 2
	}
	return 3
}

func structFields(st *ast.StructType) []apiField {
	var fields []apiField
	for _, f := range st.Fields.List {
		tag := ""
		if f.Tag != nil {
			tag = f.Tag.Value
		}
		jsonName := jsonTagName(tag)
		if jsonName == "" || jsonName == "-" {
			continue // inline TypeMeta/ObjectMeta
		}
		doc, markers := splitComment(f.Doc)
		fields = append(fields, apiField{
			jsonName: jsonName,
			goType:   typeString(f.Type),
			doc:      doc,
			markers:  markers,
			required: !strings.Contains(tag, "omitempty") && !hasMarker(markers, "+optional"),
		})
	}
	return fields
}

func jsonTagName(tag string) string {
	i := strings.Index(tag, `json:"`)
	if i < 0 {
		return ""
	}
	rest := tag[i+len(`json:"`):]
	name := rest[:strings.IndexAny(rest, `",`)]
	return name
}

func splitComment(cg *ast.CommentGroup) (doc, markers []string) {
	if cg == nil {
		return nil, nil
	}
	for _, line := range strings.Split(cg.Text(), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "+"):
			markers = append(markers, line)
		case line != "":
			doc = append(doc, line)
		}
	}
	return doc, markers
}

func hasMarker(markers []string, prefix string) bool {
	for _, m := range markers {
		if strings.HasPrefix(m, prefix) {
			return true
		}
	}
	return false
}

func typeString(e ast.Expr) string {
	switch t := e.(type) {
	case *ast.Ident:
		return t.Name
	case *ast.StarExpr:
		return typeString(t.X)
	case *ast.ArrayType:
		return "[]" + typeString(t.Elt)
	case *ast.MapType:
		return "map[" + typeString(t.Key) + "]" + typeString(t.Value)
	case *ast.SelectorExpr:
		return typeString(t.X) + "." + t.Sel.Name
	}
	return fmt.Sprintf("%T", e)
}

// constraints turns validation markers into short readable text.
func constraints(markers []string) (def string, rules []string) {
	for _, m := range markers {
		m = strings.TrimPrefix(m, "+kubebuilder:")
		switch {
		case strings.HasPrefix(m, "default="):
			def = strings.TrimPrefix(m, "default=")
		case strings.HasPrefix(m, "validation:XValidation:"):
			rules = append(rules, "rule: "+celMessage(m))
		case strings.HasPrefix(m, "validation:"):
			rules = append(rules, strings.TrimPrefix(m, "validation:"))
		}
	}
	return def, rules
}

// celMessage extracts the human message of an XValidation marker.
func celMessage(marker string) string {
	for _, key := range []string{`message="`, `messageExpression="`} {
		if i := strings.Index(marker, key); i >= 0 {
			rest := marker[i+len(key):]
			if j := strings.Index(rest, `"`); j >= 0 {
				return rest[:j]
			}
		}
	}
	return marker
}

func localType(goType string, known map[string]bool) string {
	base := strings.TrimLeft(goType, "[]*")
	if strings.HasPrefix(base, "map[") {
		return "`" + goType + "`"
	}
	if known[base] {
		return strings.TrimSuffix(goType, base) + "[" + base + "](#" + strings.ToLower(base) + ")"
	}
	return "`" + goType + "`"
}

func render(w io.Writer, types []*apiType) {
	known := map[string]bool{}
	for _, t := range types {
		known[t.name] = true
	}
	fmt.Fprintln(w, "# API reference: ftp.kubeftp.dev/v1alpha1")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "<!-- Generated by `make docs` (hack/apidocs) from api/v1alpha1. Do not edit by hand. -->")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Kind `FTPServer` (short name `ftpsrv`). Validation listed under each field runs at")
	fmt.Fprintln(w, "`kubectl apply` time (OpenAPI bounds and CEL rules); the rule texts are the messages a")
	fmt.Fprintln(w, "rejected object gets.")
	for _, t := range types {
		fmt.Fprintf(w, "\n## %s\n\n", t.name)
		if len(t.doc) > 0 {
			fmt.Fprintln(w, strings.Join(t.doc, " "))
			fmt.Fprintln(w)
		}
		if _, rules := constraints(t.markers); len(rules) > 0 {
			fmt.Fprintln(w, "Rules:")
			for _, r := range rules {
				fmt.Fprintf(w, "- %s\n", escape(r))
			}
			fmt.Fprintln(w)
		}
		if t.enum {
			continue
		}
		fmt.Fprintln(w, "| Field | Type | Default | Description |")
		fmt.Fprintln(w, "|---|---|---|---|")
		for _, f := range t.fields {
			def, rules := constraints(f.markers)
			desc := strings.Join(f.doc, " ")
			if f.required {
				desc = "**Required.** " + desc
			}
			if len(rules) > 0 {
				desc += "<br>Validation: " + strings.Join(rules, "; ")
			}
			if def != "" {
				def = "`" + def + "`"
			}
			fmt.Fprintf(w, "| `%s` | %s | %s | %s |\n", f.jsonName, localType(f.goType, known), def, escape(desc))
		}
	}
}

func escape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
