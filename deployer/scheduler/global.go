package scheduler

import "sort"

// GlobalDiff is what a global service needs to have exactly one container
// on every eligible host.
type GlobalDiff struct {
	// Place lists the new containers, one per eligible host without one.
	Place []Placement
	// Extra lists containers to stop: every one on a host that is no
	// longer eligible, and all but the lowest index where a host has
	// several.
	Extra    []ContainerRef
	Verdicts map[string][]Verdict
}

// Global computes the GlobalDiff of req (treated as global whatever its
// labels say) on s; hosts that joined get a container, hosts that left
// the snapshot take theirs with them.
//
// A host without the service must pass the whole chain. A host that
// already runs it is judged only by the host rules (state, host labels,
// require_any): its own container holds the ports and resources, and a
// container_label rule that later stops matching does not evict it.
func Global(s *Snapshot, req Request) (GlobalDiff, error) {
	x, err := NewIndex(s)
	if err != nil {
		return GlobalDiff{}, err
	}
	return x.Global(req)
}

// Global is the package-level Global on the index's current state.
func (x *Index) Global(req Request) (GlobalDiff, error) {
	pr, err := prepare(req)
	if err != nil {
		return GlobalDiff{}, err
	}
	return x.globalDiff(pr), nil
}

func (x *Index) globalDiff(pr *prepared) GlobalDiff {
	c := x.newCall(pr)
	d := GlobalDiff{Verdicts: c.verdicts}
	next := x.maxIndex[pr.key]
	existing := x.svcHosts[pr.key]
	for _, h := range x.hosts {
		if existing[h.rank] > 0 {
			keep := c.evaluate(h, true)
			mine := ownContainers(h, pr.key)
			for i, ct := range mine {
				if !keep || i > 0 {
					d.Extra = append(d.Extra, refOf(h, ct))
				}
			}
			continue
		}
		if c.evaluate(h, false) {
			next++
			c.placed[h.rank] = append(c.placed[h.rank], next)
			d.Place = append(d.Place, Placement{Stack: pr.req.Stack, Service: pr.req.Service, Host: h.name, Index: next})
		}
	}
	return d
}

// ownContainers lists h's live containers of service k, lowest index
// first.
func ownContainers(h *hostIdx, k svcKey) []Container {
	var out []Container
	for _, ct := range h.containers {
		if ct.Stack == k.stack && ct.Service == k.service && !ct.Stopped {
			out = append(out, ct)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Index != out[j].Index {
			return out[i].Index < out[j].Index
		}
		return out[i].Name < out[j].Name
	})
	return out
}

func refOf(h *hostIdx, ct Container) ContainerRef {
	return ContainerRef{Host: h.name, ID: ct.ID, Name: ct.Name, Stack: ct.Stack, Service: ct.Service, Index: ct.Index}
}
