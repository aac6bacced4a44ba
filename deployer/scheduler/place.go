package scheduler

import (
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
)

// Strategy is how a service's replicas are ranked across feasible hosts.
type Strategy string

// Strategies. The zero value is Spread.
const (
	// Spread prefers the host with the fewest containers of this service,
	// then the fewest containers overall.
	Spread Strategy = "spread"
	// Binpack prefers the fullest host (most containers) that still fits.
	Binpack Strategy = "binpack"
)

// ErrBadRequest is wrapped by errors about the request itself.
var ErrBadRequest = errors.New("bad placement request")

// Request asks for containers of one service.
type Request struct {
	Stack, Service string
	// Labels are the compose labels; io.rancher.scheduler.* are read as
	// rules (see ParseLabels) and the rest are matched by other
	// containers' container_label rules and hosts' require_any.
	Labels map[string]string
	// Scheduling is the native form of the rules (rancher-compose.yml);
	// it is merged with the label rules.
	Scheduling *Scheduling
	Ports      []Port
	Resources  Resources
	// Global places one container on every eligible host (as does the
	// io.rancher.scheduler.global label).
	Global   bool
	Strategy Strategy
	// Seed (the deployment id) rotates which host wins a tie, so that
	// different deployments do not all start on the same host while the
	// same deployment always gets the same plan. Empty: host-name order.
	Seed string
}

// Rule names the filter that rejected a host.
type Rule string

// Filters, in the order the chain applies them.
const (
	RuleState            Rule = "state"
	RuleHostLabel        Rule = "host_label"
	RuleHostLabelNe      Rule = "host_label_ne"
	RuleRequireAny       Rule = "require_any"
	RuleContainer        Rule = "container"
	RuleContainerNe      Rule = "container_ne"
	RuleContainerLabel   Rule = "container_label"
	RuleContainerLabelNe Rule = "container_label_ne"
	RulePort             Rule = "port"
	RuleCPU              Rule = "cpu"
	RuleMemory           Rule = "memory"
)

// Verdict is why a host was rejected.
type Verdict struct {
	Rule   Rule
	Reason string // e.g. "port 8080/tcp in use by java-service-1-1"
}

// Placement is one new container: replica Index of Stack/Service on Host.
type Placement struct {
	Stack, Service string
	Host           string
	Index          int
}

// Name is the container's name, <stack>-<service>-<index>.
func (p Placement) Name() string { return ContainerName(p.Stack, p.Service, p.Index) }

// ContainerRef names an existing container.
type ContainerRef struct {
	Host, ID, Name string
	Stack, Service string
	Index          int
}

// Move replaces Old by New: start New, wait until it is healthy, then stop
// Old (StopOld false: Old's host is unreachable and cannot be told).
type Move struct {
	Old     ContainerRef
	New     Placement
	StopOld bool
}

// Plan is the outcome of a placement. Verdicts holds, per host name, every
// distinct rejection seen while planning (hosts never looked at are
// absent; Place stops looking once the best host is certain).
type Plan struct {
	Placements []Placement
	Moves      []Move
	Verdicts   map[string][]Verdict
}

func (p Plan) all() []Placement {
	out := append([]Placement(nil), p.Placements...)
	for _, m := range p.Moves {
		out = append(out, m.New)
	}
	return out
}

// String lists the steps in order, one per line, e.g.
//
//	start web-app-3 on h2
//	start web-app-4 on h3 (replaces web-app-1 on h1)
//	stop web-app-1 on h1
func (p Plan) String() string {
	var b strings.Builder
	for _, pl := range p.Placements {
		fmt.Fprintf(&b, "start %s on %s\n", pl.Name(), pl.Host)
	}
	for _, m := range p.Moves {
		fmt.Fprintf(&b, "start %s on %s (replaces %s on %s)\n", m.New.Name(), m.New.Host, m.Old.Name, m.Old.Host)
		if m.StopOld {
			fmt.Fprintf(&b, "stop %s on %s\n", m.Old.Name, m.Old.Host)
		}
	}
	if b.Len() == 0 {
		return "no changes\n"
	}
	return b.String()
}

// Explain lists the verdicts, host by host in name order.
func (p Plan) Explain() string {
	names := make([]string, 0, len(p.Verdicts))
	for n := range p.Verdicts {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		for _, v := range p.Verdicts[n] {
			fmt.Fprintf(&b, "%s: %s\n", n, v.Reason)
		}
	}
	return b.String()
}

// HostReason is one host's rejection in a NoFitError.
type HostReason struct {
	Host string
	Verdict
}

// NoFitError says that no host could take a container, and why, host by
// host (in host-name order).
type NoFitError struct {
	Stack, Service string
	Wanted, Placed int
	Hosts          []HostReason
}

// Error reads e.g. "no host fits web/app: h1: port 8080/tcp in use by
// java-service-1-1; h2: label env=prod missing".
func (e *NoFitError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "no host fits %s/%s", e.Stack, e.Service)
	if e.Wanted > 1 {
		fmt.Fprintf(&b, " (placed %d of %d)", e.Placed, e.Wanted)
	}
	b.WriteString(": ")
	if len(e.Hosts) == 0 {
		b.WriteString("no hosts")
	}
	for i, h := range e.Hosts {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(h.Host + ": " + h.Reason)
	}
	return b.String()
}

// prepared is a Request with its rules parsed and derived values computed
// once per Place call.
type prepared struct {
	req      Request
	key      svcKey
	rules    Rules
	labels   map[string]string // effective labels of a new replica
	ports    []Port            // published ports only
	cpu, mem int64
	global   bool
	binpack  bool
}

func prepare(req Request) (*prepared, error) {
	if req.Stack == "" || req.Service == "" {
		return nil, fmt.Errorf("%w: stack and service must be set (got %q/%q)", ErrBadRequest, req.Stack, req.Service)
	}
	rules, err := ParseLabels(req.Labels, req.Stack, req.Service)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", req.Stack, req.Service, err)
	}
	if req.Scheduling != nil {
		native, err := req.Scheduling.Rules(req.Stack, req.Service)
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", req.Stack, req.Service, err)
		}
		rules = rules.Merge(native)
	}
	pr := &prepared{
		req: req, key: svcKey{req.Stack, req.Service}, rules: rules,
		labels: effectiveLabels(req.Labels, req.Stack, req.Service),
		global: req.Global || rules.Global,
	}
	strategy := req.Strategy
	if strategy == "" && req.Scheduling != nil {
		strategy = req.Scheduling.Strategy
	}
	switch strategy {
	case "", Spread:
	case Binpack:
		pr.binpack = true
	default:
		return nil, fmt.Errorf("%w: %s/%s: unknown strategy %q (spread or binpack)", ErrBadRequest, req.Stack, req.Service, strategy)
	}
	for _, p := range req.Ports {
		if p.HostPort != 0 {
			if pr := p.proto(); pr != "tcp" && pr != "udp" {
				return nil, fmt.Errorf("%w: %s/%s: port %d: unknown protocol %q", ErrBadRequest, req.Stack, req.Service, p.HostPort, p.Protocol)
			}
			pr.ports = append(pr.ports, p)
		}
	}
	pr.cpu, pr.mem = req.Resources.Reserve()
	return pr, nil
}

// has reports whether a new replica carries kv.
func (p *prepared) has(kv KV) bool {
	v, ok := p.labels[kv.Key]
	return ok && v == kv.Value
}

// container is the Container a new replica becomes once applied.
func (p *prepared) container(index int) Container {
	return Container{
		Name: ContainerName(p.req.Stack, p.req.Service, index), Stack: p.req.Stack, Service: p.req.Service,
		Index: index, Labels: p.req.Labels, Resources: p.req.Resources, Ports: p.req.Ports,
	}
}

// filter is one feasibility check of the chain.
type filter struct {
	rule  Rule
	check func(h *hostIdx) (reason string, ok bool)
}

// call is one placement of one request against an Index: the replicas it
// has placed so far and the verdicts it has seen. The Index is not
// written.
type call struct {
	x        *Index
	p        *prepared
	chain    []filter
	placed   map[int][]int // host rank -> indexes placed by this call
	rejected map[int]bool  // untouched hosts already rejected (cannot change)
	verdicts map[string][]Verdict
	last     map[int]Verdict
	off      int // tie rotation from the seed
	exclude  int // host rank never chosen (Evacuate's source), or -1
}

func (x *Index) newCall(p *prepared) *call {
	c := &call{
		x: x, p: p,
		placed:   make(map[int][]int),
		rejected: make(map[int]bool),
		verdicts: make(map[string][]Verdict),
		last:     make(map[int]Verdict),
		exclude:  -1,
	}
	if p.req.Seed != "" && len(x.hosts) > 0 {
		f := fnv.New64a()
		f.Write([]byte(p.req.Seed))
		c.off = int(f.Sum64() % uint64(len(x.hosts)))
	}
	c.chain = []filter{
		{RuleState, c.checkState},
		{RuleHostLabel, c.checkHostLabel},
		{RuleHostLabelNe, c.checkHostLabelNe},
		{RuleRequireAny, c.checkRequireAny},
		{RuleContainer, c.checkContainer},
		{RuleContainerNe, c.checkContainerNe},
		{RuleContainerLabel, c.checkContainerLabel},
		{RuleContainerLabelNe, c.checkContainerLabelNe},
		{RulePort, c.checkPorts},
		{RuleCPU, c.checkCPU},
		{RuleMemory, c.checkMemory},
	}
	return c
}

// hostOnly reports whether a filter depends only on the host, not on what
// runs there; a global service's existing container is judged by these.
func hostOnly(r Rule) bool {
	return r == RuleState || r == RuleHostLabel || r == RuleHostLabelNe || r == RuleRequireAny
}

// evaluate runs the chain on h and records the first rejection.
func (c *call) evaluate(h *hostIdx, onlyHost bool) bool {
	for _, f := range c.chain {
		if onlyHost && !hostOnly(f.rule) {
			continue
		}
		if reason, ok := f.check(h); !ok {
			c.record(h, Verdict{f.rule, reason})
			return false
		}
	}
	return true
}

func (c *call) record(h *hostIdx, v Verdict) {
	c.last[h.rank] = v
	for _, old := range c.verdicts[h.name] {
		if old == v {
			return
		}
	}
	c.verdicts[h.name] = append(c.verdicts[h.name], v)
}

func (c *call) noFit(wanted, placed int) *NoFitError {
	e := &NoFitError{Stack: c.p.req.Stack, Service: c.p.req.Service, Wanted: wanted, Placed: placed}
	for _, h := range c.x.hosts {
		if v, ok := c.last[h.rank]; ok {
			e.Hosts = append(e.Hosts, HostReason{h.name, v})
		}
	}
	return e
}

// firstPlaced names a replica this call placed on h, or "".
func (c *call) firstPlaced(h *hostIdx) string {
	if idx := c.placed[h.rank]; len(idx) > 0 {
		return ContainerName(c.p.req.Stack, c.p.req.Service, idx[0])
	}
	return ""
}

func (c *call) placedNamed(h *hostIdx, name string) bool {
	for _, i := range c.placed[h.rank] {
		if ContainerName(c.p.req.Stack, c.p.req.Service, i) == name {
			return true
		}
	}
	return false
}

// --- filters (hard rules) ---

func (c *call) checkState(h *hostIdx) (string, bool) {
	switch h.state {
	case "", HostActive:
		return "", true
	case HostDraining, HostUnreachable:
		return "host " + string(h.state), false
	default:
		return fmt.Sprintf("unknown host state %q", h.state), false
	}
}

func hostHas(h *hostIdx, kv KV) bool {
	v, ok := h.labels[kv.Key]
	return ok && v == kv.Value
}

func (c *call) checkHostLabel(h *hostIdx) (string, bool) {
	for _, kv := range c.p.rules.Hard.HostLabel {
		if !hostHas(h, kv) {
			return "label " + kv.String() + " missing", false
		}
	}
	return "", true
}

func (c *call) checkHostLabelNe(h *hostIdx) (string, bool) {
	for _, kv := range c.p.rules.Hard.HostLabelNe {
		if hostHas(h, kv) {
			return "label " + kv.String() + " present", false
		}
	}
	return "", true
}

func (c *call) checkRequireAny(h *hostIdx) (string, bool) {
	if h.requireAnyErr != nil {
		return h.requireAnyErr.Error(), false
	}
	if len(h.requireAny) == 0 {
		return "", true
	}
	for _, kv := range h.requireAny {
		if c.p.has(kv) {
			return "", true
		}
	}
	return "service labels match none of require_any " + h.labels[LabelRequireAny], false
}

func (c *call) hasName(h *hostIdx, name string) bool {
	_, ok := h.names[name]
	return ok || c.placedNamed(h, name)
}

func (c *call) checkContainer(h *hostIdx) (string, bool) {
	for _, n := range c.p.rules.Hard.Container {
		if !c.hasName(h, n) {
			return "no container named " + n, false
		}
	}
	return "", true
}

func (c *call) checkContainerNe(h *hostIdx) (string, bool) {
	for _, n := range c.p.rules.Hard.ContainerNe {
		if c.hasName(h, n) {
			return "container " + n + " present", false
		}
	}
	return "", true
}

// labelOwner names a container on h (existing or placed by this call)
// carrying kv, or "".
func (c *call) labelOwner(h *hostIdx, kv KV) string {
	if u := h.clabels[kv]; u.n > 0 {
		if u.first == "" {
			return "(unnamed)"
		}
		return u.first
	}
	if c.p.has(kv) {
		return c.firstPlaced(h)
	}
	return ""
}

func (c *call) checkContainerLabel(h *hostIdx) (string, bool) {
	for _, kv := range c.p.rules.Hard.ContainerLabel {
		if c.labelOwner(h, kv) == "" {
			return "no container with label " + kv.String(), false
		}
	}
	return "", true
}

func (c *call) checkContainerLabelNe(h *hostIdx) (string, bool) {
	for _, kv := range c.p.rules.Hard.ContainerLabelNe {
		if o := c.labelOwner(h, kv); o != "" {
			return "container " + o + " has label " + kv.String(), false
		}
	}
	return "", true
}

func portText(p Port) string {
	if wildcardIP(p.HostIP) {
		return fmt.Sprintf("port %d/%s", p.HostPort, p.proto())
	}
	return fmt.Sprintf("port %s:%d/%s", p.HostIP, p.HostPort, p.proto())
}

func (c *call) checkPorts(h *hostIdx) (string, bool) {
	for _, p := range c.p.ports {
		for _, u := range h.ports[portKey{p.HostPort, p.proto()}] {
			if ipsOverlap(u.ip, p.HostIP) {
				return portText(p) + " in use by " + u.owner, false
			}
		}
		// Every replica publishes the same ports.
		if o := c.firstPlaced(h); o != "" {
			return portText(p) + " in use by " + o, false
		}
	}
	return "", true
}

func (c *call) used(h *hostIdx) (cpu, mem int64) {
	n := int64(len(c.placed[h.rank]))
	return h.cpuUsed + n*c.p.cpu, h.memUsed + n*c.p.mem
}

func (c *call) checkCPU(h *hostIdx) (string, bool) {
	cpu, _ := c.used(h)
	if c.p.cpu == 0 || h.cpuCap == 0 || cpu+c.p.cpu <= h.cpuCap {
		return "", true
	}
	return fmt.Sprintf("cpu %.2f requested, %.2f free", float64(c.p.cpu)/1e9, float64(max(h.cpuCap-cpu, 0))/1e9), false
}

func (c *call) checkMemory(h *hostIdx) (string, bool) {
	_, mem := c.used(h)
	if c.p.mem == 0 || h.memCap == 0 || mem+c.p.mem <= h.memCap {
		return "", true
	}
	return fmt.Sprintf("memory %s requested, %s free", mib(c.p.mem), mib(max(h.memCap-mem, 0))), false
}

func mib(b int64) string {
	if b%(1<<20) == 0 {
		return fmt.Sprintf("%dMiB", b>>20)
	}
	return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20))
}

// --- scorers (soft rules, strategy, tie) ---

// softViolations counts the soft rules h breaks; fewer is better.
func (c *call) softViolations(h *hostIdx) int {
	s := &c.p.rules.Soft
	n := 0
	for _, kv := range s.HostLabel {
		if !hostHas(h, kv) {
			n++
		}
	}
	for _, kv := range s.HostLabelNe {
		if hostHas(h, kv) {
			n++
		}
	}
	for _, kv := range s.ContainerLabel {
		if c.labelOwner(h, kv) == "" {
			n++
		}
	}
	for _, kv := range s.ContainerLabelNe {
		if c.labelOwner(h, kv) != "" {
			n++
		}
	}
	for _, name := range s.Container {
		if !c.hasName(h, name) {
			n++
		}
	}
	for _, name := range s.ContainerNe {
		if c.hasName(h, name) {
			n++
		}
	}
	return n
}

// score orders feasible hosts; lower wins, compared field by field.
type score struct{ soft, a, b, tie int }

func (s score) less(o score) bool {
	if s.soft != o.soft {
		return s.soft < o.soft
	}
	if s.a != o.a {
		return s.a < o.a
	}
	if s.b != o.b {
		return s.b < o.b
	}
	return s.tie < o.tie
}

func (c *call) svcCount(h *hostIdx) int {
	return c.x.svcHosts[c.p.key][h.rank] + len(c.placed[h.rank])
}

func (c *call) score(h *hostIdx) score {
	total := h.total + len(c.placed[h.rank])
	s := score{soft: c.softViolations(h), tie: c.tie(h.rank)}
	if c.p.binpack {
		s.a = -total
	} else {
		s.a, s.b = c.svcCount(h), total
	}
	return s
}

func (c *call) tie(rank int) int {
	n := len(c.x.hosts)
	return (rank - c.off + n) % n
}

// pick returns the best feasible host, or nil.
//
// Hosts already running this service, or given a replica by this call
// ("touched"), are scored one by one. All other hosts have no replica of
// the service and an unchanged count, so within them the ranking is just
// (count, tie): walking the count buckets in order (ascending for spread,
// descending for binpack), the first feasible host with no soft violation
// is their best, and the walk stops there.
func (c *call) pick() *hostIdx {
	var best *hostIdx
	var bestScore score
	consider := func(h *hostIdx) {
		if h.rank == c.exclude || !c.evaluate(h, false) {
			return
		}
		if s := c.score(h); best == nil || s.less(bestScore) {
			best, bestScore = h, s
		}
	}
	existing := c.x.svcHosts[c.p.key]
	for r := range existing {
		consider(c.x.hosts[r])
	}
	for r := range c.placed {
		if existing[r] == 0 {
			consider(c.x.hosts[r])
		}
	}
	nb := len(c.x.buckets)
	for i := 0; i < nb; i++ {
		bi := i
		if c.p.binpack {
			bi = nb - 1 - i
		}
		b := c.x.buckets[bi]
		start := sort.SearchInts(b, c.off)
		for j := range b {
			r := b[(start+j)%len(b)]
			if existing[r] > 0 || len(c.placed[r]) > 0 || c.rejected[r] || r == c.exclude {
				continue
			}
			h := c.x.hosts[r]
			if !c.evaluate(h, false) {
				c.rejected[r] = true
				continue
			}
			s := c.score(h)
			if best == nil || s.less(bestScore) {
				best, bestScore = h, s
			}
			if s.soft == 0 {
				return best
			}
		}
	}
	return best
}

// Place plans n new containers of req on s. s is not mutated. On a
// *NoFitError the plan holds the containers that did fit. For a global
// request n is ignored: one container goes to every eligible host that
// has none (see GlobalDiff).
func Place(s *Snapshot, req Request, n int) (Plan, error) {
	x, err := NewIndex(s)
	if err != nil {
		return Plan{}, err
	}
	return x.Place(req, n)
}

// Place is the package-level Place on the index's current state; it does
// not change the index (Apply the plan to book it).
func (x *Index) Place(req Request, n int) (Plan, error) {
	pr, err := prepare(req)
	if err != nil {
		return Plan{}, err
	}
	if pr.global {
		d := x.globalDiff(pr)
		return Plan{Placements: d.Place, Verdicts: d.Verdicts}, nil
	}
	if n < 0 {
		return Plan{}, fmt.Errorf("%w: %s/%s: negative count %d", ErrBadRequest, req.Stack, req.Service, n)
	}
	return x.place(pr, n, nil)
}

// place runs one call; exclude names hosts that must not be chosen
// (Evacuate's source host).
func (x *Index) place(pr *prepared, n int, exclude *hostIdx) (Plan, error) {
	c := x.newCall(pr)
	if exclude != nil {
		c.exclude = exclude.rank
		c.record(exclude, Verdict{RuleState, "host being evacuated"})
	}
	plan := Plan{Verdicts: c.verdicts}
	next := x.maxIndex[pr.key]
	for i := 0; i < n; i++ {
		h := c.pick()
		if h == nil {
			return plan, c.noFit(n, i)
		}
		next++
		c.placed[h.rank] = append(c.placed[h.rank], next)
		plan.Placements = append(plan.Placements, Placement{Stack: pr.req.Stack, Service: pr.req.Service, Host: h.name, Index: next})
	}
	return plan, nil
}
