// Package deployer turns compose files into running containers on an
// environment's Docker hosts and holds upgrades until a human confirms them.
package deployer

import (
	"time"

	"github.com/dockmaster/dockmaster/deployer/scheduler"
)

// StackSpec is the desired state of one stack, as read from a
// docker-compose.yml and rancher-compose.yml pair after interpolation.
type StackSpec struct {
	Name     string
	Services []ServiceSpec
	// Warnings are non-fatal findings (unknown rancher-compose keys,
	// duplicate YAML keys), each naming file:line.
	Warnings []string
}

// Service returns the service called name, or nil.
func (s *StackSpec) Service(name string) *ServiceSpec {
	for i := range s.Services {
		if s.Services[i].Name == name {
			return &s.Services[i]
		}
	}
	return nil
}

// ServiceSpec is one service of a stack. Fields that do not change the
// running container (Scale, Upgrade) are excluded from ConfigHash.
type ServiceSpec struct {
	Name        string
	Image       string
	Command     []string
	Entrypoint  []string
	Environment map[string]string
	// Labels are the compose labels, io.rancher.* included; the scheduler
	// reads its rules from them.
	Labels      map[string]string
	Ports       []PortSpec
	Volumes     []string // bind or named volume in docker "src:dst[:mode]" form
	WorkingDir  string
	User        string
	Restart     string
	NetworkMode string
	DNS         []string
	ExtraHosts  []string
	// DNSSearch are resolv.conf search domains (discovery adds its own;
	// see Discovery). omitempty: specs without it hash as before.
	DNSSearch []string `json:",omitempty"`

	Scale  int  // desired containers; 0 from compose means 1
	Global bool // one container per eligible host
	// Scheduling is the native form of the placement rules
	// (rancher-compose.yml "scheduling:"), merged with the
	// io.rancher.scheduler.* labels. omitempty: a spec without it hashes
	// as before the field existed.
	Scheduling *scheduler.Scheduling `json:",omitempty"`

	Resources Resources

	HealthCheck *HealthCheck
	Upgrade     UpgradeStrategy
	PullAlways  bool // io.rancher.container.pull_image: always
	RetainIP    bool
	Metadata    map[string]any

	// LB is set for rancher-compose load balancer services (lb_config).
	LB *LBConfig
}

// PortSpec is a published port: HostIP:HostPort -> ContainerPort/Protocol.
// HostPort 0 means "not published on the host".
type PortSpec struct {
	HostIP        string
	HostPort      uint16
	ContainerPort uint16
	Protocol      string // "tcp" or "udp"
}

// Resources are the requests the scheduler reserves on a host.
type Resources struct {
	NanoCPUs          int64 // cpus * 1e9
	CPUShares         int64
	MemoryLimit       int64 // bytes
	MemoryReservation int64 // bytes
}

// HealthCheck follows rancher-compose's health_check block.
type HealthCheck struct {
	Port                  uint16
	RequestLine           string // e.g. "GET /healthz HTTP/1.0"; empty means TCP connect
	Interval              time.Duration
	InitializingTimeout   time.Duration
	ReinitializingTimeout time.Duration
	ResponseTimeout       time.Duration
	HealthyThreshold      int
	UnhealthyThreshold    int
	Strategy              string // none, recreate, recreateOnQuorum
	RecreateQuorum        int
}

// UpgradeStrategy follows rancher-compose's upgrade_strategy block.
type UpgradeStrategy struct {
	StartFirst bool
	BatchSize  int           // 0 means 1
	Interval   time.Duration // pause between batches
}

// LBConfig follows rancher-compose's lb_config block.
type LBConfig struct {
	PortRules        []LBPortRule
	DefaultCert      string
	Certs            []string
	StickinessPolicy map[string]any
}

// LBPortRule routes SourcePort on the balancer to TargetPort of Service.
type LBPortRule struct {
	SourcePort uint16
	TargetPort uint16
	Service    string // "service" or "stack/service"
	Protocol   string // http, tcp
	Hostname   string
	Path       string
	Priority   int
}
