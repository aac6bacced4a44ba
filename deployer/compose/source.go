package compose

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	ctemplate "github.com/compose-spec/compose-go/v2/template"
	"gopkg.in/yaml.v3"
)

// Error is bad input located in a file. Line is 0 when the place is the
// whole file.
type Error struct {
	File string
	Line int
	Err  error
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// source is one input file on its way from bytes to a yaml node tree.
type source struct {
	name     string
	vars     map[string]string
	stack    string
	warnings *[]string
	root     *yaml.Node // the cleaned tree, for lines in later errors
}

// warnf records a warning; line 0 means the file as a whole.
func (s *source) warnf(line int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if line > 0 {
		msg = fmt.Sprintf("%s:%d: %s", s.name, line, msg)
	} else {
		msg = fmt.Sprintf("%s: %s", s.name, msg)
	}
	*s.warnings = append(*s.warnings, msg)
}

func (s *source) errorf(line int, format string, args ...any) error {
	return &Error{File: s.name, Line: line, Err: fmt.Errorf(format, args...)}
}

// normalize strips a BOM and CRLF line endings, which yaml.v3 accepts but
// which leak "\r" into block scalars and template output.
func normalize(b []byte) []byte {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return b
}

// render runs a Rancher catalog template. Files without "{{" and files whose
// first line is "# notemplating" are returned unchanged, as Rancher did.
func (s *source) render(b []byte) ([]byte, error) {
	if !bytes.Contains(b, []byte("{{")) {
		return b, nil
	}
	first, _, _ := bytes.Cut(b, []byte("\n"))
	if strings.TrimSpace(string(first)) == "# notemplating" {
		return b, nil
	}
	tmpl, err := template.New(s.name).Option("missingkey=zero").Funcs(templateFuncs()).Parse(string(b))
	if err != nil {
		return nil, s.templateError(err)
	}
	data := map[string]any{
		"Values": s.vars,
		// Rancher filled these from the stack being deployed; dockmaster
		// has no Rancher release or cluster, so they are placeholders.
		"Stack":   map[string]any{"Name": s.stack},
		"Release": map[string]any{"Name": s.stack, "Version": s.vars["VERSION"]},
		"Cluster": map[string]any{"Name": "dockmaster"},
	}
	out := &limitedBuffer{max: maxRendered}
	if err := tmpl.Execute(out, data); err != nil {
		return nil, s.templateError(err)
	}
	return out.Bytes(), nil
}

// maxRendered bounds a template's output: a loop can multiply a small
// file into gigabytes.
const maxRendered = 4 << 20

type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		return 0, fmt.Errorf("output exceeds %d bytes", b.max)
	}
	return b.Buffer.Write(p)
}

var templateLineRe = regexp.MustCompile(`^template: [^:]*:(\d+):(?:\d+:)? ?(.*)$`)

// templateError turns text/template's "template: name:12: msg" into an
// *Error carrying the line.
func (s *source) templateError(err error) error {
	msg := err.Error()
	if m := templateLineRe.FindStringSubmatch(strings.SplitN(msg, "\n", 2)[0]); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: s.name, Line: line, Err: fmt.Errorf("%w: %s", errTemplate, m[2])}
	}
	return &Error{File: s.name, Err: fmt.Errorf("%w: %s", errTemplate, msg)}
}

var errTemplate = errors.New("catalog template")

// maxLoop bounds the elements all "until" calls of one rendering may
// produce, so nested loops cannot spin for hours.
const maxLoop = 100000

// templateFuncs are the few helpers of Rancher's catalog templates (a
// subset of sprig plus splitPreserveQuotes) that the catalogs use. Each
// rendering gets its own set: "until" counts against a per-render budget.
func templateFuncs() template.FuncMap {
	budget := maxLoop
	return template.FuncMap{
		"atoi": func(s string) int { n, _ := strconv.Atoi(strings.TrimSpace(s)); return n },
		"until": func(n int) ([]int, error) {
			if n < 0 {
				n = 0
			}
			if budget -= n; budget < 0 {
				return nil, fmt.Errorf("until: loops exceed %d iterations", maxLoop)
			}
			r := make([]int, n)
			for i := range r {
				r[i] = i
			}
			return r, nil
		},
		"split":               func(sep, s string) []string { return strings.Split(s, sep) },
		"splitPreserveQuotes": splitPreserveQuotes,
		"default": func(def any, v ...any) any {
			if len(v) == 0 || v[0] == nil || v[0] == "" {
				return def
			}
			return v[0]
		},
		"quote":      func(s string) string { return strconv.Quote(s) },
		"upper":      strings.ToUpper,
		"lower":      strings.ToLower,
		"trim":       strings.TrimSpace,
		"contains":   func(sub, s string) bool { return strings.Contains(s, sub) },
		"hasPrefix":  func(p, s string) bool { return strings.HasPrefix(s, p) },
		"hasSuffix":  func(p, s string) bool { return strings.HasSuffix(s, p) },
		"replace":    func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
		"empty":      func(v any) bool { return v == nil || v == "" || v == 0 || v == false },
		"splitList":  func(sep, s string) []string { return strings.Split(s, sep) },
		"join":       func(sep string, l []string) string { return strings.Join(l, sep) },
		"trimPrefix": func(p, s string) string { return strings.TrimPrefix(s, p) },
		"trimSuffix": func(p, s string) string { return strings.TrimSuffix(s, p) },
		// Rancher replaced these per container at run time, after the
		// catalog template; they are kept as written for the engine.
		"stack_name":       func() string { return "{{stack_name}}" },
		"service_name":     func() string { return "{{service_name}}" },
		"environment_name": func() string { return "{{environment_name}}" },
	}
}

// splitPreserveQuotes splits on spaces except inside double quotes.
func splitPreserveQuotes(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
		case r == ' ' && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parse reads the document into a node tree (the first document only) and
// returns its root mapping, or nil for an empty document.
func (s *source) parse(b []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		if m := yamlLineRe.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return nil, &Error{File: s.name, Line: line, Err: fmt.Errorf("%w: %s", errYAML, m[2])}
		}
		return nil, &Error{File: s.name, Err: fmt.Errorf("%w: %v", errYAML, err)}
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, s.errorf(root.Line, "top level must be a mapping, not %s", kindName(root))
	}
	s.dedupe(root, 0)
	return root, nil
}

var errYAML = errors.New("invalid YAML")

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	return fmt.Sprintf("the value %q", n.Value)
}

// maxDepth bounds recursion on hostile input (aliases are not followed).
const maxDepth = 200

// dedupe drops every earlier occurrence of a repeated mapping key, as
// Rancher's YAML loader did (last wins), warning for each.
func (s *source) dedupe(n *yaml.Node, depth int) {
	if depth > maxDepth {
		return
	}
	if n.Kind == yaml.MappingNode {
		last := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind == yaml.ScalarNode && k.Value != "<<" {
				last[k.Value] = i
			}
		}
		if len(last)*2 < len(n.Content) {
			kept := make([]*yaml.Node, 0, len(last)*2)
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if j, ok := last[k.Value]; ok && k.Kind == yaml.ScalarNode && j != i {
					s.warnf(k.Line, "duplicate key %q, the one at line %d wins", k.Value, n.Content[j].Line)
					continue
				}
				kept = append(kept, n.Content[i], n.Content[i+1])
			}
			n.Content = kept
		}
	}
	for _, c := range n.Content {
		s.dedupe(c, depth+1)
	}
}

// checkVariables walks every scalar value and runs compose's interpolation
// on it only to find, with its line, a missing required variable (error) or
// an unset plain ${VAR} (warning, once per variable). When substitute is
// true the scalar is replaced by its interpolated value (rancher-compose,
// which compose-go never sees).
func (s *source) checkVariables(n *yaml.Node, substitute bool) error {
	warned := map[string]bool{}
	var walk func(n *yaml.Node, isKey bool, depth int) error
	walk = func(n *yaml.Node, isKey bool, depth int) error {
		if depth > maxDepth {
			return nil
		}
		switch n.Kind {
		case yaml.ScalarNode:
			if isKey || !strings.Contains(n.Value, "$") {
				return nil
			}
			out, err := s.interpolate(n.Value, n.Line, warned)
			if err != nil {
				return err
			}
			if substitute && out != n.Value {
				n.Value = out
				// A substituted value is always text; the decoders parse
				// numbers and booleans from text themselves.
				n.Tag = "!!str"
				n.Style = 0
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if err := walk(n.Content[i], true, depth+1); err != nil {
					return err
				}
				if err := walk(n.Content[i+1], false, depth+1); err != nil {
					return err
				}
			}
		default:
			for _, c := range n.Content {
				if err := walk(c, false, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(n, false, 0)
}

func (s *source) interpolate(v string, line int, warned map[string]bool) (string, error) {
	lookup := func(name string) (string, bool) {
		val, ok := s.vars[name]
		return val, ok
	}
	var unset []string
	replace := func(sub string, m ctemplate.Mapping, cfg *ctemplate.Config) (string, error) {
		val, applied, err := ctemplate.DefaultReplacementAppliedFunc(sub, m, cfg)
		if err == nil && !applied {
			if name := plainVariable(sub); name != "" {
				unset = append(unset, name)
			}
		}
		return val, err
	}
	out, err := ctemplate.SubstituteWithOptions(v, lookup, ctemplate.WithoutLogging, ctemplate.WithReplacementFunction(replace))
	if err != nil {
		var req *ctemplate.MissingRequiredError
		if errors.As(err, &req) {
			return "", &Error{File: s.name, Line: line, Err: fmt.Errorf("%w: %w", ErrMissingVariable, err)}
		}
		return "", &Error{File: s.name, Line: line, Err: fmt.Errorf("bad variable reference in %q: %w", v, err)}
	}
	sort.Strings(unset)
	for _, name := range unset {
		if !warned[name] {
			warned[name] = true
			s.warnf(line, "variable %s is not set, using an empty string", name)
		}
	}
	return out, nil
}

// ErrMissingVariable is wrapped by the error for a ${VAR:?message} or
// ${VAR?message} whose variable is missing.
var ErrMissingVariable = errors.New("missing required variable")

var plainVarRe = regexp.MustCompile(`^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$`)

// plainVariable returns NAME for "$NAME" and "${NAME}", else "".
func plainVariable(sub string) string {
	m := plainVarRe.FindStringSubmatch(sub)
	if m == nil || (strings.HasPrefix(sub, "${") != strings.HasSuffix(sub, "}")) {
		return ""
	}
	return m[1]
}

// mapGet returns the value node of key in mapping n, and the key node.
func mapGet(n *yaml.Node, key string) (*yaml.Node, *yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1], n.Content[i]
		}
	}
	return nil, nil
}

// mapDelete removes key from mapping n.
func mapDelete(n *yaml.Node, key string) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			n.Content = append(n.Content[:i:i], n.Content[i+2:]...)
			return
		}
	}
}

func scalar(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v} }

// resolveAlias follows an alias node to its anchor.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 10; i++ {
		n = n.Alias
	}
	return n
}
