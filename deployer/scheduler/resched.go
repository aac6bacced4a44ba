package scheduler

import (
	"errors"
	"fmt"
	"sort"
)

// ErrUnknownHost is returned when a named host is not in the snapshot.
var ErrUnknownHost = errors.New("unknown host")

// requests indexes reqs by service; a service without one gets a request
// derived from one of its containers (labels, ports, resources), which is
// what the running container was created from.
type requests map[svcKey]Request

func newRequests(reqs []Request) requests {
	m := make(requests, len(reqs))
	for _, r := range reqs {
		m[svcKey{r.Stack, r.Service}] = r
	}
	return m
}

func (m requests) get(k svcKey, sample Container) Request {
	if r, ok := m[k]; ok {
		return r
	}
	return Request{Stack: k.stack, Service: k.service, Labels: sample.Labels, Ports: sample.Ports, Resources: sample.Resources}
}

// byService groups h's own containers (foreign ones are never moved) by
// service, services and containers in a stable order.
func byService(h *hostIdx) ([]svcKey, map[svcKey][]Container) {
	groups := make(map[svcKey][]Container)
	for _, ct := range h.containers {
		if ct.Stack != "" && !ct.Stopped {
			k := svcKey{ct.Stack, ct.Service}
			groups[k] = append(groups[k], ct)
		}
	}
	keys := make([]svcKey, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
		groups[k] = ownContainers(h, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	return keys, groups
}

func mergeVerdicts(dst, src map[string][]Verdict) {
	for h, vs := range src {
	next:
		for _, v := range vs {
			for _, old := range dst[h] {
				if old == v {
					continue next
				}
			}
			dst[h] = append(dst[h], v)
		}
	}
}

// Evacuate plans moving every container of ours off host (draining or
// unreachable) onto other hosts, within each service's rules. reqs give
// the services' requests; missing ones are derived from the containers.
//
// Each Move starts the new container first; the old one is stopped only
// after (never for an unreachable host, which cannot be told), so a drain
// never takes a service below its scale. Global services are not moved
// (Global lists their container on a draining host as Extra). Containers
// that fit nowhere stay where they are and are reported by an error
// wrapping one *NoFitError per service; the returned plan still holds
// every move that fits.
func Evacuate(s *Snapshot, host string, reqs []Request) (Plan, error) {
	x, err := NewIndex(s)
	if err != nil {
		return Plan{}, err
	}
	h := x.byName[host]
	if h == nil {
		return Plan{}, fmt.Errorf("%w: %s", ErrUnknownHost, host)
	}
	rq := newRequests(reqs)
	plan := Plan{Verdicts: make(map[string][]Verdict)}
	var errs []error
	keys, groups := byService(h)
	for _, k := range keys {
		mine := groups[k]
		pr, err := prepare(rq.get(k, mine[0]))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if pr.global {
			continue
		}
		p, err := x.place(pr, len(mine), h)
		mergeVerdicts(plan.Verdicts, p.Verdicts)
		if err != nil {
			errs = append(errs, err)
		}
		for i, pl := range p.Placements {
			plan.Moves = append(plan.Moves, Move{Old: refOf(h, mine[i]), New: pl, StopOld: h.state != HostUnreachable})
			if err := x.applyOne(pr, pl); err != nil {
				return plan, err
			}
		}
	}
	return plan, errors.Join(errs...)
}

// Rebalance plans moving containers of spread services back onto host
// (typically one that returned after a drain or outage), one at a time
// while that narrows the service's spread: a container moves from the
// host with the most of that service (ties: host name) while that host has
// at least two more than host, and host passes the service's rules.
// Binpack and global services are left alone. Nothing calls it implicitly.
func Rebalance(s *Snapshot, host string, reqs []Request) (Plan, error) {
	x, err := NewIndex(s)
	if err != nil {
		return Plan{}, err
	}
	t := x.byName[host]
	if t == nil {
		return Plan{}, fmt.Errorf("%w: %s", ErrUnknownHost, host)
	}
	if t.state != "" && t.state != HostActive {
		return Plan{}, fmt.Errorf("%w: host %s is %s", ErrBadRequest, host, t.state)
	}
	rq := newRequests(reqs)
	plan := Plan{Verdicts: make(map[string][]Verdict)}
	keys := make([]svcKey, 0, len(x.svcHosts))
	for k := range x.svcHosts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	var errs []error
	for _, k := range keys {
		counts := x.svcHosts[k]
		moved := make(map[int]int) // rank -> containers moved away
		var sample Container
		for r := range counts {
			if own := ownContainers(x.hosts[r], k); len(own) > 0 {
				sample = own[0]
				break
			}
		}
		pr, err := prepare(rq.get(k, sample))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if pr.global || pr.binpack {
			continue
		}
		for {
			from := -1
			for r, n := range counts {
				n -= moved[r]
				if r == t.rank || n == 0 {
					continue
				}
				if from < 0 || n > counts[from]-moved[from] || (n == counts[from]-moved[from] && r < from) {
					from = r
				}
			}
			if from < 0 || counts[from]-moved[from] < counts[t.rank]+2 {
				break
			}
			c := x.newCall(pr)
			ok := c.evaluate(t, false)
			mergeVerdicts(plan.Verdicts, c.verdicts)
			if !ok {
				break
			}
			src := x.hosts[from]
			own := ownContainers(src, k)
			old := own[len(own)-1-moved[from]] // highest index not yet moved
			x.maxIndex[k]++
			pl := Placement{Stack: k.stack, Service: k.service, Host: t.name, Index: x.maxIndex[k]}
			plan.Moves = append(plan.Moves, Move{Old: refOf(src, old), New: pl, StopOld: true})
			moved[from]++
			if err := x.applyOne(pr, pl); err != nil {
				return plan, err
			}
		}
	}
	return plan, errors.Join(errs...)
}
