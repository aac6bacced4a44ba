package containers

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/dockmaster/dockmaster/deployer"
)

// Errors, wrapped with the place they concern; compare with errors.Is.
var (
	ErrNotFound    = errors.New("no such container")
	ErrAmbiguous   = errors.New("container reference matches several containers")
	ErrStandalone  = errors.New("standalone container: dockmaster did not create it; ask explicitly (force_standalone=1 / --standalone) to remove it")
	ErrBadAction   = errors.New("unknown action (want start, stop, restart or remove)")
	ErrUnreachable = errors.New("host unreachable")
	ErrUnknownHost = errors.New("no such host")
)

// AmbiguousError lists the containers a reference matched.
type AmbiguousError struct {
	Ref     string
	Matches []string // host/name (id)
}

func (e *AmbiguousError) Error() string {
	return fmt.Sprintf("%q matches %s; give the full id or --host", e.Ref, strings.Join(e.Matches, ", "))
}

func (e *AmbiguousError) Unwrap() error { return ErrAmbiguous }

// Port is one port of a container; PublicPort 0 means not published.
type Port struct {
	IP          string `json:"ip,omitempty"`
	PrivatePort uint16 `json:"private_port"`
	PublicPort  uint16 `json:"public_port,omitempty"`
	Type        string `json:"type"`
}

func (p Port) String() string {
	if p.PublicPort == 0 {
		return fmt.Sprintf("%d/%s", p.PrivatePort, p.Type)
	}
	ip := p.IP
	if ip == "" {
		ip = "0.0.0.0"
	}
	return fmt.Sprintf("%s:%d->%d/%s", ip, p.PublicPort, p.PrivatePort, p.Type)
}

// Container is one container as the listing shows it.
type Container struct {
	Env     string    `json:"environment"`
	Host    string    `json:"host"`
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Image   string    `json:"image"`
	ImageID string    `json:"image_id"`
	Command string    `json:"command"`
	State   string    `json:"state"`  // created, running, exited, paused, ...
	Status  string    `json:"status"` // Docker's human text, e.g. "Up 3 minutes"
	Created time.Time `json:"created"`
	// Managed: the deployer of this environment owns it (deployer labels).
	// Otherwise it is standalone and the deployer never touches it.
	Managed  bool              `json:"managed"`
	Stack    string            `json:"stack,omitempty"`
	Service  string            `json:"service,omitempty"`
	Ports    []Port            `json:"ports"`
	Labels   map[string]string `json:"labels"`
	Networks []string          `json:"networks"`
}

// Kind is "managed" or "standalone".
func (c Container) Kind() string {
	if c.Managed {
		return "managed"
	}
	return "standalone"
}

// Ref is host/name, what people read.
func (c Container) Ref() string { return c.Host + "/" + c.Name }

// Running reports whether the container is up.
func (c Container) Running() bool { return c.State == "running" }

// managed reports whether labels make the container env's deployer's.
func managed(labels map[string]string, env string) bool {
	return labels[deployer.LabelEnv] == env && labels[deployer.LabelStack] != "" && labels[deployer.LabelService] != ""
}

func fromSummary(env, host string, s container.Summary) Container {
	c := Container{Env: env, Host: host, ID: s.ID, Image: s.Image, ImageID: s.ImageID, Command: s.Command,
		State: string(s.State), Status: s.Status, Created: time.Unix(s.Created, 0).UTC(),
		Labels: s.Labels, Ports: []Port{}, Networks: []string{}}
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	if len(s.Names) > 0 {
		c.Name = strings.TrimPrefix(s.Names[0], "/")
	}
	c.Managed = managed(c.Labels, env)
	if c.Managed {
		c.Stack, c.Service = c.Labels[deployer.LabelStack], c.Labels[deployer.LabelService]
	}
	for _, p := range s.Ports {
		c.Ports = append(c.Ports, Port{IP: p.IP, PrivatePort: p.PrivatePort, PublicPort: p.PublicPort, Type: p.Type})
	}
	sort.Slice(c.Ports, func(i, j int) bool {
		if c.Ports[i].PrivatePort != c.Ports[j].PrivatePort {
			return c.Ports[i].PrivatePort < c.Ports[j].PrivatePort
		}
		return c.Ports[i].IP < c.Ports[j].IP
	})
	if s.NetworkSettings != nil {
		for n := range s.NetworkSettings.Networks {
			c.Networks = append(c.Networks, n)
		}
		sort.Strings(c.Networks)
	}
	return c
}

// HostInfo is what the listing says about one host.
type HostInfo struct {
	Env        string    `json:"environment"`
	Name       string    `json:"name"`
	State      string    `json:"state"` // active, unreachable, connecting
	LastSeen   time.Time `json:"last_seen,omitzero"`
	LastError  string    `json:"last_error,omitempty"`
	Containers int       `json:"containers"`
	NCPU       int       `json:"ncpu,omitempty"`
	MemTotal   int64     `json:"mem_total,omitempty"`
}

// Filter narrows a listing; empty fields match everything.
type Filter struct {
	Host    string
	Stack   string
	Service string
	// Kind is "managed", "standalone" or "".
	Kind string
	// Running drops stopped containers.
	Running bool
}

func (f Filter) match(c Container) bool {
	return (f.Host == "" || c.Host == f.Host) && (f.Stack == "" || c.Stack == f.Stack) &&
		(f.Service == "" || c.Service == f.Service) && (f.Kind == "" || c.Kind() == f.Kind) &&
		(!f.Running || c.Running())
}

// Listing is one environment's containers, sorted by host then name, and
// the state of each host they came from.
type Listing struct {
	Containers []Container `json:"containers"`
	Hosts      []HostInfo  `json:"hosts"`
}

// Mount is one mount of a container.
type Mount struct {
	Type        string `json:"type"`
	Source      string `json:"source"`
	Destination string `json:"destination"`
	Mode        string `json:"mode,omitempty"`
	RW          bool   `json:"rw"`
}

// Network is one network the container is attached to.
type Network struct {
	Name      string   `json:"name"`
	IPAddress string   `json:"ip_address,omitempty"`
	Aliases   []string `json:"aliases,omitempty"`
}

// Detail is everything the container page shows. Env is nil and
// EnvHidden set when the caller may not see environment variables.
type Detail struct {
	Container
	ImageDigests  []string  `json:"image_digests"`
	Entrypoint    []string  `json:"entrypoint"`
	Cmd           []string  `json:"cmd"`
	Env           []string  `json:"env"`
	EnvHidden     bool      `json:"env_hidden,omitempty"`
	Mounts        []Mount   `json:"mounts"`
	NetworkList   []Network `json:"network_details"`
	RestartPolicy string    `json:"restart_policy"`
	Health        string    `json:"health,omitempty"` // starting, healthy, unhealthy, "" = no check
	ExitCode      int       `json:"exit_code"`
	OOMKilled     bool      `json:"oom_killed"`
	Error         string    `json:"error,omitempty"`
	StartedAt     time.Time `json:"started_at,omitzero"`
	FinishedAt    time.Time `json:"finished_at,omitzero"`
	Tty           bool      `json:"tty"`
	RestartCount  int       `json:"restart_count"`
	Privileged    bool      `json:"privileged"`
	User          string    `json:"user,omitempty"`
	WorkingDir    string    `json:"working_dir,omitempty"`
	PortBindings  []Port    `json:"port_bindings"`
	Latest        *Sample   `json:"usage,omitempty"`
}

func parseDockerTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}
