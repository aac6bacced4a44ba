package compose

import (
	"encoding/json"
	"sync"

	"github.com/compose-spec/compose-go/v2/schema"
	"gopkg.in/yaml.v3"
)

// keySets are the property names the compose specification allows at the
// top level and in a service, read once from compose-go's embedded schema so
// they follow its version. Read-only after the first call.
var keySets = sync.OnceValue(func() keys {
	var s struct {
		Properties map[string]json.RawMessage `json:"properties"`
		Defs       map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"$defs"`
	}
	ks := keys{top: map[string]bool{}, service: map[string]bool{}, volume: map[string]bool{}, network: map[string]bool{}}
	if err := json.Unmarshal([]byte(schema.Schema), &s); err != nil {
		return ks // every key then looks unknown; the tests catch it
	}
	for k := range s.Properties {
		ks.top[k] = true
	}
	add := func(dst map[string]bool, defs ...string) {
		for _, def := range defs {
			for k := range s.Defs[def].Properties {
				dst[k] = true
			}
		}
	}
	add(ks.service, "service", "container_spec", "workload_spec")
	add(ks.volume, "volume")
	add(ks.network, "network")
	return ks
})

type keys struct{ top, service, volume, network map[string]bool }

// toSpecFormat rewrites the compose tree in place into the compose
// specification that compose-go reads: v1 files (services at the top level)
// get a services: wrapper, docker-compose v1/v2 keys that the specification
// dropped are translated, and keys it does not know are removed with a
// warning (Rancher ignored them; compose-go would refuse the file).
func (s *source) toSpecFormat(root *yaml.Node) {
	ks := keySets()
	if svcs, _ := mapGet(root, "services"); svcs == nil {
		if _, v := mapGet(root, "version"); v == nil {
			// v1: every top-level key is a service.
			wrapped := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: root.Content}
			root.Content = []*yaml.Node{scalar("services"), wrapped}
		}
	}
	// "version" is obsolete in the specification and makes compose-go log.
	mapDelete(root, "version")
	for i := 0; i+1 < len(root.Content); {
		k := root.Content[i]
		if !ks.top[k.Value] && !isExtension(k.Value) {
			s.warnf(k.Line, "unknown top-level key %q ignored", k.Value)
			root.Content = append(root.Content[:i:i], root.Content[i+2:]...)
			continue
		}
		i += 2
	}
	svcs, _ := mapGet(root, "services")
	svcs = resolveAlias(svcs)
	if svcs == nil || svcs.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(svcs.Content); i += 2 {
		svc := resolveAlias(svcs.Content[i+1])
		if svc == nil || svc.Kind != yaml.MappingNode {
			continue
		}
		s.fixService(svcs.Content[i].Value, svc, ks.service)
	}
	s.stripUnknown(root, "volumes", "volume", ks.volume)
	s.stripUnknown(root, "networks", "network", ks.network)
}

// stripUnknown removes, with a warning, keys of the top-level volumes or
// networks that the specification lacks (Rancher's per_container...).
func (s *source) stripUnknown(root *yaml.Node, section, what string, known map[string]bool) {
	sec, _ := mapGet(root, section)
	sec = resolveAlias(sec)
	if sec == nil || sec.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(sec.Content); i += 2 {
		def := resolveAlias(sec.Content[i+1])
		if def == nil || def.Kind != yaml.MappingNode {
			continue
		}
		for j := 0; j+1 < len(def.Content); {
			k := def.Content[j]
			if k.Value != "<<" && !known[k.Value] && !isExtension(k.Value) {
				s.warnf(k.Line, "%s %s: key %q is not supported, ignored", what, sec.Content[i].Value, k.Value)
				def.Content = append(def.Content[:j:j], def.Content[j+2:]...)
				continue
			}
			j += 2
		}
	}
}

func isExtension(k string) bool { return len(k) > 2 && k[:2] == "x-" }

func (s *source) fixService(name string, svc *yaml.Node, known map[string]bool) {
	// net: host -> network_mode: host (docker-compose v1).
	if v, k := mapGet(svc, "net"); v != nil {
		if nm, _ := mapGet(svc, "network_mode"); nm == nil {
			k.Value = "network_mode"
		}
	}
	// log_driver / log_opt -> logging: {driver, options} (v1).
	ld, ldk := mapGet(svc, "log_driver")
	lo, lok := mapGet(svc, "log_opt")
	if (ld != nil || lo != nil) && func() bool { l, _ := mapGet(svc, "logging"); return l == nil }() {
		logging := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		line := 0
		if ld != nil {
			logging.Content = append(logging.Content, scalar("driver"), ld)
			line = ldk.Line
		}
		if lo != nil {
			logging.Content = append(logging.Content, scalar("options"), lo)
			if line == 0 {
				line = lok.Line
			}
		}
		mapDelete(svc, "log_driver")
		mapDelete(svc, "log_opt")
		svc.Content = append(svc.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "logging", Line: line}, logging)
	}
	for i := 0; i+1 < len(svc.Content); {
		k, v := svc.Content[i], svc.Content[i+1]
		switch {
		case k.Value != "<<" && !known[k.Value] && !isExtension(k.Value):
			s.warnf(k.Line, "service %s: key %q is not supported, ignored", name, k.Value)
		case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
			// "volumes:" left empty (often by a catalog template's if):
			// Rancher read it as absent, the schema refuses null.
		default:
			i += 2
			continue
		}
		svc.Content = append(svc.Content[:i:i], svc.Content[i+2:]...)
	}
	// Rancher accepted numbers in command lists ("- 10"); the schema
	// wants strings.
	for _, key := range []string{"command", "entrypoint", "dns", "dns_search"} {
		if v, _ := mapGet(svc, key); v != nil && v.Kind == yaml.SequenceNode {
			for _, item := range v.Content {
				if item.Kind == yaml.ScalarNode && item.Tag != "!!str" && item.Tag != "!!null" {
					item.Tag = "!!str"
				}
			}
		}
	}
}
