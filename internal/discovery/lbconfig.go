package discovery

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dockmaster/dockmaster/lb"
)

// Errors of the lookups, wrapped with the name looked up.
var (
	ErrUnknownService = errors.New("no such service in the discovery view")
	ErrNotLB          = errors.New("service has no lb_config")
)

// find returns the service stack/name of env's view.
func find(svcs []Service, stack, name string) (Service, bool) {
	for _, s := range svcs {
		if s.Stack == stack && s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

// target splits a port rule's service ("svc" or "stack/svc") relative to
// the balancer's stack.
func target(stack, svc string) (string, string) {
	if i := strings.Index(svc, "/"); i >= 0 {
		return svc[:i], svc[i+1:]
	}
	return stack, svc
}

// stickyCookie is the cookie of a stickiness_policy ("" for none): its
// cookie key, else a fixed name.
func stickyCookie(p map[string]any) string {
	if len(p) == 0 {
		return ""
	}
	if c, ok := p["cookie"].(string); ok && c != "" {
		return c
	}
	return "DOCKMASTER_LB"
}

// LBConfig is the config of load balancer service env/stack/name for the
// instance on Docker host host: each port rule with the addresses of the
// target's healthy containers (container IPs for those on the same host,
// published ports or routed container IPs for the others; see
// deployer.Endpoint.Port). Also returns the view version it was built at.
func (d *Discovery) LBConfig(env, stack, name, host string) (lb.Config, uint64, error) {
	svcs, ver := d.Services(env)
	s, ok := find(svcs, stack, name)
	if !ok {
		return lb.Config{}, ver, fmt.Errorf("%s/%s/%s: %w", env, stack, name, ErrUnknownService)
	}
	if s.LB == nil {
		return lb.Config{}, ver, fmt.Errorf("%s/%s/%s: %w", env, stack, name, ErrNotLB)
	}
	c := lb.Config{Rules: []lb.Rule{}}
	for _, r := range s.LB.PortRules {
		tp := r.TargetPort
		if tp == 0 {
			tp = r.SourcePort
		}
		rule := lb.Rule{SourcePort: r.SourcePort, Protocol: r.Protocol, Hostname: r.Hostname, Path: r.Path,
			Priority: r.Priority, Service: r.Service, Backends: []string{}, StickyCookie: stickyCookie(s.LB.StickinessPolicy)}
		ts, tn := target(stack, r.Service)
		if t, ok := find(svcs, ts, tn); ok {
			rule.Backends = backends(t, host, tp)
		}
		c.Rules = append(c.Rules, rule)
	}
	c.Seal()
	return c, ver, nil
}

func backends(t Service, host string, port uint16) []string {
	out := []string{}
	seen := map[string]bool{}
	for _, e := range t.Healthy() {
		if a, ok := e.Port(host, port); ok && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

// WaitLBConfig is LBConfig held until its version differs from wait (the
// version the caller has) or ctx ends; then the current config is
// returned without error, so a poll that times out gets what it had.
func (d *Discovery) WaitLBConfig(ctx context.Context, env, stack, name, host, wait string) (lb.Config, error) {
	for {
		c, ver, err := d.LBConfig(env, stack, name, host)
		if err != nil && !errors.Is(err, ErrUnknownService) {
			return c, err
		}
		if err == nil && (wait == "" || c.Version != wait) {
			return c, nil
		}
		if _, werr := d.Wait(ctx, ver); werr != nil {
			return c, err // unknown service stays an error; else what it had
		}
	}
}
