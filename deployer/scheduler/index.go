package scheduler

import (
	"errors"
	"fmt"
	"slices"
	"sort"
)

// ErrBadSnapshot is wrapped by errors about the inventory itself.
var ErrBadSnapshot = errors.New("bad snapshot")

type svcKey struct{ stack, service string }

func (k svcKey) String() string { return k.stack + "/" + k.service }

type portKey struct {
	port  uint16
	proto string
}

type portUse struct{ ip, owner string }

// labelUse counts containers carrying one label pair; first names one of
// them for messages.
type labelUse struct {
	n     int
	first string
}

// hostIdx is one host with everything placement asks about precomputed,
// so a check is a few map lookups, never a scan of the host's containers.
type hostIdx struct {
	rank          int // position in name order
	name          string
	labels        map[string]string
	state         HostState
	cpuCap        int64
	memCap        int64
	cpuUsed       int64
	memUsed       int64
	total         int
	ports         map[portKey][]portUse
	clabels       map[KV]labelUse
	names         map[string]struct{}
	requireAny    []KV
	requireAnyErr error
	containers    []Container
}

// Index is a Snapshot with per-host indexes (ports in use, label pairs,
// names, per-service counts, reserved resources) and hosts bucketed by
// container count, so placing one container costs about the hosts it must
// look at, not hosts*containers. Build it once, then alternate Place and
// Apply. An Index is not safe for concurrent use; Place only reads it.
type Index struct {
	hosts    []*hostIdx
	byName   map[string]*hostIdx
	svcHosts map[svcKey]map[int]int // service -> host rank -> containers
	maxIndex map[svcKey]int
	buckets  [][]int // buckets[n]: ranks of hosts with n containers, ascending
}

// NewIndex indexes s; s is not retained or mutated. Duplicate or empty
// host names are an error.
func NewIndex(s *Snapshot) (*Index, error) {
	x := &Index{
		byName:   make(map[string]*hostIdx, len(s.Hosts)),
		svcHosts: make(map[svcKey]map[int]int),
		maxIndex: make(map[svcKey]int),
	}
	order := make([]int, len(s.Hosts))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return s.Hosts[order[a]].Name < s.Hosts[order[b]].Name })
	for rank, i := range order {
		h := &s.Hosts[i]
		if h.Name == "" {
			return nil, fmt.Errorf("%w: host #%d has no name", ErrBadSnapshot, i)
		}
		if _, dup := x.byName[h.Name]; dup {
			return nil, fmt.Errorf("%w: host %s listed twice", ErrBadSnapshot, h.Name)
		}
		hi := &hostIdx{
			rank: rank, name: h.Name, labels: h.Labels, state: h.State,
			cpuCap: h.NanoCPUs, memCap: h.MemoryBytes,
			ports:   make(map[portKey][]portUse),
			clabels: make(map[KV]labelUse),
			names:   make(map[string]struct{}),
		}
		if v, ok := h.Labels[LabelRequireAny]; ok {
			hi.requireAny, hi.requireAnyErr = parseKVList(v)
			if hi.requireAnyErr != nil {
				hi.requireAnyErr = fmt.Errorf("host label %s=%q: %w", LabelRequireAny, v, hi.requireAnyErr)
			}
		}
		x.hosts = append(x.hosts, hi)
		x.byName[h.Name] = hi
		for _, c := range h.Containers {
			x.add(hi, c, false)
		}
	}
	for _, hi := range x.hosts {
		x.bucketInsert(hi.total, hi.rank)
	}
	return x, nil
}

// add books c on h. With rebucket the host moves to its new count bucket
// (NewIndex buckets all hosts once at the end instead).
func (x *Index) add(h *hostIdx, c Container, rebucket bool) {
	h.containers = append(h.containers, c)
	if c.Stack != "" && c.Index > x.maxIndex[svcKey{c.Stack, c.Service}] {
		x.maxIndex[svcKey{c.Stack, c.Service}] = c.Index
	}
	if c.Stopped {
		return
	}
	if rebucket {
		x.bucketRemove(h.total, h.rank)
	}
	h.total++
	cpu, mem := c.Resources.Reserve()
	h.cpuUsed += cpu
	h.memUsed += mem
	for _, p := range c.Ports {
		if p.HostPort == 0 {
			continue
		}
		k := portKey{p.HostPort, p.proto()}
		h.ports[k] = append(h.ports[k], portUse{p.HostIP, c.Name})
	}
	addLabel := func(k, v string) {
		u := h.clabels[KV{k, v}]
		if u.n == 0 {
			u.first = c.Name
		}
		u.n++
		h.clabels[KV{k, v}] = u
	}
	for k, v := range c.Labels {
		if (k == LabelStackName || k == LabelStackService) && c.Stack != "" {
			continue // the implicit value below wins
		}
		addLabel(k, v)
	}
	if c.Stack != "" {
		addLabel(LabelStackName, c.Stack)
		addLabel(LabelStackService, c.Stack+"/"+c.Service)
		key := svcKey{c.Stack, c.Service}
		m := x.svcHosts[key]
		if m == nil {
			m = make(map[int]int)
			x.svcHosts[key] = m
		}
		m[h.rank]++
	}
	if c.Name != "" {
		h.names[c.Name] = struct{}{}
	}
	if rebucket {
		x.bucketInsert(h.total, h.rank)
	}
}

func (x *Index) bucketInsert(total, rank int) {
	for len(x.buckets) <= total {
		x.buckets = append(x.buckets, nil)
	}
	b := x.buckets[total]
	i, _ := slices.BinarySearch(b, rank)
	x.buckets[total] = slices.Insert(b, i, rank)
}

func (x *Index) bucketRemove(total, rank int) {
	b := x.buckets[total]
	if i, ok := slices.BinarySearch(b, rank); ok {
		x.buckets[total] = slices.Delete(b, i, i+1)
	}
}

// Apply books the new containers of p (placements and the new side of
// moves) as if they were running, so the next Place sees them. req must be
// the request p was made for; for a multi-service plan (Evacuate,
// Rebalance) use ApplyAll.
func (x *Index) Apply(req Request, p Plan) error {
	pr, err := prepare(req)
	if err != nil {
		return err
	}
	for _, pl := range p.all() {
		if pl.Stack != req.Stack || pl.Service != req.Service {
			return fmt.Errorf("%w: placement %s is not of %s/%s", ErrBadSnapshot, pl.Name(), req.Stack, req.Service)
		}
		if err := x.applyOne(pr, pl); err != nil {
			return err
		}
	}
	return nil
}

// ApplyAll is Apply for plans that touch several services; reqs are looked
// up by stack and service, and services without one are booked from their
// own placement (no labels, ports or resources).
func (x *Index) ApplyAll(reqs []Request, p Plan) error {
	by := make(map[svcKey]*prepared, len(reqs))
	for _, r := range reqs {
		pr, err := prepare(r)
		if err != nil {
			return err
		}
		by[pr.key] = pr
	}
	for _, pl := range p.all() {
		pr := by[svcKey{pl.Stack, pl.Service}]
		if pr == nil {
			var err error
			if pr, err = prepare(Request{Stack: pl.Stack, Service: pl.Service}); err != nil {
				return err
			}
		}
		if err := x.applyOne(pr, pl); err != nil {
			return err
		}
	}
	return nil
}

func (x *Index) applyOne(pr *prepared, pl Placement) error {
	h := x.byName[pl.Host]
	if h == nil {
		return fmt.Errorf("%w: placement %s on unknown host %s", ErrBadSnapshot, pl.Name(), pl.Host)
	}
	x.add(h, pr.container(pl.Index), true)
	return nil
}

// Host returns the named host as the index now sees it (snapshot plus
// applied plans), or false.
func (x *Index) Host(name string) (Host, bool) {
	h := x.byName[name]
	if h == nil {
		return Host{}, false
	}
	return Host{
		Name: h.name, Labels: h.labels, State: h.state,
		NanoCPUs: h.cpuCap, MemoryBytes: h.memCap,
		Containers: slices.Clone(h.containers),
	}, true
}

// Snapshot returns the inventory as the index now sees it.
func (x *Index) Snapshot() *Snapshot {
	s := &Snapshot{Hosts: make([]Host, 0, len(x.hosts))}
	for _, h := range x.hosts {
		hh, _ := x.Host(h.name)
		s.Hosts = append(s.Hosts, hh)
	}
	return s
}
