package main

import (
	"encoding/json"
	"fmt"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
)

// valuesTable renders every value of values.yaml as a Markdown table row: key, type, default and
// the comment block written directly above the key. A mapping is listed key by key when every
// one of its keys has a comment; otherwise it is one value (e.g. resources, nodeSelector) and
// needs a comment itself. A value without any comment is an error, so the README always lists
// every value with a description.
func valuesTable(values []byte) ([]byte, error) {
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(values, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yamlv3.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yamlv3.MappingNode {
		return nil, fmt.Errorf("values.yaml must be a mapping")
	}
	var rows []string
	if err := walk(doc.Content[0], "", &rows); err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString("| Key | Type | Default | Description |\n|---|---|---|---|\n")
	for _, r := range rows {
		b.WriteString(r)
		b.WriteByte('\n')
	}
	return []byte(b.String()), nil
}

func walk(m *yamlv3.Node, prefix string, rows *[]string) error {
	for i := 0; i+1 < len(m.Content); i += 2 {
		key, val := m.Content[i], m.Content[i+1]
		path := prefix + key.Value
		comment := commentText(key.HeadComment)
		if listedKeyByKey(val) {
			if err := walk(val, path+".", rows); err != nil {
				return err
			}
			continue
		}
		if comment == "" {
			return fmt.Errorf("value %s has no comment above it: describe it (it goes into the chart's README)", path)
		}
		def, err := defaultText(val)
		if err != nil {
			return fmt.Errorf("value %s: %w", path, err)
		}
		*rows = append(*rows, fmt.Sprintf("| `%s` | %s | %s | %s |", path, typeName(val), def, cell(comment)))
	}
	return nil
}

// listedKeyByKey: a non-empty mapping each of whose keys has a comment or is itself listed key
// by key.
func listedKeyByKey(m *yamlv3.Node) bool {
	if m.Kind != yamlv3.MappingNode || len(m.Content) == 0 {
		return false
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if commentText(m.Content[i].HeadComment) == "" && !listedKeyByKey(m.Content[i+1]) {
			return false
		}
	}
	return true
}

// commentText joins a head comment's lines, without the "#" and without blank-line-separated
// paragraphs above the last one (section headings stay out of the description).
func commentText(c string) string {
	if c == "" {
		return ""
	}
	paragraphs := strings.Split(c, "\n\n")
	last := paragraphs[len(paragraphs)-1]
	var words []string
	for _, line := range strings.Split(last, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#"))
		if line != "" {
			words = append(words, line)
		}
	}
	return strings.Join(words, " ")
}

func typeName(n *yamlv3.Node) string {
	switch n.Kind {
	case yamlv3.MappingNode:
		return "object"
	case yamlv3.SequenceNode:
		return "list"
	}
	switch n.Tag {
	case "!!bool":
		return "bool"
	case "!!int":
		return "int"
	case "!!float":
		return "number"
	case "!!null":
		return "null"
	}
	return "string"
}

func defaultText(n *yamlv3.Node) (string, error) {
	var v any
	if err := n.Decode(&v); err != nil {
		return "", err
	}
	if s, ok := v.(string); ok && s == "" {
		return "`\"\"`", nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	text := string(data)
	if n.Kind == yamlv3.ScalarNode && n.Tag == "!!str" {
		text = n.Value
	}
	return "`" + strings.ReplaceAll(text, "|", `\|`) + "`", nil
}

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
