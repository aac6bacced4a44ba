package jenkinsemu

import (
	"fmt"
	"strconv"
	"strings"
)

// treeField is one node of Jenkins' `tree=` query parameter:
// name[sub,fields]{from,to}.
type treeField struct {
	name     string
	sub      []treeField // nil for a leaf
	from, to int         // array range; to < 0 means open-ended
	ranged   bool
}

// parseTree parses the `tree` syntax of Jenkins' remote API
// (hudson.model.Api / org.kohsuke.stapler.export.TreePruner):
// comma-separated fields, nested with [...], arrays sliced with {M,N}, {M,}, {,N} or {N}.
func parseTree(s string) ([]treeField, error) {
	p := &treeParser{s: s}
	fields, err := p.fields()
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.s) {
		return nil, fmt.Errorf("tree %q: unexpected %q at offset %d", s, p.s[p.pos], p.pos)
	}
	return fields, nil
}

type treeParser struct {
	s   string
	pos int
}

func (p *treeParser) fields() ([]treeField, error) {
	var out []treeField
	for {
		start := p.pos
		for p.pos < len(p.s) && !strings.ContainsRune(",[]{}", rune(p.s[p.pos])) {
			p.pos++
		}
		f := treeField{name: strings.TrimSpace(p.s[start:p.pos])}
		if f.name == "" {
			return nil, fmt.Errorf("tree %q: empty field name at offset %d", p.s, start)
		}
		if p.pos < len(p.s) && p.s[p.pos] == '[' {
			p.pos++
			sub, err := p.fields()
			if err != nil {
				return nil, err
			}
			if p.pos >= len(p.s) || p.s[p.pos] != ']' {
				return nil, fmt.Errorf("tree %q: missing ']' for %q", p.s, f.name)
			}
			p.pos++
			f.sub = sub
		}
		if p.pos < len(p.s) && p.s[p.pos] == '{' {
			end := strings.IndexByte(p.s[p.pos:], '}')
			if end < 0 {
				return nil, fmt.Errorf("tree %q: missing '}' for %q", p.s, f.name)
			}
			if err := f.parseRange(p.s[p.pos+1 : p.pos+end]); err != nil {
				return nil, fmt.Errorf("tree %q: field %q: %w", p.s, f.name, err)
			}
			p.pos += end + 1
		}
		out = append(out, f)
		if p.pos < len(p.s) && p.s[p.pos] == ',' {
			p.pos++
			continue
		}
		return out, nil
	}
}

func (f *treeField) parseRange(r string) error {
	f.ranged = true
	num := func(s string, def int) (int, error) {
		if s = strings.TrimSpace(s); s == "" {
			return def, nil
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bad range bound %q", s)
		}
		return n, nil
	}
	lo, hi, comma := strings.Cut(r, ",")
	var err error
	if f.from, err = num(lo, 0); err != nil {
		return err
	}
	if !comma { // {N}: just element N
		f.to = f.from + 1
		return nil
	}
	f.to, err = num(hi, -1)
	return err
}

// prune keeps only the requested fields of v (built from map[string]any and []any).
// Objects always keep their "_class", as Jenkins does.
func prune(v any, fields []treeField) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, 0, len(x))
		for _, e := range x {
			out = append(out, prune(e, fields))
		}
		return out
	case map[string]any:
		out := map[string]any{}
		if c, ok := x["_class"]; ok {
			out["_class"] = c
		}
		for _, f := range fields {
			val, ok := x[f.name]
			if !ok {
				continue
			}
			if arr, isArr := val.([]any); isArr && f.ranged {
				lo, hi := min(f.from, len(arr)), len(arr)
				if f.to >= 0 {
					hi = min(f.to, len(arr))
				}
				val = arr[lo:max(lo, hi)]
			}
			out[f.name] = prune(val, f.sub)
		}
		return out
	default:
		return v
	}
}
