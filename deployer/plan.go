package deployer

import (
	"fmt"
	"sort"
	"strings"
)

// ActionKind is what an Action does to one container.
type ActionKind string

const (
	ActCreate ActionKind = "create"
	ActStart  ActionKind = "start"
	ActRemove ActionKind = "remove"
)

// Action is one step of a Plan.
type Action struct {
	Kind   ActionKind
	Host   string
	Name   string // container name
	ID     string // existing container (start, remove)
	Index  int    // new container (create)
	Reason string
}

func (a Action) String() string {
	s := fmt.Sprintf("%s %s on %s", a.Kind, a.Name, a.Host)
	if a.Reason != "" {
		s += " (" + a.Reason + ")"
	}
	return s
}

// Plan is the list of actions that brings a service from observed to
// desired. Execute starts and creates first, removes last, so a service is
// never emptied before its replacements exist.
type Plan struct {
	Service string
	Actions []Action
}

// String is one action per line, or "<service>: nothing to do".
func (p Plan) String() string {
	if len(p.Actions) == 0 {
		return p.Service + ": nothing to do"
	}
	lines := make([]string, len(p.Actions))
	for i, a := range p.Actions {
		lines[i] = a.String()
	}
	return strings.Join(lines, "\n")
}

// desired is what one service should look like.
type desired struct {
	Stack      string
	Spec       ServiceSpec
	Deployment string
	Hash       string
	Scale      int
	// Keep is a deployment whose containers are left alone (the stopped old
	// version of a held upgrade).
	Keep string
}

// reconcile compares the desired service with the observed hosts and
// returns the plan. It is pure: placement is delegated to p, which is pure
// too.
//
// Containers of the service are sorted into: current (desired deployment
// and hash), kept (the held old deployment) and stale (anything else: an
// abandoned deployment or a hash that no longer matches), which is removed.
// A stopped current container is restarted, left or replaced according to
// the health-check strategy: "none" leaves it, "recreate" replaces it,
// anything else restarts it.
func reconcile(d desired, hosts []HostSnapshot, p Placer) (Plan, error) {
	plan := Plan{Service: d.Spec.Name}
	strategy := ""
	if d.Spec.HealthCheck != nil {
		strategy = d.Spec.HealthCheck.Strategy
	}
	var current []Container
	used := map[int]bool{}
	for _, h := range hosts {
		for _, c := range h.Containers {
			if c.Labels[LabelStack] != d.Stack || c.Labels[LabelService] != d.Spec.Name {
				continue
			}
			c.Host = h.Name
			used[c.Index()] = true
			switch {
			case c.Deployment() == d.Keep && d.Keep != "":
			case c.Deployment() == d.Deployment && c.Labels[LabelConfigHash] == d.Hash:
				current = append(current, c)
			default:
				plan.Actions = append(plan.Actions, Action{Kind: ActRemove, Host: h.Name, Name: c.Name, ID: c.ID, Reason: "stale deployment " + c.Deployment()})
			}
		}
	}
	// Highest index first goes when scaling down; stopped before running;
	// of two with one index, the older goes.
	sort.Slice(current, func(i, j int) bool {
		if live(current[i]) != live(current[j]) {
			return live(current[i])
		}
		if current[i].Index() != current[j].Index() {
			return current[i].Index() < current[j].Index()
		}
		return current[i].Created.After(current[j].Created)
	})
	// A global service has no scale: the GlobalPlacer decides per host.
	var gp GlobalPlacer
	if IsGlobal(d.Spec) {
		gp = globalOf(p)
	}
	var keep []Container
	keptIndex := map[int]bool{}
	for _, c := range current {
		if keptIndex[c.Index()] && live(c) {
			// Its host was unreachable long enough for the reconciler to
			// replace it; now it is back, the replacement stays.
			plan.Actions = append(plan.Actions, Action{Kind: ActRemove, Host: c.Host, Name: c.Name, ID: c.ID, Reason: "replaced while its host was unreachable"})
			continue
		}
		if gp == nil && len(keep) >= d.Scale {
			plan.Actions = append(plan.Actions, Action{Kind: ActRemove, Host: c.Host, Name: c.Name, ID: c.ID, Reason: "scale down"})
			continue
		}
		switch {
		case c.Running:
		case c.State == "created":
			plan.Actions = append(plan.Actions, Action{Kind: ActStart, Host: c.Host, Name: c.Name, ID: c.ID, Reason: "created, not started"})
		case strategy == "none":
		case strategy == "recreate" || strategy == "recreateOnQuorum":
			plan.Actions = append(plan.Actions, Action{Kind: ActRemove, Host: c.Host, Name: c.Name, ID: c.ID, Reason: exitReason(c)})
			continue // not kept: a replacement is created below
		default:
			plan.Actions = append(plan.Actions, Action{Kind: ActStart, Host: c.Host, Name: c.Name, ID: c.ID, Reason: "restart, " + exitReason(c)})
		}
		keep = append(keep, c)
		keptIndex[c.Index()] = true
	}
	missing := d.Scale - len(keep)
	if gp == nil && missing <= 0 {
		return plan, nil
	}
	// Placement sees the replacements' predecessors as gone.
	gone := map[string]bool{}
	for _, a := range plan.Actions {
		if a.Kind == ActRemove {
			gone[a.ID] = true
		}
	}
	view := make([]HostSnapshot, len(hosts))
	for i, h := range hosts {
		view[i] = h
		view[i].Containers = nil
		for _, c := range h.Containers {
			if !gone[c.ID] {
				view[i].Containers = append(view[i].Containers, c)
			}
		}
	}
	var placed []string
	if gp != nil {
		add, extra, err := gp.PlaceGlobal(view, d.Stack, d.Spec)
		if err != nil {
			return plan, err
		}
		mine := map[string]Container{}
		for _, c := range keep {
			mine[c.ID] = c
		}
		for _, id := range extra {
			if c, ok := mine[id]; ok { // never another deployment's
				plan.Actions = append(plan.Actions, Action{Kind: ActRemove, Host: c.Host, Name: c.Name, ID: c.ID, Reason: "global: host no longer eligible"})
			}
		}
		placed = add
	} else {
		var err error
		if placed, err = p.Place(view, d.Stack, d.Spec, missing); err != nil {
			return plan, err
		}
	}
	next := 1
	for _, host := range placed {
		for used[next] {
			next++
		}
		used[next] = true
		plan.Actions = append(plan.Actions, Action{Kind: ActCreate, Host: host, Name: ContainerName(d.Stack, d.Spec.Name, next), Index: next})
	}
	return plan, nil
}

// globalOf returns p as a GlobalPlacer when it can place global services.
func globalOf(p Placer) GlobalPlacer {
	switch g := p.(type) {
	case inventoryPlacer:
		if g.global() == nil {
			return nil
		}
		return g
	case GlobalPlacer:
		return g
	}
	return nil
}

func exitReason(c Container) string {
	if c.OOMKilled {
		return fmt.Sprintf("OOM killed, exit %d", c.ExitCode)
	}
	return fmt.Sprintf("%s, exit %d", c.State, c.ExitCode)
}
