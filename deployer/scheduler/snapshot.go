package scheduler

import "strconv"

// HostState is whether a host takes new containers.
type HostState string

// Host states. Only active hosts (or the zero value, read as active) take
// new containers.
const (
	HostActive      HostState = "active"
	HostDraining    HostState = "draining"
	HostUnreachable HostState = "unreachable"
)

// Snapshot is the inventory of one environment at one moment. Placement
// functions never mutate it.
type Snapshot struct {
	Hosts []Host
}

// Host is one Docker host and what already runs on it.
type Host struct {
	Name   string
	Labels map[string]string
	State  HostState // "" means active
	// Capacity from docker info; 0 means unknown and is not enforced.
	NanoCPUs    int64
	MemoryBytes int64
	Containers  []Container
}

// Container is a container already on a host: ours (Stack and Service
// set) or foreign (both empty).
type Container struct {
	ID, Name       string
	Stack, Service string
	Index          int // the io.dockmaster.index label; 0 if unknown
	// Stopped containers (an upgrade's held old version) keep their index
	// (new replicas never reuse it) but hold no ports or resources and do
	// not count for spread, affinity or moves.
	Stopped   bool
	Labels    map[string]string
	Resources Resources
	Ports     []Port
}

// Port is a published host port. HostPort 0 is not published and never
// conflicts. HostIP "", "0.0.0.0" and "::" overlap every address.
type Port struct {
	HostIP   string
	HostPort uint16
	Protocol string // "tcp" (default) or "udp"
}

func (p Port) proto() string {
	if p.Protocol == "" {
		return "tcp"
	}
	return p.Protocol
}

func wildcardIP(ip string) bool { return ip == "" || ip == "0.0.0.0" || ip == "::" }

func ipsOverlap(a, b string) bool { return wildcardIP(a) || wildcardIP(b) || a == b }

// Resources are what a container asks for.
type Resources struct {
	NanoCPUs          int64 // cpus * 1e9
	CPUShares         int64 // 1024 = one core when NanoCPUs is unset
	MemoryLimit       int64 // bytes
	MemoryReservation int64 // bytes
}

// Reserve is what the scheduler books on a host for r. Like Rancher and
// Nomad it books the request, not the ceiling: memory is MemoryReservation
// if set, else MemoryLimit; CPU is NanoCPUs if set, else CPUShares/1024
// cores. A container asking for nothing books nothing.
func (r Resources) Reserve() (nanoCPUs, memoryBytes int64) {
	nanoCPUs = r.NanoCPUs
	if nanoCPUs == 0 && r.CPUShares > 0 {
		nanoCPUs = r.CPUShares * 1e9 / 1024
	}
	memoryBytes = r.MemoryReservation
	if memoryBytes == 0 {
		memoryBytes = r.MemoryLimit
	}
	return nanoCPUs, memoryBytes
}

// EffectiveLabels are c's labels plus the ones Rancher gave every stack
// container implicitly (io.rancher.stack.name, io.rancher.stack_service.name).
func (c Container) EffectiveLabels() map[string]string {
	return effectiveLabels(c.Labels, c.Stack, c.Service)
}

func effectiveLabels(labels map[string]string, stack, service string) map[string]string {
	out := make(map[string]string, len(labels)+2)
	for k, v := range labels {
		out[k] = v
	}
	if stack != "" {
		out[LabelStackName] = stack
		out[LabelStackService] = stack + "/" + service
	}
	return out
}

// ContainerName is dockmaster's name for replica index of a service.
func ContainerName(stack, service string, index int) string {
	return stack + "-" + service + "-" + strconv.Itoa(index)
}
