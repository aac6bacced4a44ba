package deployer

import (
	"context"
	"errors"
	"io"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/registry"
)

// ErrNoSuchContainer is returned (wrapped) by Engine methods when the
// container does not exist on that host.
var ErrNoSuchContainer = errors.New("no such container")

// ErrNameInUse is returned (wrapped) by Engine.Create when a container with
// that name already exists on the host.
var ErrNameInUse = errors.New("container name already in use")

// Engine is one Docker host, as the deployer needs it. Every method takes a
// ctx and honours its deadline; implementations add their own per-host
// timeout on top. One value per host; safe for concurrent use. Errors wrap
// ErrNoSuchContainer or ErrNameInUse where those apply.
type Engine interface {
	// List returns the containers (running or not) carrying all of labels.
	List(ctx context.Context, labels map[string]string) ([]Container, error)
	// Inspect returns one container by id or name.
	Inspect(ctx context.Context, idOrName string) (Container, error)
	// EnsureImage pulls image when it is absent, or always when always is
	// set; auth nil means anonymous.
	EnsureImage(ctx context.Context, image string, always bool, auth *registry.AuthConfig) error
	// EnsureNetwork creates the bridge network name with labels unless it
	// exists.
	EnsureNetwork(ctx context.Context, name string, labels map[string]string) error
	// Create creates (does not start) a container for req.
	Create(ctx context.Context, req CreateRequest) (string, error)
	Start(ctx context.Context, id string) error
	// Stop stops the container, killing it after grace.
	Stop(ctx context.Context, id string, grace time.Duration) error
	// Remove removes the container, forcing a running one.
	Remove(ctx context.Context, id string) error
	// Stats returns one resource sample of a running container.
	Stats(ctx context.Context, id string) (Usage, error)
	// Logs streams the container's output as Docker multiplexes it
	// (stdcopy framing, RFC 3339 timestamps first on each line).
	Logs(ctx context.Context, id string, tail int, follow bool) (io.ReadCloser, error)
	// Info returns the host's capacity (docker info); the scheduler books
	// container resources against it.
	Info(ctx context.Context) (HostInfo, error)
	Close() error
}

// HostInfo is a host's capacity. Zero means unknown.
type HostInfo struct {
	NCPU     int
	MemTotal int64 // bytes
}

// Container is what the deployer observes of one container.
type Container struct {
	ID      string
	Name    string
	Host    string // filled in by the deployer, not the engine
	Image   string
	ImageID string
	Labels  map[string]string
	State   string // created, running, exited, ...
	Running bool
	// ExitCode and OOMKilled explain a stopped container.
	ExitCode  int
	OOMKilled bool
	StartedAt time.Time
	// IPs maps network name to the container's address on it.
	IPs   map[string]string
	Ports []PortSpec
	// Created orders two containers with the same index (one replaced
	// while its host was unreachable): the newer one is kept.
	Created time.Time
	// Resources are the container's HostConfig requests; the scheduler
	// books them on the host while the container is live.
	Resources Resources
}

// Index is the container's io.dockmaster.index, or 0.
func (c Container) Index() int {
	n, _ := strconv.Atoi(c.Labels[LabelIndex])
	return n
}

// Deployment is the container's io.dockmaster.deployment.
func (c Container) Deployment() string { return c.Labels[LabelDeployment] }

// CreateRequest is one container to create from a service.
type CreateRequest struct {
	Name    string
	Spec    ServiceSpec
	Labels  map[string]string // merged over Spec.Labels
	Network string
}

// Usage is one resource sample.
type Usage struct {
	CPUPercent float64
	MemUsage   uint64
	MemLimit   uint64
	DiskRead   uint64
	DiskWrite  uint64
	NetRx      uint64
	NetTx      uint64
}

func (u *Usage) add(o Usage) {
	u.CPUPercent += o.CPUPercent
	u.MemUsage += o.MemUsage
	u.MemLimit = max(u.MemLimit, o.MemLimit)
	u.DiskRead += o.DiskRead
	u.DiskWrite += o.DiskWrite
	u.NetRx += o.NetRx
	u.NetTx += o.NetTx
}

func itoa(n int) string { return strconv.Itoa(n) }
