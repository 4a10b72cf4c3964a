// helm-render renders this repository's Helm chart without helm: Go's text/template (the engine helm uses)
// with the helm and Sprig functions the chart's templates call, and helm's rules around it (templates in
// lexical order, partials "_*.tpl" only defined, "<no value>" blanked, empty documents dropped).
//
// Values arrive as JSON (values.yaml merged with overrides, parsed by the caller), so this needs only the
// standard library:
//
//	helm-render -chart deploy/chart/goroscope -values values.json -name goroscope -namespace goroscope
//
// It is a test and manifest tool for this chart, not a general helm: an unknown function is an error.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"text/template"
)

func main() {
	chartDir := flag.String("chart", "deploy/chart/goroscope", "chart directory")
	valuesFile := flag.String("values", "", "values as JSON (required)")
	name := flag.String("name", "goroscope", "release name")
	namespace := flag.String("namespace", "goroscope", "release namespace")
	flag.Parse()
	out, err := render(*chartDir, *valuesFile, *name, *namespace)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helm-render:", err)
		os.Exit(1)
	}
	os.Stdout.WriteString(out)
}

func render(chartDir, valuesFile, name, namespace string) (string, error) {
	raw, err := os.ReadFile(valuesFile)
	if err != nil {
		return "", err
	}
	var values map[string]interface{}
	if err := json.Unmarshal(raw, &values); err != nil {
		return "", fmt.Errorf("values: %w", err)
	}
	chart, err := readChart(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return "", err
	}
	top := map[string]interface{}{
		"Values":  values,
		"Chart":   chart,
		"Files":   chartFiles{dir: chartDir},
		"Release": map[string]interface{}{"Name": name, "Namespace": namespace, "Service": "Helm", "IsInstall": true, "IsUpgrade": false, "Revision": 1},
	}
	files, err := filepath.Glob(filepath.Join(chartDir, "templates", "*"))
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	root := template.New("chart").Option("missingkey=zero")
	root.Funcs(funcs(root))
	var docs []string
	for _, f := range files {
		if !strings.HasSuffix(f, ".yaml") && !strings.HasSuffix(f, ".tpl") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		if _, err := root.New(filepath.Base(f)).Parse(string(b)); err != nil {
			return "", err
		}
	}
	for _, f := range files {
		base := filepath.Base(f)
		if strings.HasPrefix(base, "_") || !strings.HasSuffix(base, ".yaml") {
			continue
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, base, top); err != nil {
			return "", err
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		for _, doc := range splitDocs(text) {
			docs = append(docs, fmt.Sprintf("---\n# Source: %s/templates/%s\n%s\n", chart["Name"], base, doc))
		}
	}
	return strings.Join(docs, ""), nil
}

// chartFiles is helm's .Files: the chart's own files, read by path relative to the chart directory.
type chartFiles struct{ dir string }

// Get returns a file's contents, or "" when it cannot be read (as helm's does).
func (f chartFiles) Get(name string) string {
	b, err := os.ReadFile(filepath.Join(f.dir, filepath.FromSlash(name)))
	if err != nil {
		return ""
	}
	return string(b)
}

// splitDocs splits on "---" lines and drops documents with nothing but comments and blank lines.
func splitDocs(text string) []string {
	var out []string
	for _, d := range strings.Split("\n"+text, "\n---") {
		d = strings.Trim(d, "\n")
		empty := true
		for _, l := range strings.Split(d, "\n") {
			t := strings.TrimSpace(l)
			if t != "" && !strings.HasPrefix(t, "#") {
				empty = false
				break
			}
		}
		if !empty {
			out = append(out, d)
		}
	}
	return out
}

// readChart reads the flat "key: value" lines of Chart.yaml that templates use (name, version, appVersion...).
func readChart(path string) (map[string]interface{}, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c := map[string]interface{}{}
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" || l[0] == ' ' || l[0] == '#' || !strings.Contains(l, ":") {
			continue
		}
		k, v, _ := strings.Cut(l, ":")
		v = strings.TrimSpace(v)
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		}
		// Helm exposes Chart.yaml's keys capitalized: .Chart.Name, .Chart.Version, .Chart.AppVersion.
		c[strings.ToUpper(k[:1])+k[1:]] = v
	}
	if c["Name"] == nil {
		return nil, errors.New("Chart.yaml has no name")
	}
	return c, nil
}

func funcs(root *template.Template) template.FuncMap {
	return template.FuncMap{
		"include": func(name string, data interface{}) (string, error) {
			var buf bytes.Buffer
			err := root.ExecuteTemplate(&buf, name, data)
			return buf.String(), err
		},
		"toYaml":  func(v interface{}) string { return strings.TrimSuffix(toYaml(v, 0), "\n") },
		"nindent": func(n int, s string) string { return "\n" + indent(n, s) },
		"indent":  indent,
		"quote":   func(v interface{}) string { return strconv.Quote(str(v)) },
		"default": func(d interface{}, v ...interface{}) interface{} {
			if len(v) == 0 || empty(v[0]) {
				return d
			}
			return v[0]
		},
		"required": func(msg string, v interface{}) (interface{}, error) {
			if empty(v) {
				return nil, errors.New(msg)
			}
			return v, nil
		},
		"fail":   func(msg string) (string, error) { return "", errors.New(msg) },
		"empty":  empty,
		"b64enc": func(v interface{}) string { return base64.StdEncoding.EncodeToString([]byte(str(v))) },
		"trunc": func(n int, s string) string {
			if len(s) > n {
				return s[:n]
			}
			return s
		},
		"trimSuffix": func(suf, s string) string { return strings.TrimSuffix(s, suf) },
		"contains":   func(sub, s string) bool { return strings.Contains(s, sub) },
		"toString":   str,
		"lower":      strings.ToLower,
	}
}

func indent(n int, s string) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
}

func str(v interface{}) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	default:
		// As Sprig's strval: fmt's %v, so a large number from values prints as 2.68435456e+08 there too;
		// the chart keeps such values as strings.
		return fmt.Sprintf("%v", x)
	}
}

// empty is Sprig's: nil, false, 0, "" and empty collections are empty.
func empty(v interface{}) bool {
	if v == nil {
		return true
	}
	r := reflect.ValueOf(v)
	switch r.Kind() {
	case reflect.String, reflect.Slice, reflect.Map, reflect.Array:
		return r.Len() == 0
	case reflect.Bool:
		return !r.Bool()
	case reflect.Float64, reflect.Float32:
		return r.Float() == 0
	case reflect.Int, reflect.Int64, reflect.Int32:
		return r.Int() == 0
	}
	return false
}

// toYaml writes JSON-shaped data as block YAML with sorted keys (as helm's sigs.k8s.io/yaml does).
func toYaml(v interface{}, level int) string {
	pad := strings.Repeat("  ", level)
	var b strings.Builder
	switch x := v.(type) {
	case map[string]interface{}:
		if len(x) == 0 {
			return "{}\n"
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			b.WriteString(pad + scalar(k))
			writeChild(&b, x[k], level)
		}
	case []interface{}:
		if len(x) == 0 {
			return "[]\n"
		}
		for _, item := range x {
			b.WriteString(pad + "-")
			if m, ok := item.(map[string]interface{}); ok && len(m) > 0 {
				// first key on the dash line, the rest aligned under it
				s := toYaml(m, level+1)
				b.WriteString(" " + strings.TrimPrefix(s, strings.Repeat("  ", level+1)))
				continue
			}
			if l, ok := item.([]interface{}); ok && len(l) > 0 {
				b.WriteString("\n" + toYaml(l, level+1))
				continue
			}
			b.WriteString(" " + scalar(item) + "\n")
		}
	default:
		return scalar(x) + "\n"
	}
	return b.String()
}

func writeChild(b *strings.Builder, v interface{}, level int) {
	switch c := v.(type) {
	case map[string]interface{}:
		if len(c) == 0 {
			b.WriteString(": {}\n")
			return
		}
		b.WriteString(":\n" + toYaml(c, level+1))
	case []interface{}:
		if len(c) == 0 {
			b.WriteString(": []\n")
			return
		}
		b.WriteString(":\n" + toYaml(c, level))
	default:
		b.WriteString(": " + scalar(c) + "\n")
	}
}

func scalar(v interface{}) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case string:
		if plainSafe(x) {
			return x
		}
		q, _ := json.Marshal(x)
		return string(q)
	default:
		q, _ := json.Marshal(x)
		return string(q)
	}
}

// plainSafe: a string YAML reads back as the same string when written unquoted.
func plainSafe(s string) bool {
	if s == "" || strings.TrimSpace(s) != s {
		return false
	}
	switch strings.ToLower(s) {
	case "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~":
		return false
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return false
	}
	if strings.ContainsAny(s[:1], "-?:,[]{}#&*!|>'\"%@`0123456789.+") {
		return false
	}
	return !strings.ContainsAny(s, ":#\n\t") && !strings.Contains(s, " #")
}
