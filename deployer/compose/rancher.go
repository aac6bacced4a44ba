package compose

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/deployer/scheduler"
)

// applyRancher reads rancher-compose.yml and sets the Rancher-only fields
// of the services already read from the compose file.
func (s *source) applyRancher(content []byte, spec *deployer.StackSpec) error {
	b, err := s.render(normalize(content))
	if err != nil {
		return err
	}
	root, err := s.parse(b)
	if err != nil || root == nil {
		return err
	}
	if err := s.checkVariables(root, true); err != nil {
		return err
	}
	services := root
	if svcs, _ := mapGet(root, "services"); svcs != nil {
		// version: '2' layout; .catalog and version sit beside services.
		services = resolveAlias(svcs)
		for i := 0; i+1 < len(root.Content); i += 2 {
			switch k := root.Content[i]; k.Value {
			case "services", "version", ".catalog", "catalog":
			default:
				if !isExtension(k.Value) {
					s.warnf(k.Line, "unknown top-level key %q ignored", k.Value)
				}
			}
		}
	}
	if services.Kind != yaml.MappingNode {
		return s.errorf(services.Line, "services must be a mapping, not %s", kindName(services))
	}
	for i := 0; i+1 < len(services.Content); i += 2 {
		k, v := services.Content[i], resolveAlias(services.Content[i+1])
		switch {
		case services == root && (k.Value == "version" || k.Value == ".catalog" || k.Value == "catalog"):
			continue
		case isExtension(k.Value):
			continue
		}
		svc := spec.Service(k.Value)
		if svc == nil {
			s.warnf(k.Line, "service %s is not in the compose file, ignored", k.Value)
			continue
		}
		if v == nil || (v.Kind == yaml.ScalarNode && v.Tag == "!!null") {
			continue
		}
		if v.Kind != yaml.MappingNode {
			return s.errorf(v.Line, "service %s must be a mapping, not %s", k.Value, kindName(v))
		}
		if err := s.rancherService(svc, v); err != nil {
			return err
		}
	}
	return nil
}

func (s *source) rancherService(svc *deployer.ServiceSpec, n *yaml.Node) error {
	return s.fields(svc.Name, n, map[string]func(*yaml.Node) error{
		"scale": func(v *yaml.Node) error {
			sc, err := s.intVal(svc.Name+".scale", v, 0)
			svc.Scale = sc
			return err
		},
		"retain_ip": func(v *yaml.Node) (err error) {
			svc.RetainIP, err = s.boolVal(svc.Name+".retain_ip", v)
			return err
		},
		"metadata": func(v *yaml.Node) error {
			var m map[string]any
			if err := v.Decode(&m); err != nil {
				return s.errorf(v.Line, "%s.metadata must be a mapping: %v", svc.Name, err)
			}
			svc.Metadata = m
			return nil
		},
		"health_check": func(v *yaml.Node) error {
			hc, err := s.healthCheck(svc.Name, v)
			svc.HealthCheck = hc
			return err
		},
		"upgrade_strategy": func(v *yaml.Node) error { return s.upgrade(svc, v) },
		"scheduling":       func(v *yaml.Node) error { return s.scheduling(svc, v) },
		"lb_config": func(v *yaml.Node) error {
			lb, err := s.lbConfig(svc.Name, v)
			svc.LB = lb
			return err
		},
	})
}

// fields calls the handler of every key of mapping n and warns about the
// keys without one.
func (s *source) fields(where string, n *yaml.Node, handlers map[string]func(*yaml.Node) error) error {
	n = resolveAlias(n)
	if n.Kind != yaml.MappingNode {
		return s.errorf(n.Line, "%s must be a mapping, not %s", where, kindName(n))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		h, ok := handlers[k.Value]
		if !ok {
			s.warnf(k.Line, "%s: unknown key %q ignored", where, k.Value)
			continue
		}
		if v == nil || (v.Kind == yaml.ScalarNode && v.Tag == "!!null") {
			continue
		}
		if err := h(v); err != nil {
			return err
		}
	}
	return nil
}

func (s *source) healthCheck(svc string, n *yaml.Node) (*deployer.HealthCheck, error) {
	hc := &deployer.HealthCheck{}
	w := svc + ".health_check"
	ms := func(dst *time.Duration, key string) func(*yaml.Node) error {
		return func(v *yaml.Node) error {
			x, err := s.intVal(w+"."+key, v, 0)
			*dst = time.Duration(x) * time.Millisecond
			return err
		}
	}
	num := func(dst *int, key string) func(*yaml.Node) error {
		return func(v *yaml.Node) (err error) {
			*dst, err = s.intVal(w+"."+key, v, 0)
			return err
		}
	}
	err := s.fields(w, n, map[string]func(*yaml.Node) error{
		"port": func(v *yaml.Node) error {
			p, err := s.intVal(w+".port", v, 65535)
			hc.Port = uint16(p)
			return err
		},
		"request_line": func(v *yaml.Node) error {
			hc.RequestLine = v.Value
			return s.wantScalar(w+".request_line", v)
		},
		"interval":               ms(&hc.Interval, "interval"),
		"initializing_timeout":   ms(&hc.InitializingTimeout, "initializing_timeout"),
		"reinitializing_timeout": ms(&hc.ReinitializingTimeout, "reinitializing_timeout"),
		"response_timeout":       ms(&hc.ResponseTimeout, "response_timeout"),
		"healthy_threshold":      num(&hc.HealthyThreshold, "healthy_threshold"),
		"unhealthy_threshold":    num(&hc.UnhealthyThreshold, "unhealthy_threshold"),
		"strategy": func(v *yaml.Node) error {
			switch v.Value {
			case "none", "recreate", "recreateOnQuorum":
				hc.Strategy = v.Value
				return nil
			}
			return s.errorf(v.Line, "%s.strategy: %q is not one of none, recreate, recreateOnQuorum", w, v.Value)
		},
		"recreate_on_quorum_strategy_config": func(v *yaml.Node) error {
			return s.fields(w+".recreate_on_quorum_strategy_config", v, map[string]func(*yaml.Node) error{
				"quorum": num(&hc.RecreateQuorum, "recreate_on_quorum_strategy_config.quorum"),
			})
		},
	})
	return hc, err
}

func (s *source) upgrade(svc *deployer.ServiceSpec, n *yaml.Node) error {
	w := svc.Name + ".upgrade_strategy"
	u := &svc.Upgrade
	return s.fields(w, n, map[string]func(*yaml.Node) error{
		"start_first": func(v *yaml.Node) (err error) {
			u.StartFirst, err = s.boolVal(w+".start_first", v)
			return err
		},
		"interval_millis": func(v *yaml.Node) error {
			x, err := s.intVal(w+".interval_millis", v, 0)
			u.Interval = time.Duration(x) * time.Millisecond
			return err
		},
		"batch_size": func(v *yaml.Node) (err error) {
			u.BatchSize, err = s.intVal(w+".batch_size", v, 0)
			return err
		},
	})
}

func (s *source) lbConfig(svc string, n *yaml.Node) (*deployer.LBConfig, error) {
	lb := &deployer.LBConfig{}
	w := svc + ".lb_config"
	err := s.fields(w, n, map[string]func(*yaml.Node) error{
		"port_rules": func(v *yaml.Node) error {
			if v.Kind != yaml.SequenceNode {
				return s.errorf(v.Line, "%s.port_rules must be a list, not %s", w, kindName(v))
			}
			for i, r := range v.Content {
				rule, err := s.portRule(fmt.Sprintf("%s.port_rules[%d]", w, i), r)
				if err != nil {
					return err
				}
				lb.PortRules = append(lb.PortRules, rule)
			}
			return nil
		},
		"default_cert": func(v *yaml.Node) error {
			lb.DefaultCert = v.Value
			return s.wantScalar(w+".default_cert", v)
		},
		"certs": func(v *yaml.Node) error {
			if err := v.Decode(&lb.Certs); err != nil {
				return s.errorf(v.Line, "%s.certs must be a list of names", w)
			}
			return nil
		},
		"stickiness_policy": func(v *yaml.Node) error {
			if err := v.Decode(&lb.StickinessPolicy); err != nil {
				return s.errorf(v.Line, "%s.stickiness_policy must be a mapping", w)
			}
			return nil
		},
	})
	return lb, err
}

func (s *source) portRule(w string, n *yaml.Node) (deployer.LBPortRule, error) {
	var r deployer.LBPortRule
	port := func(dst *uint16, key string) func(*yaml.Node) error {
		return func(v *yaml.Node) error {
			p, err := s.intVal(w+"."+key, v, 65535)
			*dst = uint16(p)
			return err
		}
	}
	str := func(dst *string, key string) func(*yaml.Node) error {
		return func(v *yaml.Node) error {
			*dst = v.Value
			return s.wantScalar(w+"."+key, v)
		}
	}
	err := s.fields(w, n, map[string]func(*yaml.Node) error{
		"source_port": port(&r.SourcePort, "source_port"),
		"target_port": port(&r.TargetPort, "target_port"),
		"service":     str(&r.Service, "service"),
		"protocol":    str(&r.Protocol, "protocol"),
		"hostname":    str(&r.Hostname, "hostname"),
		"path":        str(&r.Path, "path"),
		"priority": func(v *yaml.Node) (err error) {
			r.Priority, err = s.intVal(w+".priority", v, 0)
			return err
		},
	})
	return r, err
}

func (s *source) wantScalar(where string, v *yaml.Node) error {
	if v.Kind != yaml.ScalarNode {
		return s.errorf(v.Line, "%s must be a single value, not %s", where, kindName(v))
	}
	return nil
}

// intVal parses a non-negative integer (max bounds it when > 0). Text is
// accepted because interpolated values arrive as strings.
func (s *source) intVal(where string, v *yaml.Node, max int) (int, error) {
	if err := s.wantScalar(where, v); err != nil {
		return 0, err
	}
	x, err := strconv.Atoi(strings.TrimSpace(v.Value))
	if err != nil || x < 0 || (max > 0 && x > max) {
		if max > 0 {
			return 0, s.errorf(v.Line, "%s: want an integer from 0 to %d, got %q", where, max, v.Value)
		}
		return 0, s.errorf(v.Line, "%s: want a non-negative integer, got %q", where, v.Value)
	}
	return x, nil
}

// boolVal also accepts YAML 1.1 spellings (yes/no/on/off), which Rancher's
// YAML library read as booleans.
func (s *source) boolVal(where string, v *yaml.Node) (bool, error) {
	if err := s.wantScalar(where, v); err != nil {
		return false, err
	}
	switch strings.ToLower(strings.TrimSpace(v.Value)) {
	case "true", "yes", "on", "y":
		return true, nil
	case "false", "no", "off", "n", "":
		return false, nil
	}
	return false, s.errorf(v.Line, "%s: want true or false, got %q", where, v.Value)
}

// scheduling reads the native placement rules (scheduler.Scheduling),
// rejecting unknown keys and malformed entries with their line.
func (s *source) scheduling(svc *deployer.ServiceSpec, n *yaml.Node) error {
	where := svc.Name + ".scheduling"
	if n.Kind != yaml.MappingNode {
		return s.errorf(n.Line, "%s must be a mapping, not %s", where, kindName(n))
	}
	// Decode strictly: a misspelt rule must not silently place anywhere.
	b, err := yaml.Marshal(n)
	if err != nil {
		return s.errorf(n.Line, "%s: %v", where, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var sc scheduler.Scheduling
	if err := dec.Decode(&sc); err != nil {
		return s.errorf(n.Line, "%s: %v (lines counted from the scheduling block)", where, err)
	}
	switch sc.Strategy {
	case "", scheduler.Spread, scheduler.Binpack:
	default:
		return s.errorf(n.Line, "%s.strategy %q: want spread or binpack", where, sc.Strategy)
	}
	if _, err := sc.Rules("stack", svc.Name); err != nil {
		return s.errorf(n.Line, "%s: %v", svc.Name, err)
	}
	svc.Scheduling = &sc
	return nil
}
