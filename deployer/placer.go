package deployer

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/dockmaster/dockmaster/deployer/scheduler"
)

// ErrNoHost is wrapped by PlacementError.
var ErrNoHost = errors.New("no host fits")

// HostSnapshot is one host as placement sees it: its labels and the
// containers dockmaster owns on it in this environment. Err is set when the
// host did not answer; such a host gets nothing.
type HostSnapshot struct {
	Name       string
	Labels     map[string]string
	Containers []Container
	Err        error

	// Filled only when something must be placed (see inventoryPlacer):
	// the scheduler needs the whole host, not just the stack.

	// Env is the deployer's environment: containers in Others labelled
	// for another environment count as foreign.
	Env string
	// State is "" or active, or draining (takes no new containers).
	State string
	// Info is the host's capacity.
	Info HostInfo
	// Others are every other container on the host: other stacks of the
	// environment and foreign ones. They hold ports and resources.
	Others []Container
}

// Placer chooses hosts for new containers. Place returns one host name per
// new container (len n) for service svc of stack, or an error (a
// *PlacementError when no host fits, giving each host's reason). It must be
// pure and deterministic: no Docker calls, same inputs, same plan.
type Placer interface {
	Place(hosts []HostSnapshot, stack string, svc ServiceSpec, n int) ([]string, error)
}

// PlacementError says why no host could take a container, host by host.
type PlacementError struct {
	Service string
	Reasons map[string]string // host name -> reason it was rejected
	// NoFit is the scheduler's verdict (rule per host), when it decided.
	NoFit *scheduler.NoFitError
}

func (e *PlacementError) Error() string {
	if e.NoFit != nil {
		return e.NoFit.Error() // "no host fits stack/service: ..." already
	}
	names := make([]string, 0, len(e.Reasons))
	for h := range e.Reasons {
		names = append(names, h)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, h := range names {
		parts[i] = h + ": " + e.Reasons[h]
	}
	if len(parts) == 0 {
		parts = append(parts, "the environment has no hosts")
	}
	return fmt.Sprintf("%v for service %s: %s", ErrNoHost, e.Service, strings.Join(parts, "; "))
}

func (e *PlacementError) Unwrap() []error {
	if e.NoFit != nil {
		return []error{ErrNoHost, e.NoFit}
	}
	return []error{ErrNoHost}
}

// Spread places each new container on the reachable host running the fewest
// containers of the service, ties broken by host name. Hosts where a fixed
// host port of the service is already published by a live container are
// rejected.
type Spread struct{}

// Place implements Placer.
func (Spread) Place(hosts []HostSnapshot, stack string, svc ServiceSpec, n int) ([]string, error) {
	type cand struct {
		name  string
		count int
	}
	var cands []cand
	reasons := map[string]string{}
	for _, h := range hosts {
		if h.Err != nil {
			reasons[h.Name] = "unreachable: " + h.Err.Error()
			continue
		}
		count := 0
		conflict := ""
		for _, c := range h.Containers {
			if !live(c) {
				continue
			}
			if c.Labels[LabelStack] == stack && c.Labels[LabelService] == svc.Name {
				count++
			}
			if p, ok := portClash(svc.Ports, c.Ports); ok && conflict == "" {
				conflict = fmt.Sprintf("host port %d/%s in use by %s", p.HostPort, p.Protocol, c.Name)
			}
		}
		if conflict != "" {
			reasons[h.Name] = conflict
			continue
		}
		cands = append(cands, cand{h.Name, count})
	}
	if len(cands) == 0 {
		return nil, &PlacementError{Service: svc.Name, Reasons: reasons}
	}
	hasFixedPort := false
	for _, p := range svc.Ports {
		hasFixedPort = hasFixedPort || p.HostPort != 0
	}
	out := make([]string, 0, n)
	for range n {
		sort.SliceStable(cands, func(i, j int) bool {
			if cands[i].count != cands[j].count {
				return cands[i].count < cands[j].count
			}
			return cands[i].name < cands[j].name
		})
		if len(cands) == 0 {
			for _, h := range out {
				reasons[h] = "host port already taken by another new container of the service"
			}
			return nil, &PlacementError{Service: svc.Name, Reasons: reasons}
		}
		out = append(out, cands[0].name)
		cands[0].count++
		if hasFixedPort {
			// A fixed host port fits once per host.
			cands = cands[1:]
		}
	}
	return out, nil
}

// live reports whether c holds resources: running, or created and about to
// start. Stopped containers (the held old version) do not.
func live(c Container) bool { return c.Running || c.State == "created" || c.State == "restarting" }

func portClash(want, have []PortSpec) (PortSpec, bool) {
	for _, w := range want {
		if w.HostPort == 0 {
			continue
		}
		for _, h := range have {
			if h.HostPort == w.HostPort && proto(h.Protocol) == proto(w.Protocol) &&
				(h.HostIP == "" || w.HostIP == "" || h.HostIP == "0.0.0.0" || w.HostIP == "0.0.0.0" || h.HostIP == w.HostIP) {
				return w, true
			}
		}
	}
	return PortSpec{}, false
}

func proto(p string) string {
	if p == "" {
		return "tcp"
	}
	return p
}
