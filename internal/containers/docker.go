// Package containers is the cross-host container service: it lists every
// container on every registered host (dockmaster's own and standalone
// ones) from a cache that each host's Docker event stream keeps fresh,
// shows a container's details, acts on it (start, stop, restart, remove),
// streams logs, attaches interactive execs, and samples resource use into
// bounded in-memory ring buffers.
//
// One goroutine per host follows that host's events; a slow or dead host
// only makes its own entry "unreachable" (with its last known containers)
// and never delays a listing beyond Options.ColdWait.
package containers

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"

	"github.com/dockmaster/dockmaster/internal/store"
)

// Docker is the part of the Docker API this package uses. *client.Client
// satisfies it; tests and benchmarks pass fakes. Implementations must be
// safe for concurrent use.
type Docker interface {
	Info(ctx context.Context) (system.Info, error)
	Events(ctx context.Context, o events.ListOptions) (<-chan events.Message, <-chan error)
	ContainerList(ctx context.Context, o container.ListOptions) ([]container.Summary, error)
	ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error)
	ImageInspect(ctx context.Context, id string, o ...client.ImageInspectOption) (image.InspectResponse, error)
	ContainerStart(ctx context.Context, id string, o container.StartOptions) error
	ContainerStop(ctx context.Context, id string, o container.StopOptions) error
	ContainerRestart(ctx context.Context, id string, o container.StopOptions) error
	ContainerRemove(ctx context.Context, id string, o container.RemoveOptions) error
	ContainerLogs(ctx context.Context, id string, o container.LogsOptions) (io.ReadCloser, error)
	ContainerStatsOneShot(ctx context.Context, id string) (container.StatsResponseReader, error)
	ContainerExecCreate(ctx context.Context, id string, o container.ExecOptions) (container.ExecCreateResponse, error)
	ContainerExecAttach(ctx context.Context, execID string, o container.ExecAttachOptions) (types.HijackedResponse, error)
	ContainerExecResize(ctx context.Context, execID string, o container.ResizeOptions) error
	ContainerExecInspect(ctx context.Context, execID string) (container.ExecInspect, error)
	Close() error
}

var _ Docker = (*client.Client)(nil)

// DialDocker is the default Options.Dial: a Docker client for the host's
// endpoint with API version negotiation.
func DialDocker(h store.Host) (Docker, error) {
	return client.NewClientWithOpts(client.WithHost(h.Endpoint), client.WithAPIVersionNegotiation())
}

// TLSDialer is an Options.Dial for hosts with client TLS: tlsFor gives a
// host's configuration (nil: plain). The deployer's engines use the same
// material (fleet.SealedTLS).
func TLSDialer(tlsFor func(context.Context, store.Host) (*tls.Config, error)) func(store.Host) (Docker, error) {
	return func(h store.Host) (Docker, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cfg, err := tlsFor(ctx, h)
		if err != nil {
			return nil, fmt.Errorf("host %s: %w", h.Name, err)
		}
		opts := []client.Opt{client.WithHost(h.Endpoint), client.WithAPIVersionNegotiation()}
		if cfg != nil {
			opts = append(opts, client.WithHTTPClient(&http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}))
		}
		return client.NewClientWithOpts(opts...)
	}
}
