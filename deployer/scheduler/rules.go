package scheduler

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Rancher's scheduling labels, as written in compose files.
const (
	LabelAffinityPrefix = "io.rancher.scheduler.affinity:"
	LabelGlobal         = "io.rancher.scheduler.global"
	// LabelRequireAny is a HOST label: a host carrying it only accepts
	// containers whose labels match one of its key=value pairs.
	LabelRequireAny = "io.rancher.scheduler.require_any"
	// LabelStackName and LabelStackService are carried implicitly by every
	// container of a stack, as Rancher did, so anti-affinity can name them.
	LabelStackName    = "io.rancher.stack.name"
	LabelStackService = "io.rancher.stack_service.name"
)

// ErrBadRule is wrapped by every rule parsing error.
var ErrBadRule = errors.New("bad scheduling rule")

// KV is one key=value pair of a label rule.
type KV struct{ Key, Value string }

func (kv KV) String() string { return kv.Key + "=" + kv.Value }

// Affinity is one strength (hard or soft) of the placement rules.
//
// HostLabel pairs must all be on the host; HostLabelNe pairs must all be
// absent. ContainerLabel pairs must each be carried by some container on the
// host; no container on the host may carry a ContainerLabelNe pair.
// Container/ContainerNe name containers the same way.
type Affinity struct {
	HostLabel        []KV
	HostLabelNe      []KV
	ContainerLabel   []KV
	ContainerLabelNe []KV
	Container        []string
	ContainerNe      []string
}

func (a Affinity) empty() bool {
	return len(a.HostLabel)+len(a.HostLabelNe)+len(a.ContainerLabel)+
		len(a.ContainerLabelNe)+len(a.Container)+len(a.ContainerNe) == 0
}

func (a *Affinity) merge(b Affinity) {
	a.HostLabel = append(a.HostLabel, b.HostLabel...)
	a.HostLabelNe = append(a.HostLabelNe, b.HostLabelNe...)
	a.ContainerLabel = append(a.ContainerLabel, b.ContainerLabel...)
	a.ContainerLabelNe = append(a.ContainerLabelNe, b.ContainerLabelNe...)
	a.Container = append(a.Container, b.Container...)
	a.ContainerNe = append(a.ContainerNe, b.ContainerNe...)
}

// Rules are the parsed placement rules of one service. Hard rules filter
// hosts out; soft rules only rank them and never cause a failure.
type Rules struct {
	Hard   Affinity
	Soft   Affinity
	Global bool
}

// Merge returns r with o's rules added (Global if either is global).
func (r Rules) Merge(o Rules) Rules {
	out := Rules{Global: r.Global || o.Global}
	out.Hard.merge(r.Hard)
	out.Hard.merge(o.Hard)
	out.Soft.merge(r.Soft)
	out.Soft.merge(o.Soft)
	return out
}

// ParseLabels reads Rancher's io.rancher.scheduler.* labels from a
// service's compose labels. ${stack_name} and ${service_name} (and their
// $${...} escaped forms) are interpolated as Rancher did. Errors wrap
// ErrBadRule and name the label key and value. Labels outside
// io.rancher.scheduler.* are ignored.
func ParseLabels(labels map[string]string, stack, service string) (Rules, error) {
	var r Rules
	keys := make([]string, 0, len(labels))
	for k := range labels {
		if strings.HasPrefix(k, "io.rancher.scheduler.") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys) // first error is deterministic
	for _, k := range keys {
		v := labels[k]
		if k == LabelGlobal {
			switch strings.ToLower(strings.TrimSpace(v)) {
			case "true":
				r.Global = true
			case "false", "":
			default:
				return Rules{}, fmt.Errorf("%w: label %s=%q: want true or false", ErrBadRule, k, v)
			}
			continue
		}
		if k == LabelRequireAny {
			// A host label; harmless on a service.
			continue
		}
		kind, ok := strings.CutPrefix(k, LabelAffinityPrefix)
		if !ok {
			return Rules{}, fmt.Errorf("%w: unknown label %s=%q", ErrBadRule, k, v)
		}
		if err := r.add(kind, splitList(v), stack, service); err != nil {
			return Rules{}, fmt.Errorf("%w: label %s=%q: %w", ErrBadRule, k, v, err)
		}
	}
	return r, nil
}

// add appends rule kind (host_label, container_ne_soft, ...) with items.
func (r *Rules) add(kind string, items []string, stack, service string) error {
	a := &r.Hard
	base, soft := strings.CutSuffix(kind, "_soft_ne")
	if soft {
		base += "_ne"
	} else if base, soft = strings.CutSuffix(kind, "_soft"); !soft {
		base = kind
	}
	if soft {
		a = &r.Soft
	}
	var kvs *[]KV
	var names *[]string
	switch base {
	case "host_label":
		kvs = &a.HostLabel
	case "host_label_ne":
		kvs = &a.HostLabelNe
	case "container_label":
		kvs = &a.ContainerLabel
	case "container_label_ne":
		kvs = &a.ContainerLabelNe
	case "container":
		names = &a.Container
	case "container_ne":
		names = &a.ContainerNe
	default:
		return fmt.Errorf("unknown rule %q", kind)
	}
	if len(items) == 0 {
		return errors.New("empty value")
	}
	for _, it := range items {
		if it == "" {
			return errors.New("empty value")
		}
		s, err := interpolate(it, stack, service)
		if err != nil {
			return err
		}
		if names != nil {
			*names = append(*names, s)
			continue
		}
		kv, err := parseKV(s)
		if err != nil {
			return err
		}
		*kvs = append(*kvs, kv)
	}
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseKV(s string) (KV, error) {
	k, v, ok := strings.Cut(s, "=")
	k = strings.TrimSpace(k)
	if !ok || k == "" {
		return KV{}, fmt.Errorf("%q: want key=value", s)
	}
	return KV{Key: k, Value: strings.TrimSpace(v)}, nil
}

// parseKVList parses a comma-separated key=value list (require_any).
func parseKVList(v string) ([]KV, error) {
	items := splitList(v)
	if len(items) == 0 {
		return nil, errors.New("empty value")
	}
	out := make([]KV, 0, len(items))
	for _, it := range items {
		kv, err := parseKV(it)
		if err != nil {
			return nil, err
		}
		out = append(out, kv)
	}
	return out, nil
}

// interpolate replaces Rancher's ${stack_name}/${service_name}; the $${...}
// form is what survives compose's own interpolation, so both are accepted.
func interpolate(s, stack, service string) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	r := strings.NewReplacer(
		"$${stack_name}", stack, "$${service_name}", service,
		"${stack_name}", stack, "${service_name}", service,
	)
	out := r.Replace(s)
	if i := strings.Index(out, "${"); i >= 0 {
		end := strings.IndexByte(out[i:], '}')
		name := out[i:]
		if end >= 0 {
			name = out[i : i+end+1]
		}
		return "", fmt.Errorf("unknown variable %s (only ${stack_name} and ${service_name})", name)
	}
	return out, nil
}

// NativeAffinity is one strength of the native rules, each entry
// "key=value" (or a container name for Container/ContainerNe).
type NativeAffinity struct {
	HostLabel        []string `yaml:"host_label,omitempty" json:"host_label,omitempty"`
	HostLabelNe      []string `yaml:"host_label_ne,omitempty" json:"host_label_ne,omitempty"`
	ContainerLabel   []string `yaml:"container_label,omitempty" json:"container_label,omitempty"`
	ContainerLabelNe []string `yaml:"container_label_ne,omitempty" json:"container_label_ne,omitempty"`
	Container        []string `yaml:"container,omitempty" json:"container,omitempty"`
	ContainerNe      []string `yaml:"container_ne,omitempty" json:"container_ne,omitempty"`
}

// Scheduling is the native form of the rules for rancher-compose.yml:
//
//	scheduling:
//	  host_label: [env=prod]
//	  container_label_ne: [io.rancher.stack_service.name=${stack_name}/${service_name}]
//	  soft: {host_label: [disk=ssd]}
//	  global: false
//	  strategy: binpack
type Scheduling struct {
	NativeAffinity `yaml:",inline" json:",inline"`
	Soft           NativeAffinity `yaml:"soft,omitempty" json:"soft,omitempty"`
	Global         bool           `yaml:"global,omitempty" json:"global,omitempty"`
	// Strategy ranks the feasible hosts: spread (default) or binpack. It is
	// used when the Request sets none.
	Strategy Strategy `yaml:"strategy,omitempty" json:"strategy,omitempty"`
}

// Rules converts s; errors wrap ErrBadRule and name the field and entry,
// e.g. `scheduling.soft.host_label[1] "ssd": want key=value`.
func (s Scheduling) Rules(stack, service string) (Rules, error) {
	r := Rules{Global: s.Global}
	for _, part := range []struct {
		prefix, suffix string
		a              NativeAffinity
	}{{"scheduling.", "", s.NativeAffinity}, {"scheduling.soft.", "_soft", s.Soft}} {
		for _, f := range []struct {
			name  string
			items []string
		}{
			{"host_label", part.a.HostLabel}, {"host_label_ne", part.a.HostLabelNe},
			{"container_label", part.a.ContainerLabel}, {"container_label_ne", part.a.ContainerLabelNe},
			{"container", part.a.Container}, {"container_ne", part.a.ContainerNe},
		} {
			for i, it := range f.items {
				kind := f.name + part.suffix
				if strings.HasSuffix(f.name, "_ne") && part.suffix != "" {
					kind = strings.TrimSuffix(f.name, "_ne") + "_soft_ne"
				}
				if err := r.add(kind, []string{strings.TrimSpace(it)}, stack, service); err != nil {
					return Rules{}, fmt.Errorf("%w: %s%s[%d] %q: %w", ErrBadRule, part.prefix, f.name, i, it, err)
				}
			}
		}
	}
	return r, nil
}
