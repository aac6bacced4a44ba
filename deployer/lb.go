package deployer

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Discovery says how containers find each other: the load balancer runtime
// that lb_config services become, and the DNS resolver every container is
// given. The zero value changes nothing: containers run as written.
type Discovery struct {
	// LBImage is the dockmaster image; an lb_config service's containers
	// run `dockmaster lb` from it (the image written in the compose file,
	// e.g. rancher/lb-service-haproxy, is ignored). Empty: lb_config
	// services run their own image.
	LBImage string
	// LBConfigURL is where an LB container polls its rules and backends:
	// dockmaster's API as the hosts reach it.
	LBConfigURL func(env, stack, service string) string
	// LBToken is the bearer token of that poll (the server checks it).
	LBToken func(env, stack, service string) string
	// DNS are resolver IPs put first in every container's resolv.conf
	// (dockmaster's DNS server); DNSSuffix is its zone, e.g. "dockmaster".
	// Search domains <stack>.<env>.<suffix> and <env>.<suffix> make
	// "service" and "service.stack" resolve inside a stack.
	DNS       []string
	DNSSuffix string
}

// Environment variables of an LB container, read by `dockmaster lb`.
const (
	EnvLBConfigURL = "DOCKMASTER_LB_CONFIG_URL"
	EnvLBToken     = "DOCKMASTER_LB_TOKEN"
	EnvLBHost      = "DOCKMASTER_LB_HOST"
)

// runSpec is the spec a container of service s on host is created from:
// s plus the discovery settings. It is not hashed (ConfigHash stays the
// one of s), so changing the LB image or the resolver recreates nothing.
func (x Discovery) runSpec(env, stack, host string, s ServiceSpec) ServiceSpec {
	if len(x.DNS) > 0 && s.NetworkMode != "host" {
		s.DNS = append(slices.Clone(x.DNS), s.DNS...)
		suffix := strings.Trim(x.DNSSuffix, ".")
		zone := env
		if suffix != "" {
			zone += "." + suffix
		}
		s.DNSSearch = append([]string{stack + "." + zone, zone}, s.DNSSearch...)
	}
	if s.LB == nil || x.LBImage == "" || x.LBConfigURL == nil {
		return s
	}
	s.Image = x.LBImage
	s.PullAlways = false
	s.Entrypoint = nil
	s.Command = []string{"lb"}
	s.HealthCheck = nil // `dockmaster lb` listens before its first config
	s.Environment = maps.Clone(s.Environment)
	if s.Environment == nil {
		s.Environment = map[string]string{}
	}
	s.Environment[EnvLBConfigURL] = x.LBConfigURL(env, stack, s.Name)
	s.Environment[EnvLBHost] = host
	if x.LBToken != nil {
		s.Environment[EnvLBToken] = x.LBToken(env, stack, s.Name)
	}
	// Every source port is published on the host (same number) unless
	// the compose file already maps it.
	s.Ports = slices.Clone(s.Ports)
	for _, r := range s.LB.PortRules {
		mapped := false
		for _, p := range s.Ports {
			if p.ContainerPort == r.SourcePort && proto(p.Protocol) == "tcp" {
				mapped = true
			}
		}
		if !mapped && r.SourcePort != 0 {
			s.Ports = append(s.Ports, PortSpec{HostPort: r.SourcePort, ContainerPort: r.SourcePort, Protocol: "tcp"})
		}
	}
	return s
}

// Endpoint is one container of a service as discovery sees it.
type Endpoint struct {
	Host      string // Docker host name
	Address   string // the host's address (its published ports answer there)
	Container string
	ID        string
	IP        string // on the stack network ("" when not attached)
	Ports     []PortSpec
	Version   string
	// Deployment tells an upgrade's new containers from the old ones.
	Deployment string
	Healthy    bool
	Reason     string // why not healthy
}

// Port returns where this endpoint's containerPort answers as seen from
// host from: the container IP on the same host (the LB shares the stack
// network), else the published host port, else the container IP (which
// works where the hosts' bridges are routed to each other). ok is false
// when none applies.
func (e Endpoint) Port(from string, containerPort uint16) (addr string, ok bool) {
	join := func(h string, p uint16) string {
		if strings.Contains(h, ":") {
			return fmt.Sprintf("[%s]:%d", h, p)
		}
		return fmt.Sprintf("%s:%d", h, p)
	}
	if from == e.Host && e.IP != "" {
		return join(e.IP, containerPort), true
	}
	for _, p := range e.Ports {
		if p.ContainerPort == containerPort && p.HostPort != 0 && proto(p.Protocol) == "tcp" {
			a := e.Address
			if a == "" || (p.HostIP != "" && p.HostIP != "0.0.0.0" && p.HostIP != "::") {
				a = p.HostIP
			}
			if a != "" {
				return join(a, p.HostPort), true
			}
		}
	}
	if e.IP != "" {
		return join(e.IP, containerPort), true
	}
	return "", false
}

// ServiceEndpoints are the live containers of one service.
type ServiceEndpoints struct {
	Stack, Service string
	LB             *LBConfig
	// Interval is the service's health-check interval (0: no check).
	Interval  time.Duration
	Endpoints []Endpoint
}

// Stacks lists the stacks that have services in the environment.
func (d *Deployer) Stacks(ctx context.Context) ([]string, error) {
	recs, err := d.opts.Store.Services(ctx, d.opts.Env, "")
	if err != nil {
		return nil, err
	}
	return StackNames(recs), nil
}

// StackNames lists the stacks recs belong to, sorted, each once.
func StackNames(recs []ServiceRecord) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range recs {
		if !seen[r.Stack] {
			seen[r.Stack] = true
			out = append(out, r.Stack)
		}
	}
	sort.Strings(out)
	return out
}

// Endpoints lists every running container of the stack's services, each
// probed once with its deployment's health check (a container without one
// is healthy while running). Hosts that do not answer are left out and
// named in down: their containers drop out of rotation, as after a host
// loss. Stopped containers (an upgrade's kept old ones) are not listed.
func (d *Deployer) Endpoints(ctx context.Context, stack string) (svcs []ServiceEndpoints, down []string, err error) {
	recs, err := d.opts.Store.Services(ctx, d.opts.Env, stack)
	if err != nil {
		return nil, nil, err
	}
	type hostList struct {
		cs  []Container
		err error
	}
	lists := make([]hostList, len(d.opts.Hosts))
	var wg sync.WaitGroup
	for i := range d.opts.Hosts {
		h := &d.opts.Hosts[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs, err := h.Engine.List(ctx, ownerLabels(d.opts.Env, stack, ""))
			for j := range cs {
				cs[j].Host = h.Name
			}
			lists[i] = hostList{cs, err}
		}()
	}
	wg.Wait()
	var snaps []HostSnapshot
	for i, l := range lists {
		if l.err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			down = append(down, d.opts.Hosts[i].Name)
			continue
		}
		snaps = append(snaps, HostSnapshot{Name: d.opts.Hosts[i].Name, Containers: l.cs})
	}
	network := NetworkName(d.opts.Env, stack)
	for _, rec := range recs {
		se := ServiceEndpoints{Stack: stack, Service: rec.Service, LB: rec.Spec.LB}
		if rec.Spec.HealthCheck != nil {
			se.Interval = healthDefaults(*rec.Spec.HealthCheck).Interval
		}
		for _, c := range serviceContainers(snaps, rec.Service) {
			if !c.Running {
				continue
			}
			h := d.hosts[c.Host]
			e := Endpoint{Host: c.Host, Address: h.Address, Container: c.Name, ID: c.ID, IP: c.IPs[network],
				Ports: c.Ports, Version: c.Labels[LabelVersion], Deployment: c.Deployment()}
			se.Endpoints = append(se.Endpoints, e)
		}
		spec := func(c Endpoint) ServiceSpec {
			if rec.Old != nil && c.Deployment == rec.OldDeployment {
				return *rec.Old
			}
			return rec.Spec
		}
		var pw sync.WaitGroup
		for i := range se.Endpoints {
			pw.Add(1)
			go func() {
				defer pw.Done()
				e := &se.Endpoints[i]
				c := Container{ID: e.ID, Name: e.Container, Running: true, Ports: e.Ports, IPs: map[string]string{}}
				if e.IP != "" {
					c.IPs[network] = e.IP
				}
				h := checkOnce(ctx, d.hosts[e.Host], c, spec(*e), network)
				e.Healthy = h == "healthy" || h == "running"
				if !e.Healthy {
					e.Reason = h
				}
			}()
		}
		pw.Wait()
		svcs = append(svcs, se)
	}
	return svcs, down, nil
}

// LBStatus is what a load balancer service routes: its rules, each with the
// healthy backends it currently has.
type LBStatus struct {
	Rules []LBRuleStatus
}

// LBRuleStatus is one port rule and its healthy backends.
type LBRuleStatus struct {
	LBPortRule
	// Backends are "container@host" of the target's healthy containers.
	Backends []string
}

// lbStatus fills the LB block of the stack's load balancer services from
// the container health that Status measured. Targets in other stacks
// ("stack/service") are listed without backends: Status sees one stack.
func lbStatus(st *StackStatus, recs []ServiceRecord) {
	for _, rec := range recs {
		if rec.Spec.LB == nil {
			continue
		}
		ls := &LBStatus{}
		for _, r := range rec.Spec.LB.PortRules {
			rs := LBRuleStatus{LBPortRule: r}
			stack, svc := st.Stack, r.Service
			if i := strings.Index(svc, "/"); i >= 0 {
				stack, svc = svc[:i], svc[i+1:]
			}
			for _, ss := range st.Services {
				if stack != st.Stack || ss.Name != svc {
					continue
				}
				for _, c := range ss.Containers {
					if c.Health == "healthy" || c.Health == "running" {
						rs.Backends = append(rs.Backends, c.Name+"@"+c.Host)
					}
				}
			}
			ls.Rules = append(ls.Rules, rs)
		}
		for i := range st.Services {
			if st.Services[i].Name == rec.Service {
				st.Services[i].LB = ls
			}
		}
	}
}
